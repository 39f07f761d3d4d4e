//! The Kubernetes side of a reconcile's outcome: the status subresource, Events and the
//! finalizer, each written only when it changes.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use serde_json::{Map, Value, json};

use super::resource::{KindStatus, Managed};
use crate::api::FINALIZER;
use crate::runtime::conditions::{self, Health, Reason, apply_health};
use crate::runtime::events::Events;
use crate::runtime::scope::KubeError;

pub fn api<K: Managed>(client: &kube::Client, obj: &K) -> Api<K> {
    Api::namespaced(client.clone(), &obj.namespace().unwrap_or_default())
}

/// The status `obj` should have after a reconcile that ended in `health`: the kind's fields
/// from `fields` (or as they are), the conditions for `health`, the generation reconciled.
pub fn next_status<K: Managed>(obj: &K, health: &Health, fields: Option<K::Status>) -> K::Status {
    let current = obj.status().cloned().unwrap_or_default();
    let mut next = fields.unwrap_or_else(|| current.clone());
    *next.common_mut() = current.common().clone();
    let now = Time(jiff::Timestamp::now());
    let common = next.common_mut();
    apply_health(&mut common.conditions, health, obj.meta().generation, &now);
    common.observed_generation = obj.meta().generation;
    next
}

/// A JSON merge patch that turns `from` into `to`: what `to` lacks is removed (null), so that
/// a field that became absent does not linger upstream of the comparison.
pub fn merge_patch(from: &Value, to: &Value) -> Value {
    match (from, to) {
        (Value::Object(a), Value::Object(b)) => {
            let mut patch = Map::new();
            for key in a.keys().filter(|k| !b.contains_key(*k)) {
                patch.insert(key.clone(), Value::Null);
            }
            for (key, value) in b {
                match a.get(key) {
                    Some(old) if old == value => {}
                    Some(old) => {
                        patch.insert(key.clone(), merge_patch(old, value));
                    }
                    None => {
                        patch.insert(key.clone(), value.clone());
                    }
                }
            }
            Value::Object(patch)
        }
        _ => to.clone(),
    }
}

/// Writes the status for `health` only when it differs from what is stored, compared after
/// serialisation (absent and null are the same), unless `force` (upstream was just written:
/// `lastSyncTime` moves). Emits an Event when the Ready condition changes.
pub async fn write_status<K: Managed>(
    client: &kube::Client,
    events: &Events,
    obj: &K,
    health: &Health,
    fields: Option<K::Status>,
    force: bool,
) -> Result<(), KubeError> {
    let current = obj.status().cloned().unwrap_or_default();
    let mut next = next_status(obj, health, fields);
    let stored = serde_json::to_value(&current).unwrap_or_default();
    if serde_json::to_value(&next).unwrap_or_default() == stored && !force {
        return Ok(());
    }
    // Refreshed only together with another change, so that steady state writes nothing.
    if health.is_ready() {
        next.common_mut().last_sync_time = Some(Time(jiff::Timestamp::now()));
    }
    let patch = merge_patch(&stored, &serde_json::to_value(&next).unwrap_or_default());
    api::<K>(client, obj)
        .patch_status(
            &obj.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&json!({ "status": patch })),
        )
        .await?;
    let before = conditions::find(&current.common().conditions, conditions::READY)
        .map(|c| (c.status.clone(), c.reason.clone()));
    let after = (
        if health.is_ready() { "True" } else { "False" }.to_string(),
        health.reason().as_str().to_string(),
    );
    if before.as_ref() != Some(&after) {
        let type_ = if matches!(health, Health::Ready { .. } | Health::NotReady { .. }) {
            EventType::Normal
        } else {
            EventType::Warning
        };
        publish(events, obj, type_, health.reason(), health.message()).await;
    }
    Ok(())
}

pub async fn publish<K: Managed>(
    events: &Events,
    obj: &K,
    type_: EventType,
    reason: Reason,
    note: &str,
) {
    let event = Event {
        type_,
        reason: reason.as_str().into(),
        note: Some(note.chars().take(1000).collect()),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = events.publish(&event, &obj.object_ref(&())).await {
        tracing::debug!(error = %e, "event not recorded");
    }
}

pub fn has_finalizer<K: Managed>(obj: &K) -> bool {
    obj.finalizers().iter().any(|f| f == FINALIZER)
}

pub async fn add_finalizer<K: Managed>(client: &kube::Client, obj: &K) -> Result<(), kube::Error> {
    if has_finalizer(obj) {
        return Ok(());
    }
    let mut finalizers = obj.finalizers().to_vec();
    finalizers.push(FINALIZER.to_string());
    patch_finalizers(client, obj, finalizers).await
}

pub async fn remove_finalizer<K: Managed>(
    client: &kube::Client,
    obj: &K,
) -> Result<(), kube::Error> {
    if !has_finalizer(obj) {
        return Ok(());
    }
    let finalizers: Vec<String> = obj
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect();
    patch_finalizers(client, obj, finalizers).await
}

/// Replaces the finalizer list at the object's resourceVersion, so a concurrent change of the
/// list is never lost (the write fails and the reconcile runs again).
async fn patch_finalizers<K: Managed>(
    client: &kube::Client,
    obj: &K,
    finalizers: Vec<String>,
) -> Result<(), kube::Error> {
    let patch =
        json!({"metadata": {"finalizers": finalizers, "resourceVersion": obj.resource_version()}});
    api::<K>(client, obj)
        .patch(
            &obj.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_merge_patch_removes_what_became_absent_and_skips_what_is_equal() {
        let from = json!({"a": 1, "gone": "x", "o": {"keep": 1, "drop": 2, "change": 3}, "l": [1]});
        let to = json!({"a": 1, "o": {"keep": 1, "change": 4}, "l": [2], "new": true});
        assert_eq!(
            merge_patch(&from, &to),
            json!({"gone": null, "o": {"drop": null, "change": 4}, "l": [2], "new": true})
        );
        assert_eq!(merge_patch(&to, &to), json!({}));
    }
}
