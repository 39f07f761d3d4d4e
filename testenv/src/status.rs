//! Reading an object's status (as JSON): conditions and readiness, and Prometheus samples.

use serde_json::Value;

/// `(status, reason)` of a condition type.
pub fn condition(o: &Value, type_: &str) -> Option<(String, String)> {
    condition_full(o, type_).map(|(status, reason, _)| (status, reason))
}

/// `(status, reason, message)` of a condition type.
pub fn condition_full(o: &Value, type_: &str) -> Option<(String, String, String)> {
    let text = |c: &Value, field: &str| c[field].as_str().unwrap_or("").to_string();
    o["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .map(|c| (text(c, "status"), text(c, "reason"), text(c, "message")))
}

/// Ready=True with the given reason, for the current generation.
pub fn ready_with(reason: &'static str) -> impl Fn(&Value) -> bool {
    move |o| {
        condition(o, "Ready") == Some(("True".into(), reason.into()))
            && o["status"]["observedGeneration"] == o["metadata"]["generation"]
    }
}

/// Ready=True with reason Available, for the current generation.
pub fn ready(o: &Value) -> bool {
    ready_with("Available")(o)
}

/// Ready=True, whatever the reason and generation.
pub fn ready_true(o: &Value) -> bool {
    condition(o, "Ready").is_some_and(|(status, _)| status == "True")
}

/// One sample of a Prometheus text exposition: the first line of `family` whose labels
/// include every `(name, value)` of `labels`.
pub fn sample(text: &str, family: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{family}{{")) || l.starts_with(&format!("{family} ")))
        .find(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}
