//! One Signals event → one X conversion (SPEC 1.5). Pure: no I/O, so every rule is unit-tested.
//!
//! Events come as [`Event`]s whose fields may be of any JSON type, so that one malformed event
//! is rejected on its own instead of failing the page it came in.

use std::collections::HashSet;
use std::sync::Arc;

use jiff::Timestamp;

use super::event::{Event, Scalar};
use super::identity::{hash_email, hash_phone};
use crate::api::SignalsEventType;
use crate::runtime::digest::sha256_hex;
use crate::upstream::x_ads::{Conversion, ConversionTime, Identifiers};

/// Which events a bridge takes (its `appId`, `eventTypes` and `adIds`), and how it reads
/// their dates.
#[derive(Clone, Debug, PartialEq)]
pub struct EventFilter {
    /// Events that name another app are not this bridge's (a postback can carry anything).
    pub app_id: String,
    pub types: HashSet<SignalsEventType>,
    /// Empty: every ad.
    pub ad_ids: HashSet<String>,
    /// Dates without an offset are civil times in this zone (`source.signals.timeZone`);
    /// None is UTC, the common case, which needs no zone lookup per event.
    pub time_zone: Option<jiff::tz::TimeZone>,
}

impl EventFilter {
    /// The event's type when the event is this bridge's business at all; decided before
    /// anything is validated, so that other apps', types' and ads' events are never counted as
    /// rejected.
    fn takes<'a, E: Event + ?Sized>(&self, event: &'a E) -> Option<&'a str> {
        let type_name = read(event, "type")?.text()?;
        let kind = event_type(type_name)?;
        let app = read(event, "app_id");
        let taken = self.types.contains(&kind)
            && app
                .as_ref()
                .and_then(Scalar::as_str)
                .is_none_or(|app| app == self.app_id)
            && (self.ad_ids.is_empty()
                || read(event, "ad_id")
                    .as_ref()
                    .and_then(Scalar::as_str)
                    .is_some_and(|ad| self.ad_ids.contains(ad)));
        taken.then_some(type_name)
    }
}

/// What the pipeline does with one event.
#[derive(Clone, Debug, PartialEq)]
pub enum Mapped {
    /// Send this conversion (its `conversion_id` is the event's id); `at` is the event's
    /// date.
    Convert {
        at: Timestamp,
        conversion: Conversion,
    },
    /// Never sent; counted and reported. `key` is the event's id, or for an event without
    /// one a digest of its content, so that reading it again is recognised.
    Reject {
        key: String,
        at: Option<Timestamp>,
        reason: String,
    },
    /// Not this bridge's business (another type or ad); not counted.
    Skip,
}

/// The key of rejected events that carry no id: a digest of what they hold.
fn content_key<E: Event + ?Sized>(event: &E) -> String {
    format!("raw:{}", sha256_hex(&event.content()))
}

/// A field as the mapping reads it: text trimmed, and blank text as absent.
fn read<'a, E: Event + ?Sized>(event: &'a E, field: &str) -> Option<Scalar<'a>> {
    match event.field(field)? {
        Scalar::Text(s) => Some(s.trim()).filter(|s| !s.is_empty()).map(Scalar::Text),
        other => Some(other),
    }
}

/// The event's date in UTC, if it parses (civil dates read as UTC: the events list's own
/// filter bounds are UTC, so paging uses this).
pub fn event_date<E: Event + ?Sized>(event: &E) -> Option<Timestamp> {
    parse_event_date(read(event, "date")?.text()?, None)
}

/// RFC 3339 with an offset, or a civil date-time in `zone` (UTC when None; the events list
/// sends `YYYY-MM-DDTHH:MM:SS`).
pub fn parse_event_date(text: &str, zone: Option<&jiff::tz::TimeZone>) -> Option<Timestamp> {
    let text = text.trim();
    // The events list sends civil times; parse as an instant only when there is an offset.
    let time = text
        .split_once(['T', 't', ' '])
        .map_or("", |(_, time)| time);
    if time.contains(['Z', 'z', '+', '-']) {
        return text.parse::<Timestamp>().ok();
    }
    let civil: jiff::civil::DateTime = text.parse().ok()?;
    match zone {
        None => jiff::tz::Offset::UTC.to_timestamp(civil).ok(),
        Some(zone) => zone.to_ambiguous_timestamp(civil).compatible().ok(),
    }
}

fn event_type(name: &str) -> Option<SignalsEventType> {
    use serde::Deserialize;
    use serde::de::IntoDeserializer;
    let name: serde::de::value::StrDeserializer<'_, serde::de::value::Error> =
        name.into_deserializer();
    SignalsEventType::deserialize(name).ok()
}

