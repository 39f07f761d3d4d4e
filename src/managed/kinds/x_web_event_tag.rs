//! XWebEventTag ↔ an X web event tag.

use k8s_openapi::api::core::v1::Secret;
use serde_json::{Map, json};

use super::{XUpstream, secret_data};
use crate::api::XWebEventTag;
use crate::managed::external::{ExternalResource, Observation};
use crate::managed::resource::ManagedExt;
use crate::runtime::failure::Failure;
use crate::upstream::secret::XCredentials;
use crate::upstream::x_ads::{Tag, TagParams, TagUpdate, XAdsClient};

pub struct XWebEventTagAdapter(pub XUpstream);

fn tag_type(obj: &XWebEventTag) -> String {
    serde_json::to_value(obj.spec.tag_type)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

/// The fields of the spec that differ upstream; empty when in sync.
fn changes(obj: &XWebEventTag, tag: &Tag) -> TagUpdate {
    let spec = &obj.spec;
    let want_type = tag_type(obj);
    let click = spec.click_window as u32;
    let view = spec.view_through_window as u32;
    TagUpdate {
        name: (tag.name != spec.name).then(|| spec.name.clone()),
        tag_type: (tag.tag_type.as_deref() != Some(want_type.as_str())).then_some(want_type),
        click_window: (tag.click_window != Some(click)).then_some(click),
        view_through_window: (tag.view_through_window != Some(view)).then_some(view),
        retargeting_enabled: (tag.retargeting_enabled != Some(spec.retargeting_enabled))
            .then_some(spec.retargeting_enabled),
    }
}

fn observation(obj: &XWebEventTag, tag: &Tag) -> Observation {
    let mut status = Map::new();
    status.insert("tagId".into(), json!(tag.id));
    status.insert(
        "observed".into(),
        json!({
            "id": tag.id,
            "name": tag.name,
            "type": tag.tag_type.clone().unwrap_or_default(),
            "clickWindow": tag.click_window.unwrap_or_default(),
            "viewThroughWindow": tag.view_through_window.unwrap_or_default(),
            "retargetingEnabled": tag.retargeting_enabled.unwrap_or_default(),
            "status": tag.status,
        }),
    );
    Observation {
        exists: !tag.deleted,
        up_to_date: changes(obj, tag).is_empty(),
        external_id: Some(tag.id.clone()),
        status,
        upstream: json!({
            "id": tag.id,
            "name": tag.name,
            "type": tag.tag_type,
            "click_window": tag.click_window,
            "view_through_window": tag.view_through_window,
            "retargeting_enabled": tag.retargeting_enabled,
            "deleted": tag.deleted,
        }),
    }
}

fn known_id(obj: &XWebEventTag) -> Option<String> {
    obj.external_id()
        .map(String::from)
        .or_else(|| obj.status.as_ref().and_then(|s| s.tag_id.clone()))
}

impl ExternalResource<XWebEventTag> for XWebEventTagAdapter {
    type Client = XAdsClient;

    fn connect(&self, _obj: &XWebEventTag, secret: &Secret) -> Result<XAdsClient, Failure> {
        let credentials = XCredentials::from_secret_data(&secret_data(secret))?;
        Ok(XAdsClient::new(
            self.0.transport.clone(),
            &self.0.x_ads_url,
            credentials,
        )?)
    }

    /// By id first, then by exact name among the account's non-deleted tags.
    async fn observe(
        &self,
        client: &XAdsClient,
        obj: &XWebEventTag,
    ) -> Result<Observation, Failure> {
        let account = &obj.spec.account_id;
        if let Some(id) = known_id(obj) {
            match client.get_tag(account, &id).await {
                Ok(tag) if !tag.deleted => return Ok(observation(obj, &tag)),
                Ok(_) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
        }
        let tags = client.list_all_tags(account, false).await?;
        Ok(tags
            .iter()
            .find(|t| t.name == obj.spec.name && !t.deleted)
            .map(|t| observation(obj, t))
            .unwrap_or_default())
    }

    async fn create(
        &self,
        client: &XAdsClient,
        obj: &XWebEventTag,
    ) -> Result<Observation, Failure> {
        let spec = &obj.spec;
        let params = TagParams {
            name: spec.name.clone(),
            tag_type: tag_type(obj),
            click_window: spec.click_window as u32,
            view_through_window: spec.view_through_window as u32,
            retargeting_enabled: spec.retargeting_enabled,
        };
        let tag = client.create_tag(&spec.account_id, &params).await?;
        Ok(observation(obj, &tag))
    }

    /// A PUT of only the fields that differ.
    async fn update(
        &self,
        client: &XAdsClient,
        obj: &XWebEventTag,
        observed: &Observation,
    ) -> Result<Observation, Failure> {
        let id = observed.external_id.clone().unwrap_or_default();
        let account = &obj.spec.account_id;
        let current: Tag = serde_json::from_value(observed.upstream.clone()).map_err(|e| {
            Failure::terminal(
                crate::runtime::conditions::Reason::UpstreamRejected,
                e.to_string(),
            )
        })?;
        let tag = client
            .update_tag(account, &id, &changes(obj, &current))
            .await?;
        Ok(observation(obj, &tag))
    }

    async fn delete(&self, client: &XAdsClient, obj: &XWebEventTag) -> Result<(), Failure> {
        let Some(id) = known_id(obj) else {
            return Ok(());
        };
        super::gone_is_ok(client.delete_tag(&obj.spec.account_id, &id).await)
    }
}
