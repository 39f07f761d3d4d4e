//! ConversionBridge: Signals events to hashed, batched X conversions (SPEC 1.5, 4).
//!
//! The data flows source → worker → delivery: [`source`] polls the events list and
//! [`receiver`] takes postbacks (a follower hands them to the leader: [`forward`]), both as
//! [`event`]s; [`worker`] de-duplicates ([`dedupe`]), maps ([`mapping`],
//! [`identity`]), batches and delivers ([`delivery`]); [`state`] is what the status shows;
//! [`supervisor`] runs one worker per bridge; [`controller`] resolves specs into workers.
pub mod controller;
pub mod dedupe;
pub mod delivery;
pub mod event;
pub mod forward;
pub mod identity;
pub mod mapping;
pub mod receiver;
pub mod source;
pub mod state;
pub mod supervisor;
pub mod worker;