/// Maps the events of one bridge: what it takes, and the X event tag its conversions name.
#[derive(Clone, Debug)]
pub struct Mapper {
    filter: EventFilter,
    x_event_id: Arc<str>,
}

impl Mapper {
    pub fn new(filter: EventFilter, x_event_id: &str) -> Self {
        Mapper {
            filter,
            x_event_id: x_event_id.into(),
        }
    }

    /// The event's date as this bridge reads it (civil dates in its time zone).
    pub fn date_of<E: Event + ?Sized>(&self, event: &E) -> Option<Timestamp> {
        parse_event_date(read(event, "date")?.text()?, self.filter.time_zone.as_ref())
    }

    /// Whether [`Mapper::date_of`] can differ from [`event_date`] (civil dates read in a zone
    /// other than UTC).
    pub fn zoned(&self) -> bool {
        self.filter.time_zone.is_some()
    }

    /// Map one event.
    pub fn map<E: Event + ?Sized>(&self, event: &E) -> Mapped {
        self.map_dated(event, || self.date_of(event))
    }

    /// Map one event whose date (as [`Mapper::date_of`] reads it) the caller may have read
    /// already; `date` is asked only for events this bridge takes.
    pub fn map_dated<E: Event + ?Sized>(
        &self,
        event: &E,
        date: impl FnOnce() -> Option<Timestamp>,
    ) -> Mapped {
        let Some(type_name) = self.filter.takes(event) else {
            return Mapped::Skip;
        };
        let at = date();
        let id = read(event, "id");
        let Some(id) = id.as_ref().and_then(Scalar::as_str) else {
            return Mapped::Reject {
                key: content_key(event),
                at,
                reason: "event has no id".into(),
            };
        };
        let reject = |reason: String| Mapped::Reject {
            key: id.to_string(),
            at,
            reason,
        };
        let Some(at) = at else {
            return reject("date is missing or not a valid date-time".into());
        };
        // A bad identifier is dropped as long as another one is good: X matches on either.
        let mut identifiers = Identifiers::default();
        let mut problem = None;
        if let Some(phone) = read(event, "phone") {
            match phone.as_str().map(hash_phone) {
                Some(Ok(hash)) => identifiers.hashed_phone_number = Some(hash),
                Some(Err(e)) => problem = Some(e.to_string()),
                None => {}
            }
        }
        if let Some(email) = read(event, "email") {
            match email.as_str().map(hash_email) {
                Some(Ok(hash)) => identifiers.hashed_email = Some(hash),
                Some(Err(e)) => problem = problem.or(Some(e.to_string())),
                None => {}
            }
        }
        if identifiers.is_empty() {
            return reject(problem.unwrap_or_else(|| "event has no phone number or email".into()));
        }
        let description = read(event, "type_value")
            .as_ref()
            .and_then(Scalar::as_str)
            .map(|value| [type_name, ":", value].concat());
        Mapped::Convert {
            conversion: Conversion {
                conversion_time: ConversionTime::new(at),
                event_id: self.x_event_id.clone(),
                identifiers,
                conversion_id: id.into(),
                description,
            },
            at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::digest::Sha256Hex;
    use serde_json::{Value, json};

    fn map_event(event: &Value, filter: &EventFilter, tag: &str) -> Mapped {
        Mapper::new(filter.clone(), tag).map(event)
    }

    fn hash(hex: &str) -> Option<Sha256Hex> {
        Some(Sha256Hex::parse(hex).expect("a SHA-256 in hex"))
    }

    fn filter(types: &[SignalsEventType], ads: &[&str]) -> EventFilter {
        EventFilter {
            app_id: "app".into(),
            types: types.iter().copied().collect(),
            ad_ids: ads.iter().map(|a| a.to_string()).collect(),
            time_zone: None,
        }
    }

    fn converted_only() -> EventFilter {
        filter(&[SignalsEventType::Converted], &[])
    }

    fn event() -> Value {
        json!({
            "id": "ev-1", "app_id": "app", "ad_id": "120210000000000001", "campaign_id": "c1",
            "phone": "11234567890", "type": "converted", "type_id": "kw-1",
            "type_value": "ORDER CONFIRMED", "date": "2026-11-02T10:15:30", "extra": {"x": 1}
        })
    }

    fn convert(mapped: Mapped) -> (String, Timestamp, Conversion) {
        match mapped {
            Mapped::Convert { at, conversion } => {
                (conversion.conversion_id.to_string(), at, conversion)
            }
            other => panic!("expected a conversion, got {other:?}"),
        }
    }

    fn reason(mapped: Mapped) -> String {
        match mapped {
            Mapped::Reject { reason, .. } => reason,
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    #[test]
    fn maps_every_field() {
        let (id, at, c) = convert(map_event(&event(), &converted_only(), "o87ne"));
        assert_eq!(id, "ev-1");
        assert_eq!(at, "2026-11-02T10:15:30Z".parse::<Timestamp>().unwrap());
        assert_eq!(
            serde_json::from_slice::<Value>(&crate::upstream::x_ads::conversions_body(&[c]))
                .unwrap()["conversions"][0],
            json!({
                "conversion_time": "2026-11-02T10:15:30.000Z",
                "event_id": "o87ne",
                "identifiers": [{"hashed_phone_number": "1fa6b8d986d9b9cd01bf36951815158bbde9f520c0567c835dfe34783d0a4231"}],
                "conversion_id": "ev-1",
                "description": "converted:ORDER CONFIRMED"
            })
        );
    }

    #[test]
    fn numeric_ids_and_no_type_value() {
        let mut e = event();
        e["id"] = json!(42);
        e["type_value"] = Value::Null;
        let (id, _, c) = convert(map_event(&e, &converted_only(), "o87ne"));
        assert_eq!(id, "42");
        assert_eq!(&*c.conversion_id, "42");
        assert_eq!(c.description, None);
    }

    #[test]
    fn email_is_normalised_and_hashed_next_to_the_phone() {
        let mut e = event();
        e["email"] = json!("  Test@Twitter.com ");
        let (_, _, c) = convert(map_event(&e, &converted_only(), "o87ne"));
        assert_eq!(
            c.identifiers.hashed_email,
            hash("d360d510a224510f373931ce2d6215a799f5a9c1cef221b0149b6b6b50cced62")
        );
        assert!(c.identifiers.hashed_phone_number.is_some());
    }

    #[test]
    fn prehashed_phone_is_kept() {
        let mut e = event();
        let hex = "1fa6b8d986d9b9cd01bf36951815158bbde9f520c0567c835dfe34783d0a4231";
        e["phone"] = json!(hex);
        let (_, _, c) = convert(map_event(&e, &converted_only(), "o87ne"));
        assert_eq!(c.identifiers, Identifiers::phone(hash(hex).unwrap()));
    }

    #[test]
    fn time_without_offset_is_utc_and_offsets_are_converted() {
        let cases = [
            ("2026-11-02T10:15:30", "2026-11-02T10:15:30.000Z"),
            ("2026-11-02 10:15:30", "2026-11-02T10:15:30.000Z"),
            ("2026-11-02T10:15:30.5", "2026-11-02T10:15:30.500Z"),
            ("2026-11-02T10:15:30.123456", "2026-11-02T10:15:30.123Z"),
            ("2026-11-02T10:15:30Z", "2026-11-02T10:15:30.000Z"),
            ("2026-11-02T12:15:30+02:00", "2026-11-02T10:15:30.000Z"),
            ("2026-11-02T00:15:30-05:30", "2026-11-02T05:45:30.000Z"),
            ("2026-12-31T23:59:59.999-01:00", "2027-01-01T00:59:59.999Z"),
        ];
        for (input, want) in cases {
            let at = parse_event_date(input, None).unwrap_or_else(|| panic!("{input} must parse"));
            assert_eq!(ConversionTime::new(at).to_string(), want, "{input}");
        }
    }

    #[test]
    fn rejected_inputs_say_why() {
        let f = converted_only();
        let with = |field: &str, value: Value| {
            let mut e = event();
            e[field] = value;
            reason(map_event(&e, &f, "o87ne"))
        };
        assert_eq!(with("id", Value::Null), "event has no id");
        assert_eq!(
            with("date", json!("yesterday")),
            "date is missing or not a valid date-time"
        );
        assert_eq!(
            with("date", json!("2026-13-01T00:00:00")),
            "date is missing or not a valid date-time"
        );
        assert_eq!(
            with("phone", json!("123")),
            "phone number has 3 digits, at least 8 required"
        );
        assert_eq!(
            with("phone", json!("0123456789")),
            "phone number does not start with a valid country calling code"
        );
        assert_eq!(
            with("phone", json!("+1 (555) abc-0100")),
            "phone number contains characters other than digits, spaces, dashes, dots, parentheses and a leading +"
        );
        assert_eq!(
            with("phone", Value::Null),
            "event has no phone number or email"
        );
        let mut e = event();
        e["phone"] = Value::Null;
        e["email"] = json!("not-an-email");
        assert_eq!(
            reason(map_event(&e, &f, "o87ne")),
            "email address is not valid"
        );
    }

    #[test]
    fn a_bad_identifier_is_dropped_while_a_good_one_remains() {
        let mut e = event();
        e["email"] = json!("not-an-email");
        let (_, _, c) = convert(map_event(&e, &converted_only(), "o87ne"));
        assert_eq!(
            c.identifiers,
            Identifiers::phone(
                hash("1fa6b8d986d9b9cd01bf36951815158bbde9f520c0567c835dfe34783d0a4231").unwrap()
            )
        );
        let mut e = event();
        e["phone"] = json!("n/a");
        e["email"] = json!("Test@Twitter.com");
        let (_, _, c) = convert(map_event(&e, &converted_only(), "o87ne"));
        assert!(c.identifiers.hashed_phone_number.is_none());
        assert!(c.identifiers.hashed_email.is_some());
    }

    #[test]
    fn uppercase_hashes_are_hashes() {
        let mut e = event();
        let hex = "1FA6B8D986D9B9CD01BF36951815158BBDE9F520C0567C835DFE34783D0A4231";
        e["phone"] = json!(hex);
        let (_, _, c) = convert(map_event(&e, &converted_only(), "o87ne"));
        assert_eq!(
            c.identifiers.hashed_phone_number.unwrap(),
            hex.to_ascii_lowercase().as_str()
        );
    }

    #[test]
    fn other_apps_types_and_ads_are_skipped_before_validation() {
        // Broken in every way, but not this bridge's business: skipped, never rejected.
        let broken = |field: &str, value: Value| {
            let mut e = json!({"phone": "n/a", "date": "never", "type": "converted",
                               "app_id": "app", "ad_id": "ad1"});
            e[field] = value;
            e
        };
        let f = filter(&[SignalsEventType::Converted], &["ad1"]);
        assert_eq!(
            map_event(&broken("app_id", json!("other")), &f, "o"),
            Mapped::Skip
        );
        assert_eq!(
            map_event(&broken("type", json!("teleport")), &f, "o"),
            Mapped::Skip
        );
        assert_eq!(
            map_event(&broken("type", json!("keyword")), &f, "o"),
            Mapped::Skip
        );
        assert_eq!(
            map_event(&broken("ad_id", json!("ad2")), &f, "o"),
            Mapped::Skip
        );
        assert!(matches!(
            map_event(&broken("app_id", json!("app")), &f, "o"),
            Mapped::Reject { .. }
        ));
    }

    #[test]
    fn civil_dates_are_read_in_the_bridge_time_zone() {
        let mut f = converted_only();
        f.time_zone = Some(jiff::tz::TimeZone::get("Europe/Berlin").unwrap());
        let (_, at, c) = convert(map_event(&event(), &f, "o87ne"));
        assert_eq!(at, "2026-11-02T09:15:30Z".parse::<Timestamp>().unwrap());
        assert_eq!(c.conversion_time.to_string(), "2026-11-02T09:15:30.000Z");
        let mut e = event();
        e["date"] = json!("2026-11-02T10:15:30+00:00");
        let (_, at, _) = convert(map_event(&e, &f, "o87ne"));
        assert_eq!(at, "2026-11-02T10:15:30Z".parse::<Timestamp>().unwrap());
    }

    #[test]
    fn rejections_never_echo_the_phone_number() {
        let mut e = event();
        e["phone"] = json!("99999");
        let r = reason(map_event(&e, &converted_only(), "o87ne"));
        assert!(!r.contains("99999"), "{r}");
    }

    #[test]
    fn other_types_and_ads_are_skipped() {
        let mut e = event();
        e["type"] = json!("keyword");
        assert_eq!(map_event(&e, &converted_only(), "o87ne"), Mapped::Skip);
        let only_other_ad = filter(&[SignalsEventType::Converted], &["999"]);
        assert_eq!(map_event(&event(), &only_other_ad, "o87ne"), Mapped::Skip);
        let this_ad = filter(
            &[SignalsEventType::Converted, SignalsEventType::Keyword],
            &["120210000000000001"],
        );
        assert!(matches!(
            map_event(&e, &this_ad, "o87ne"),
            Mapped::Convert { .. }
        ));
    }

    #[test]
    fn events_without_an_id_are_keyed_by_what_they_hold() {
        let key = |e: &Value| match map_event(e, &converted_only(), "o") {
            Mapped::Reject { key, reason, .. } => {
                assert_eq!(reason, "event has no id");
                key
            }
            other => panic!("expected a rejection, got {other:?}"),
        };
        let mut a = event();
        a["id"] = Value::Null;
        let mut b = a.clone();
        b["phone"] = json!("+4915112345678");
        assert!(key(&a).starts_with("raw:"));
        assert_eq!(key(&a), key(&a.clone()), "the same event read again");
        assert_ne!(key(&a), key(&b));
    }
}
