//! What one bridge knows about itself, shared by its worker, the supervisor, the postback
//! receiver and the status writer, and how that becomes `status`.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use tokio::sync::Notify;

use crate::api::{ConversionBridgeStatus, Rejection};
use crate::runtime::conditions::{Health, Reason, apply_health, set_condition_status};

pub const SOURCE_HEALTHY: &str = "SourceHealthy";
pub const DESTINATION_HEALTHY: &str = "DestinationHealthy";
/// `status.recentRejections` holds at most this many.
pub const MAX_RECENT_REJECTIONS: usize = 20;

/// Why the bridge is (not) running, as decided from its spec and what it references.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Configuration resolved; the worker runs.
    Running,
    /// `suspend: true`.
    Suspended,
    /// Waiting for a dependency (e.g. the event tag has no id yet).
    Waiting { reason: Reason, message: String },
    /// The configuration is wrong; nothing happens until the user changes it.
    Stalled { reason: Reason, message: String },
}

/// Health of one side of the bridge (Signals or X).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SideHealth {
    /// Not tried yet.
    Unknown,
    Healthy,
    /// Failing and being retried.
    Retrying {
        reason: Reason,
        message: String,
    },
    /// Failing in a way only the user can fix; the worker stopped.
    Stalled {
        reason: Reason,
        message: String,
    },
}

/// Counters and progress, as persisted in status.
#[derive(Clone, Debug, PartialEq)]
pub struct Progress {
    /// Every event dated before this has been forwarded or rejected.
    pub checkpoint: Timestamp,
    pub received: i64,
    pub forwarded: i64,
    pub rejected: i64,
    pub duplicate: i64,
    pub batches_sent: i64,
    pub last_poll: Option<Timestamp>,
    pub last_forward: Option<Timestamp>,
    /// Newest first.
    pub recent_rejections: VecDeque<Rejection>,
}

impl Progress {
    /// Resume from what an earlier process wrote to status, or start at `start`.
    pub fn resume(status: Option<&ConversionBridgeStatus>, start: Timestamp) -> Self {
        let ts = |t: &Option<Time>| t.as_ref().map(|t| t.0);
        let Some(s) = status else {
            return Progress {
                checkpoint: start,
                received: 0,
                forwarded: 0,
                rejected: 0,
                duplicate: 0,
                batches_sent: 0,
                last_poll: None,
                last_forward: None,
                recent_rejections: VecDeque::new(),
            };
        };
        Progress {
            checkpoint: ts(&s.checkpoint).unwrap_or(start),
            received: s.events_received,
            forwarded: s.events_forwarded,
            rejected: s.events_rejected,
            duplicate: s.events_duplicate,
            batches_sent: s.batches_sent,
            last_poll: ts(&s.last_poll_time),
            last_forward: ts(&s.last_forward_time),
            recent_rejections: s.recent_rejections.iter().cloned().collect(),
        }
    }

    pub fn reject(&mut self, event_id: &str, reason: &str, now: Timestamp) {
        self.rejected += 1;
        self.recent_rejections.push_front(Rejection {
            event_id: event_id.to_string(),
            reason: reason.to_string(),
            time: Time(now),
        });
        self.recent_rejections.truncate(MAX_RECENT_REJECTIONS);
    }
}

/// Everything the status is made of.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub generation: Option<i64>,
    pub phase: Phase,
    pub source: SideHealth,
    pub destination: SideHealth,
    pub postback_path: Option<String>,
    pub progress: Progress,
}

/// One bridge's shared state. Writers call [`BridgeState::update`], which wakes the status
/// writer.
#[derive(Debug)]
pub struct BridgeState {
    snapshot: Mutex<Snapshot>,
    changed: Notify,
}

