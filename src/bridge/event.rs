//! A Signals event as the mapping reads it.
//!
//! The events list's pages decode straight into [`SignalsEvent`]: the fields the bridge reads,
//! each kept as the JSON sent it and borrowed from the page's body where it can be (a string
//! without escapes), and nothing else: no tree of maps and no copy of each field per event,
//! which cost more than mapping the event. Postbacks (and tests) come as `serde_json::Value`; both answer
//! the same [`Event`] questions. A field of an unexpected JSON type never fails the page: it
//! reads as [`Scalar::Other`], and the mapping rejects that one event.

use std::borrow::Cow;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One field of an event, as sent.
#[derive(Clone, Debug, PartialEq)]
pub enum Scalar<'a> {
    Text(&'a str),
    /// A number, as its JSON text (Signals sends some ids as numbers).
    Number(Cow<'a, str>),
    /// null, a boolean, an array or an object.
    Other,
}

impl<'a> Scalar<'a> {
    /// Text or a number, as text.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Scalar::Text(s) => Some(s),
            Scalar::Number(n) => Some(n),
            Scalar::Other => None,
        }
    }

    /// Text only (for fields that are only ever strings).
    pub fn text(self) -> Option<&'a str> {
        match self {
            Scalar::Text(s) => Some(s),
            _ => None,
        }
    }
}

/// What the mapping reads from an event.
pub trait Event {
    /// The field `name`; None when absent.
    fn field(&self, name: &str) -> Option<Scalar<'_>>;
    /// The event's content as JSON text: the key of an event without an id.
    fn content(&self) -> String;
}

impl Event for Value {
    fn field(&self, name: &str) -> Option<Scalar<'_>> {
        Some(match self.get(name)? {
            Value::String(s) => Scalar::Text(s),
            Value::Number(n) => Scalar::Number(Cow::Owned(n.to_string())),
            _ => Scalar::Other,
        })
    }

    fn content(&self) -> String {
        self.to_string()
    }
}

/// A field as decoded.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Field<'a> {
    Text(Cow<'a, str>),
    Number(serde_json::Number),
    Other(Value),
}

impl Field<'_> {
    fn scalar(&self) -> Scalar<'_> {
        match self {
            Field::Text(s) => Scalar::Text(s),
            Field::Number(n) => Scalar::Number(Cow::Owned(n.to_string())),
            Field::Other(_) => Scalar::Other,
        }
    }
}

