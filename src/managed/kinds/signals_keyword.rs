//! SignalsKeyword ↔ a Signals tracked keyword.

use k8s_openapi::api::core::v1::Secret;
use serde_json::{Map, Value, json};

use super::DialogUpstream;
use crate::api::SignalsKeyword;
use crate::managed::external::{ExternalResource, Observation};
use crate::managed::resource::ManagedExt;
use crate::runtime::failure::Failure;
use crate::upstream::signals::{Keyword, KeywordFilter, KeywordStatus, SignalsClient};

const MAX_PREVIOUS_IDS: usize = 10;

pub struct SignalsKeywordAdapter(pub DialogUpstream);

impl SignalsKeywordAdapter {
    fn known_id(obj: &SignalsKeyword) -> Option<String> {
        obj.external_id()
            .map(String::from)
            .or_else(|| obj.status.as_ref().and_then(|s| s.keyword_id.clone()))
    }
}

/// The keyword's scope: its ad, or the account-wide shared keywords.
fn scope_filter(obj: &SignalsKeyword) -> KeywordFilter {
    KeywordFilter {
        ad_id: obj.spec.ad_id.clone(),
        is_shared: Some(obj.spec.shared),
        status: Some(KeywordStatus::Active),
    }
}

fn observation(obj: &SignalsKeyword, keyword: &Keyword) -> Observation {
    let mut status = Map::new();
    status.insert("keywordId".into(), json!(keyword.id));
    status.insert(
        "observed".into(),
        json!({
            "id": keyword.id,
            "keyword": keyword.keyword,
            "adId": keyword.ad_id,
            "shared": keyword.is_shared,
            "status": match keyword.status {
                KeywordStatus::Active => "active",
                KeywordStatus::Archived => "archived",
                KeywordStatus::Unknown => "unknown",
            },
        }),
    );
    Observation {
        exists: keyword.status == KeywordStatus::Active,
        up_to_date: keyword.keyword == obj.spec.keyword,
        external_id: Some(keyword.id.clone()),
        status,
        upstream: serde_json::Value::Null,
    }
}

impl ExternalResource<SignalsKeyword> for SignalsKeywordAdapter {
    type Client = SignalsClient;

    fn connect(&self, obj: &SignalsKeyword, secret: &Secret) -> Result<SignalsClient, Failure> {
        self.0
            .signals_client(&obj.spec.client_id, &obj.spec.app_id, secret)
    }

    /// By id first; an archived or vanished keyword falls back to the natural key (an active
    /// keyword with the same text in the same scope), so a crash between create and the
    /// status write never leads to a duplicate.
    async fn observe(
        &self,
        client: &SignalsClient,
        obj: &SignalsKeyword,
    ) -> Result<Observation, Failure> {
        if let Some(id) = Self::known_id(obj) {
            match client.get_keyword(&id).await {
                Ok(k) if k.status == KeywordStatus::Active => return Ok(observation(obj, &k)),
                Ok(_) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
        }
        let candidates = client.list_all_keywords(&scope_filter(obj)).await?;
        Ok(candidates
            .iter()
            .find(|k| {
                k.keyword == obj.spec.keyword
                    && k.ad_id == obj.spec.ad_id
                    && k.status == KeywordStatus::Active
            })
            .map(|k| observation(obj, k))
            .unwrap_or_default())
    }

    async fn create(
        &self,
        client: &SignalsClient,
        obj: &SignalsKeyword,
    ) -> Result<Observation, Failure> {
        let keyword = match (&obj.spec.ad_id, obj.spec.shared) {
            (_, true) => client.create_shared_keyword(&obj.spec.keyword).await?,
            (Some(ad), false) => client.create_keyword(ad, &obj.spec.keyword).await?,
            (None, false) => {
                return Err(Failure::terminal(
                    crate::runtime::conditions::Reason::UpstreamRejected,
                    "a keyword needs adId, or shared: true",
                ));
            }
        };
        Ok(observation(obj, &keyword))
    }

    /// Signals replaces a keyword on PATCH: the old id is archived and kept in
    /// previousKeywordIds.
    async fn update(
        &self,
        client: &SignalsClient,
        obj: &SignalsKeyword,
        observed: &Observation,
    ) -> Result<Observation, Failure> {
        let old = observed.external_id.clone().unwrap_or_default();
        let keyword = client.patch_keyword(&old, &obj.spec.keyword).await?;
        let mut result = observation(obj, &keyword);
        let mut previous: Vec<String> = vec![old];
        previous.extend(
            obj.status
                .iter()
                .flat_map(|s| s.previous_keyword_ids.iter().cloned()),
        );
        previous.dedup();
        previous.truncate(MAX_PREVIOUS_IDS);
        result
            .status
            .insert("previousKeywordIds".into(), Value::from(previous));
        Ok(result)
    }

    async fn delete(&self, client: &SignalsClient, obj: &SignalsKeyword) -> Result<(), Failure> {
        let Some(id) = Self::known_id(obj) else {
            return Ok(());
        };
        super::gone_is_ok(client.delete_keyword(&id).await)
    }
}
