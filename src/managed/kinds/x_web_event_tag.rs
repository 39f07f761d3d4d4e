//! XWebEventTag ↔ an X web event tag.

use k8s_openapi::api::core::v1::Secret;

use crate::api::{ObservedWebEventTag, XWebEventTag, XWebEventTagStatus};
use crate::managed::external::{Drift, ExternalResource, Observation, Resolved};
use crate::managed::resource::ManagedExt;
use crate::runtime::failure::Failure;
use crate::upstream::clients::XUpstream;
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

type Observed = Observation<Tag, XWebEventTagStatus>;

fn observation(obj: &XWebEventTag, tag: Tag) -> Observed {
    let status = XWebEventTagStatus {
        tag_id: Some(tag.id.clone()),
        observed: Some(ObservedWebEventTag {
            id: tag.id.clone(),
            name: tag.name.clone(),
            tag_type: tag.tag_type.clone().unwrap_or_default(),
            click_window: tag.click_window.unwrap_or_default() as i32,
            view_through_window: tag.view_through_window.unwrap_or_default() as i32,
            retargeting_enabled: tag.retargeting_enabled.unwrap_or_default(),
            status: tag.status.clone(),
        }),
        ..Default::default()
    };
    Observation {
        external_id: Some(tag.id.clone()),
        drift: if changes(obj, &tag).is_empty() {
            Drift::None
        } else {
            Drift::Differs
        },
        status,
        upstream: tag,
    }
}

impl ExternalResource<XWebEventTag> for XWebEventTagAdapter {
    type Client = XAdsClient;
    type Upstream = Tag;

    fn connect(&self, _obj: &XWebEventTag, secret: &Secret) -> Result<XAdsClient, Failure> {
        Ok(self.0.client(secret)?)
    }

    /// The name within the account, and every id the object knows.
    fn claims(&self, obj: &XWebEventTag) -> Vec<String> {
        let account = &obj.spec.account_id;
        let ids = obj
            .external_id()
            .map(String::from)
            .into_iter()
            .chain(self.recorded_id(obj));
        std::iter::once(format!("tag:{account}/{}", obj.spec.name))
            .chain(ids.map(|id| format!("tag-id:{account}/{id}")))
            .collect()
    }

    fn recorded_id(&self, obj: &XWebEventTag) -> Option<String> {
        obj.status.as_ref().and_then(|s| s.tag_id.clone())
    }

    async fn get(
        &self,
        client: &XAdsClient,
        obj: &XWebEventTag,
        _refs: &Resolved,
        id: &str,
    ) -> Result<Option<Observed>, Failure> {
        let tag = client.get_tag(&obj.spec.account_id, id).await?;
        Ok((!tag.deleted).then(|| observation(obj, tag)))
    }

    /// A non-deleted tag of the account with exactly this name.
    async fn find(
        &self,
        client: &XAdsClient,
        obj: &XWebEventTag,
        _refs: &Resolved,
    ) -> Result<Option<Observed>, Failure> {
        let tags = client.list_all_tags(&obj.spec.account_id, false).await?;
        Ok(tags
            .into_iter()
            .find(|t| t.name == obj.spec.name && !t.deleted)
            .map(|t| observation(obj, t)))
    }

    async fn create(
        &self,
        client: &XAdsClient,
        obj: &XWebEventTag,
        _refs: &Resolved,
    ) -> Result<Observed, Failure> {
        let spec = &obj.spec;
        let params = TagParams {
            name: spec.name.clone(),
            tag_type: tag_type(obj),
            click_window: spec.click_window as u32,
            view_through_window: spec.view_through_window as u32,
            retargeting_enabled: spec.retargeting_enabled,
        };
        let tag = client.create_tag(&spec.account_id, &params).await?;
        Ok(observation(obj, tag))
    }

    /// A PUT of only the fields that differ.
    async fn update(
        &self,
        client: &XAdsClient,
        obj: &XWebEventTag,
        _refs: &Resolved,
        observed: &Observed,
    ) -> Result<Observed, Failure> {
        let current = &observed.upstream;
        let tag = client
            .update_tag(&obj.spec.account_id, &current.id, &changes(obj, current))
            .await?;
        Ok(observation(obj, tag))
    }

    async fn delete(
        &self,
        client: &XAdsClient,
        obj: &XWebEventTag,
        _refs: &Resolved,
        id: Option<&str>,
    ) -> Result<(), Failure> {
        if let Some(id) = id {
            client.delete_tag(&obj.spec.account_id, id).await?;
        }
        Ok(())
    }
}
