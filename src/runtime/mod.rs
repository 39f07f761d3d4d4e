//! What every controller shares, whatever it reconciles: scope and triggers, failure reasons,
//! conditions, Events, the one backoff, durations and digests.

pub mod backoff;
pub mod conditions;
pub mod digest;
pub mod duration;
pub mod events;
pub mod failure;
pub mod scope;
