//! The kstatus-compatible conditions every kind reports: Ready, Reconciling and Stalled,
//! with stable CamelCase reasons.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

pub const READY: &str = "Ready";
pub const RECONCILING: &str = "Reconciling";
pub const STALLED: &str = "Stalled";

/// Stable condition reasons (SPEC section 1). Users and tools match on these strings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    Available,
    Creating,
    Updating,
    Deleting,
    SecretNotFound,
    InvalidCredentials,
    UpstreamRejected,
    UpstreamUnavailable,
    RateLimited,
    DependencyNotReady,
    ReconcilePaused,
    Observed,
    NotFound,
    /// A ConversionBridge with `suspend: true`.
    Suspended,
    /// Another object already manages the same upstream object (SPEC 7.1).
    AlreadyManaged,
    /// A `ctwa.dev/*` annotation could not be used as written (Events only).
    InvalidAnnotation,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Available => "Available",
            Reason::Creating => "Creating",
            Reason::Updating => "Updating",
            Reason::Deleting => "Deleting",
            Reason::SecretNotFound => "SecretNotFound",
            Reason::InvalidCredentials => "InvalidCredentials",
            Reason::UpstreamRejected => "UpstreamRejected",
            Reason::UpstreamUnavailable => "UpstreamUnavailable",
            Reason::RateLimited => "RateLimited",
            Reason::DependencyNotReady => "DependencyNotReady",
            Reason::ReconcilePaused => "ReconcilePaused",
            Reason::Observed => "Observed",
            Reason::NotFound => "NotFound",
            Reason::Suspended => "Suspended",
            Reason::AlreadyManaged => "AlreadyManaged",
            Reason::InvalidAnnotation => "InvalidAnnotation",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where an object stands, as the three standard conditions express it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    /// Upstream matches the spec (or, in Observe mode, was found).
    Ready { reason: Reason, message: String },
    /// Work is in progress or a transient failure is being retried.
    Progressing { reason: Reason, message: String },
    /// Nothing changes until the user acts.
    Stalled { reason: Reason, message: String },
    /// Not ready and not retried by itself, but not the user's fault either (e.g. Observe
    /// mode found nothing, or a dependency is not ready yet).
    NotReady { reason: Reason, message: String },
}

impl Health {
    pub fn reason(&self) -> Reason {
        match self {
            Health::Ready { reason, .. }
            | Health::Progressing { reason, .. }
            | Health::Stalled { reason, .. }
            | Health::NotReady { reason, .. } => *reason,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Health::Ready { message, .. }
            | Health::Progressing { message, .. }
            | Health::Stalled { message, .. }
            | Health::NotReady { message, .. } => message,
        }
    }

    pub fn is_ready(&self) -> bool {
        matches!(self, Health::Ready { .. })
    }
}

/// Writes the three standard conditions for `health` into `conditions`, leaving other
/// condition types (e.g. a bridge's SourceHealthy) alone.
pub fn apply_health(
    conditions: &mut Vec<Condition>,
    health: &Health,
    generation: Option<i64>,
    now: &Time,
) {
    let reason = health.reason();
    let message = health.message();
    let (ready, reconciling, stalled) = match health {
        Health::Ready { .. } => (true, false, false),
        Health::Progressing { .. } => (false, true, false),
        Health::Stalled { .. } => (false, false, true),
        Health::NotReady { .. } => (false, false, false),
    };
    set_condition(
        conditions,
        READY,
        ready,
        reason.as_str(),
        message,
        generation,
        now,
    );
    set_condition(
        conditions,
        RECONCILING,
        reconciling,
        reason.as_str(),
        message,
        generation,
        now,
    );
    set_condition(
        conditions,
        STALLED,
        stalled,
        reason.as_str(),
        message,
        generation,
        now,
    );
}

/// Sets one condition. `lastTransitionTime` only moves when the status flips, so that a
/// reconcile that changes nothing writes nothing.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: &Time,
) {
    let status = if status { "True" } else { "False" };
    set_condition_status(conditions, type_, status, reason, message, generation, now)
}

/// Like [`set_condition`], for a condition whose status may also be `"Unknown"`.
pub fn set_condition_status(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: &Time,
) {
    let message = truncate(message, 1024);
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(existing) => {
            if existing.status != status {
                existing.last_transition_time = now.clone();
                existing.status = status.to_string();
            }
            existing.reason = reason.to_string();
            existing.message = message;
            existing.observed_generation = generation;
        }
        None => conditions.push(Condition {
            type_: type_.to_string(),
            status: status.to_string(),
            reason: reason.to_string(),
            message,
            last_transition_time: now.clone(),
            observed_generation: generation,
        }),
    }
}

/// Whether `Ready` is True (e.g. on a referenced object).
pub fn is_ready(conditions: &[Condition]) -> bool {
    find(conditions, READY).is_some_and(|c| c.status == "True")
}

/// The condition of `type_`, if present.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

fn truncate(message: &str, max: usize) -> String {
    if message.len() <= max {
        return message.to_string();
    }
    let mut end = max;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &message[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Time {
        Time(jiff::Timestamp::from_second(secs).unwrap())
    }

    #[test]
    fn ready_sets_the_three_conditions() {
        let mut c = Vec::new();
        let h = Health::Ready {
            reason: Reason::Available,
            message: "in sync".into(),
        };
        apply_health(&mut c, &h, Some(3), &at(10));
        let status = |t| find(&c, t).unwrap().status.clone();
        assert_eq!(status(READY), "True");
        assert_eq!(status(RECONCILING), "False");
        assert_eq!(status(STALLED), "False");
        assert!(
            c.iter()
                .all(|c| c.observed_generation == Some(3) && c.reason == "Available")
        );
    }

    #[test]
    fn transition_time_moves_only_when_the_status_flips() {
        let mut c = Vec::new();
        let progressing = Health::Progressing {
            reason: Reason::Creating,
            message: "creating".into(),
        };
        apply_health(&mut c, &progressing, Some(1), &at(10));
        let retry = Health::Progressing {
            reason: Reason::UpstreamUnavailable,
            message: "503".into(),
        };
        apply_health(&mut c, &retry, Some(1), &at(20));
        assert_eq!(find(&c, READY).unwrap().last_transition_time, at(10));
        assert_eq!(find(&c, READY).unwrap().reason, "UpstreamUnavailable");
        let ready = Health::Ready {
            reason: Reason::Available,
            message: "ok".into(),
        };
        apply_health(&mut c, &ready, Some(1), &at(30));
        assert_eq!(find(&c, READY).unwrap().last_transition_time, at(30));
        assert_eq!(find(&c, STALLED).unwrap().last_transition_time, at(10));
    }

    #[test]
    fn other_condition_types_are_kept() {
        let mut c = Vec::new();
        set_condition(&mut c, "SourceHealthy", true, "Polling", "", None, &at(1));
        apply_health(
            &mut c,
            &Health::Stalled {
                reason: Reason::SecretNotFound,
                message: "x".into(),
            },
            None,
            &at(2),
        );
        assert_eq!(c.len(), 4);
        assert_eq!(find(&c, "SourceHealthy").unwrap().status, "True");
    }

    #[test]
    fn long_messages_are_truncated_on_a_char_boundary() {
        let long = "é".repeat(2000);
        let t = truncate(&long, 1024);
        assert!(t.len() <= 1024 + '…'.len_utf8());
    }
}