impl BridgeState {
    pub fn new(snapshot: Snapshot) -> Self {
        BridgeState {
            snapshot: Mutex::new(snapshot),
            changed: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Snapshot> {
        self.snapshot.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn snapshot(&self) -> Snapshot {
        self.lock().clone()
    }

    pub fn update<T>(&self, f: impl FnOnce(&mut Snapshot) -> T) -> T {
        let out = f(&mut self.lock());
        self.changed.notify_one();
        out
    }

    pub fn checkpoint(&self) -> Timestamp {
        self.lock().progress.checkpoint
    }

    /// Resolves after the next [`BridgeState::update`].
    pub async fn changed(&self) {
        self.changed.notified().await
    }
}

impl Snapshot {
    /// The three standard conditions: Ready only while running with both sides healthy.
    fn health(&self) -> Health {
        let side = |h: &SideHealth| match h {
            SideHealth::Stalled { reason, message } => Some(Health::Stalled {
                reason: *reason,
                message: message.clone(),
            }),
            SideHealth::Retrying { reason, message } => Some(Health::Progressing {
                reason: *reason,
                message: message.clone(),
            }),
            _ => None,
        };
        match &self.phase {
            Phase::Suspended => Health::NotReady {
                reason: Reason::Suspended,
                message: "forwarding is suspended (spec.suspend is true)".into(),
            },
            Phase::Waiting { reason, message } => Health::NotReady {
                reason: *reason,
                message: message.clone(),
            },
            Phase::Stalled { reason, message } => Health::Stalled {
                reason: *reason,
                message: message.clone(),
            },
            Phase::Running => side(&self.destination)
                .or_else(|| side(&self.source))
                .unwrap_or_else(|| {
                    if self.source == SideHealth::Healthy {
                        Health::Ready {
                            reason: Reason::Available,
                            message: "forwarding Signals events to X".into(),
                        }
                    } else {
                        Health::Progressing {
                            reason: Reason::Creating,
                            message: "starting: first read of the Signals events list".into(),
                        }
                    }
                }),
        }
    }

    /// Render into `status`, keeping condition transition times of `previous`.
    pub fn render(
        &self,
        previous: Option<&ConversionBridgeStatus>,
        now: Timestamp,
    ) -> ConversionBridgeStatus {
        let t = Time(now);
        let mut conditions = previous
            .map(|p| p.common.conditions.clone())
            .unwrap_or_default();
        apply_health(&mut conditions, &self.health(), self.generation, &t);
        for (type_, side) in [
            (SOURCE_HEALTHY, &self.source),
            (DESTINATION_HEALTHY, &self.destination),
        ] {
            let (status, reason, message) = match side {
                SideHealth::Healthy => ("True", Reason::Available.as_str(), ""),
                // Nothing was sent or read yet, or the worker is held: nobody knows.
                SideHealth::Unknown => ("Unknown", "Unknown", "not contacted yet"),
                SideHealth::Retrying { reason, message }
                | SideHealth::Stalled { reason, message } => {
                    ("False", reason.as_str(), message.as_str())
                }
            };
            set_condition_status(
                &mut conditions,
                type_,
                status,
                reason,
                message,
                self.generation,
                &t,
            );
        }
        let p = &self.progress;
        let mut status = ConversionBridgeStatus {
            checkpoint: Some(Time(p.checkpoint)),
            lag_seconds: Some((now - p.checkpoint).get_seconds().max(0)),
            events_received: p.received,
            events_forwarded: p.forwarded,
            events_rejected: p.rejected,
            events_duplicate: p.duplicate,
            batches_sent: p.batches_sent,
            last_poll_time: p.last_poll.map(Time),
            last_forward_time: p.last_forward.map(Time),
            postback_path: self.postback_path.clone(),
            recent_rejections: p.recent_rejections.iter().cloned().collect(),
            ..Default::default()
        };
        status.common.conditions = conditions;
        status.common.observed_generation = self.generation;
        status.common.last_sync_time = p.last_poll.or(p.last_forward).map(Time);
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::conditions::find;

    fn snapshot(phase: Phase, source: SideHealth, destination: SideHealth) -> Snapshot {
        Snapshot {
            generation: Some(3),
            phase,
            source,
            destination,
            postback_path: None,
            progress: Progress::resume(None, Timestamp::from_second(1_800_000_000).unwrap()),
        }
    }

    fn condition(s: &ConversionBridgeStatus, t: &str) -> (String, String) {
        let c = find(&s.common.conditions, t).unwrap();
        (c.status.clone(), c.reason.clone())
    }

    #[test]
    fn ready_needs_both_sides() {
        let now = Timestamp::from_second(1_800_000_060).unwrap();
        let s =
            snapshot(Phase::Running, SideHealth::Healthy, SideHealth::Healthy).render(None, now);
        assert_eq!(condition(&s, "Ready"), ("True".into(), "Available".into()));
        assert_eq!(s.lag_seconds, Some(60));
        let stalled = SideHealth::Stalled {
            reason: Reason::InvalidCredentials,
            message: "401".into(),
        };
        let s = snapshot(Phase::Running, SideHealth::Healthy, stalled).render(Some(&s), now);
        assert_eq!(
            condition(&s, "Stalled"),
            ("True".into(), "InvalidCredentials".into())
        );
        assert_eq!(
            condition(&s, DESTINATION_HEALTHY),
            ("False".into(), "InvalidCredentials".into())
        );
        assert_eq!(
            condition(&s, SOURCE_HEALTHY),
            ("True".into(), "Available".into())
        );
        let s = snapshot(Phase::Suspended, SideHealth::Unknown, SideHealth::Unknown)
            .render(Some(&s), now);
        assert_eq!(condition(&s, "Ready"), ("False".into(), "Suspended".into()));
        assert_eq!(condition(&s, "Stalled").0, "False");
        assert_eq!(
            condition(&s, DESTINATION_HEALTHY),
            ("Unknown".into(), "Unknown".into())
        );
    }

    #[test]
    fn rejections_keep_the_newest_twenty() {
        let mut p = Progress::resume(None, Timestamp::UNIX_EPOCH);
        for i in 0..25 {
            p.reject(&format!("e{i}"), "bad phone", Timestamp::UNIX_EPOCH);
        }
        assert_eq!(p.rejected, 25);
        assert_eq!(p.recent_rejections.len(), 20);
        assert_eq!(p.recent_rejections[0].event_id, "e24");
    }
}
