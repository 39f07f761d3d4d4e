//! The generic managed-resource reconciler, written once and used by every managed kind.

pub mod backoff;
pub mod conditions;
pub mod managed;
