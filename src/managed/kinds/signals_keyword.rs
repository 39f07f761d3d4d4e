//! SignalsKeyword ↔ a Signals tracked keyword.

use k8s_openapi::api::core::v1::Secret;

use crate::api::{ObservedKeyword, SignalsKeyword, SignalsKeywordStatus};
use crate::managed::external::{Drift, ExternalResource, Observation, Resolved};
use crate::managed::resource::ManagedExt;
use crate::runtime::conditions::Reason;
use crate::runtime::failure::Failure;
use crate::upstream::clients::DialogUpstream;
use crate::upstream::signals::{Keyword, KeywordFilter, KeywordStatus, SignalsClient};

const MAX_PREVIOUS_IDS: usize = 10;

pub struct SignalsKeywordAdapter(pub DialogUpstream);

type Observed = Observation<Keyword, SignalsKeywordStatus>;

/// The keyword's scope: its ad, or the account-wide shared keywords.
fn scope_filter(obj: &SignalsKeyword) -> KeywordFilter {
    KeywordFilter {
        ad_id: obj.spec.ad_id.clone(),
        is_shared: Some(obj.spec.shared),
        status: Some(KeywordStatus::Active),
    }
}

/// The ad a keyword is scoped to, sent with GET, PATCH and DELETE (shared keywords have none).
fn ad_scope(obj: &SignalsKeyword) -> Option<&str> {
    obj.spec.ad_id.as_deref().filter(|_| !obj.spec.shared)
}

fn previous_ids(obj: &SignalsKeyword) -> Vec<String> {
    obj.status
        .iter()
        .flat_map(|s| s.previous_keyword_ids.iter().cloned())
        .collect()
}

fn observation(obj: &SignalsKeyword, keyword: Keyword, previous: Vec<String>) -> Observed {
    let status = SignalsKeywordStatus {
        keyword_id: Some(keyword.id.clone()),
        previous_keyword_ids: previous,
        observed: Some(ObservedKeyword {
            id: keyword.id.clone(),
            keyword: keyword.keyword.clone(),
            ad_id: keyword.ad_id.clone(),
            shared: keyword.is_shared,
            status: keyword.status.as_str().into(),
        }),
        ..Default::default()
    };
    Observation {
        external_id: Some(keyword.id.clone()),
        drift: if keyword.keyword == obj.spec.keyword {
            Drift::None
        } else {
            Drift::Differs
        },
        status,
        upstream: keyword,
    }
}

impl ExternalResource<SignalsKeyword> for SignalsKeywordAdapter {
    type Client = SignalsClient;
    type Upstream = Keyword;

    fn connect(&self, obj: &SignalsKeyword, secret: &Secret) -> Result<SignalsClient, Failure> {
        Ok(self
            .0
            .budgeted_signals_client(&obj.spec.client_id, &obj.spec.app_id, secret)?)
    }

    /// The text in its scope, and every id the object knows, within its client and app.
    fn claims(&self, obj: &SignalsKeyword) -> Vec<String> {
        let s = &obj.spec;
        let app = format!("{}/{}", s.client_id, s.app_id);
        let scope = if s.shared {
            "shared"
        } else {
            s.ad_id.as_deref().unwrap_or("")
        };
        let ids = obj
            .external_id()
            .map(String::from)
            .into_iter()
            .chain(self.recorded_id(obj));
        std::iter::once(format!("keyword:{app}/{scope}/{}", s.keyword))
            .chain(ids.map(|id| format!("keyword-id:{app}/{id}")))
            .collect()
    }

    fn recorded_id(&self, obj: &SignalsKeyword) -> Option<String> {
        obj.status.as_ref().and_then(|s| s.keyword_id.clone())
    }

    async fn get(
        &self,
        client: &SignalsClient,
        obj: &SignalsKeyword,
        _refs: &Resolved,
        id: &str,
    ) -> Result<Option<Observed>, Failure> {
        let keyword = client.get_keyword(id, ad_scope(obj)).await?;
        Ok(keyword
            .status
            .is_live()
            .then(|| observation(obj, keyword, previous_ids(obj))))
    }

    /// An active keyword with the same text in the same scope.
    async fn find(
        &self,
        client: &SignalsClient,
        obj: &SignalsKeyword,
        _refs: &Resolved,
    ) -> Result<Option<Observed>, Failure> {
        let candidates = client.list_all_keywords(&scope_filter(obj)).await?;
        Ok(candidates
            .into_iter()
            .find(|k| {
                k.keyword == obj.spec.keyword && k.ad_id == obj.spec.ad_id && k.status.is_live()
            })
            .map(|k| observation(obj, k, previous_ids(obj))))
    }

    async fn create(
        &self,
        client: &SignalsClient,
        obj: &SignalsKeyword,
        _refs: &Resolved,
    ) -> Result<Observed, Failure> {
        let keyword = match (&obj.spec.ad_id, obj.spec.shared) {
            (_, true) => client.create_shared_keyword(&obj.spec.keyword).await?,
            (Some(ad), false) => client.create_keyword(ad, &obj.spec.keyword).await?,
            (None, false) => {
                return Err(Failure::terminal(
                    Reason::UpstreamRejected,
                    "a keyword needs adId, or shared: true",
                ));
            }
        };
        Ok(observation(obj, keyword, previous_ids(obj)))
    }

    /// Signals replaces a keyword on PATCH: the old id is archived and kept in
    /// previousKeywordIds.
    async fn update(
        &self,
        client: &SignalsClient,
        obj: &SignalsKeyword,
        _refs: &Resolved,
        observed: &Observed,
    ) -> Result<Observed, Failure> {
        let old = observed.upstream.id.clone();
        let keyword = client
            .patch_keyword(&old, ad_scope(obj), &obj.spec.keyword)
            .await?;
        let mut previous = vec![old];
        previous.extend(previous_ids(obj));
        previous.dedup();
        previous.truncate(MAX_PREVIOUS_IDS);
        Ok(observation(obj, keyword, previous))
    }

    async fn delete(
        &self,
        client: &SignalsClient,
        obj: &SignalsKeyword,
        _refs: &Resolved,
        id: Option<&str>,
    ) -> Result<(), Failure> {
        match id {
            Some(id) => Ok(client.delete_keyword(id, ad_scope(obj)).await?),
            None => Ok(()),
        }
    }
}