impl<'de> Deserialize<'de> for Field<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct FieldVisitor;
        impl<'de> Visitor<'de> for FieldVisitor {
            type Value = Field<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Field<'de>, E> {
                Ok(Field::Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Field<'de>, E> {
                Ok(Field::Text(Cow::Owned(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Field<'de>, E> {
                Ok(Field::Text(Cow::Owned(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Field<'de>, E> {
                Ok(Field::Number(v.into()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Field<'de>, E> {
                Ok(Field::Number(v.into()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Field<'de>, E> {
                Ok(
                    serde_json::Number::from_f64(v)
                        .map_or(Field::Other(Value::Null), Field::Number),
                )
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Field<'de>, E> {
                Ok(Field::Other(Value::Bool(v)))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Field<'de>, E> {
                Ok(Field::Other(Value::Null))
            }
            fn visit_none<E: de::Error>(self) -> Result<Field<'de>, E> {
                Ok(Field::Other(Value::Null))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Field<'de>, A::Error> {
                Value::deserialize(de::value::SeqAccessDeserializer::new(seq)).map(Field::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Field<'de>, A::Error> {
                Value::deserialize(de::value::MapAccessDeserializer::new(map)).map(Field::Other)
            }
        }
        d.deserialize_any(FieldVisitor)
    }
}

/// An event of the Signals events list: the fields the bridge reads.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SignalsEvent<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<Field<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    app_id: Option<Field<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ad_id: Option<Field<'a>>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    event_type: Option<Field<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    type_value: Option<Field<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    date: Option<Field<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    phone: Option<Field<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<Field<'a>>,
    /// An entry of the list that is not an object at all, as sent.
    #[serde(skip)]
    not_an_object: Option<Value>,
}

impl Event for SignalsEvent<'_> {
    fn field(&self, name: &str) -> Option<Scalar<'_>> {
        let field = match name {
            "id" => &self.id,
            "app_id" => &self.app_id,
            "ad_id" => &self.ad_id,
            "type" => &self.event_type,
            "type_value" => &self.type_value,
            "date" => &self.date,
            "phone" => &self.phone,
            "email" => &self.email,
            _ => return None,
        };
        field.as_ref().map(Field::scalar)
    }

    fn content(&self) -> String {
        match &self.not_an_object {
            Some(v) => v.to_string(),
            None => serde_json::to_string(self).unwrap_or_default(),
        }
    }
}

impl<'de> Deserialize<'de> for SignalsEvent<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(field_identifier, rename_all = "snake_case")]
        enum Key {
            Id,
            AppId,
            AdId,
            Type,
            TypeValue,
            Date,
            Phone,
            Email,
            #[serde(other)]
            Ignored,
        }
        struct EventVisitor;
        impl<'de> Visitor<'de> for EventVisitor {
            type Value = SignalsEvent<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a Signals event")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<SignalsEvent<'de>, A::Error> {
                let mut e = SignalsEvent::default();
                while let Some(key) = map.next_key::<Key>()? {
                    let slot = match key {
                        Key::Id => &mut e.id,
                        Key::AppId => &mut e.app_id,
                        Key::AdId => &mut e.ad_id,
                        Key::Type => &mut e.event_type,
                        Key::TypeValue => &mut e.type_value,
                        Key::Date => &mut e.date,
                        Key::Phone => &mut e.phone,
                        Key::Email => &mut e.email,
                        Key::Ignored => {
                            map.next_value::<IgnoredAny>()?;
                            continue;
                        }
                    };
                    *slot = Some(map.next_value()?);
                }
                Ok(e)
            }
            // Anything else in the list is an event that cannot be mapped, not a bad page.
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<SignalsEvent<'de>, A::Error> {
                let v = Value::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
                Ok(opaque(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<SignalsEvent<'de>, E> {
                Ok(opaque(Value::String(v.to_string())))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<SignalsEvent<'de>, E> {
                Ok(opaque(v.into()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<SignalsEvent<'de>, E> {
                Ok(opaque(v.into()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<SignalsEvent<'de>, E> {
                Ok(opaque(v.into()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<SignalsEvent<'de>, E> {
                Ok(opaque(v.into()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<SignalsEvent<'de>, E> {
                Ok(opaque(Value::Null))
            }
        }
        fn opaque<'a>(v: Value) -> SignalsEvent<'a> {
            SignalsEvent {
                not_an_object: Some(v),
                ..Default::default()
            }
        }
        d.deserialize_any(EventVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_page_decodes_whatever_its_events_hold() {
        let page = json!([
            {"id": "e1", "app_id": "a", "type": "converted", "phone": "+1 555", "date": "2026-11-02T10:00:00",
             "type_value": 7, "campaign_id": "c", "extra": {"nested": [1, 2]}},
            {"id": 42, "type": ["odd"], "phone": null, "email": true},
            "not an event",
            [1, 2]
        ]);
        let text = page.to_string();
        let events: Vec<SignalsEvent> = serde_json::from_str(&text).unwrap();
        assert_eq!(events.len(), 4);
        for (typed, raw) in events.iter().zip(page.as_array().unwrap()) {
            for name in [
                "id",
                "app_id",
                "ad_id",
                "type",
                "type_value",
                "date",
                "phone",
                "email",
            ] {
                assert_eq!(typed.field(name), raw.field(name), "{name} of {raw}");
            }
        }
        assert_eq!(events[0].field("id"), Some(Scalar::Text("e1")));
        assert_eq!(events[1].field("id"), Some(Scalar::Number("42".into())));
        assert_eq!(events[1].field("type"), Some(Scalar::Other));
        assert_eq!(events[2].content(), "\"not an event\"");
        // The content of an event without id tells different events apart, and stays the same
        // for the same event read again.
        let again: Vec<SignalsEvent> = serde_json::from_str(&text).unwrap();
        assert_eq!(events[1].content(), again[1].content());
        assert_ne!(events[0].content(), events[1].content());
    }

    #[test]
    fn text_is_borrowed_from_the_page_unless_it_had_escapes() {
        let text = r#"[{"id": "e1", "phone": "+1 555\u0030100", "type_value": "say \"hi\""}]"#;
        let events: Vec<SignalsEvent> = serde_json::from_str(text).unwrap();
        assert!(matches!(
            &events[0].id,
            Some(Field::Text(Cow::Borrowed("e1")))
        ));
        assert!(matches!(&events[0].phone, Some(Field::Text(Cow::Owned(p))) if p == "+1 5550100"));
        assert_eq!(
            events[0].field("type_value"),
            Some(Scalar::Text("say \"hi\""))
        );
    }
}
