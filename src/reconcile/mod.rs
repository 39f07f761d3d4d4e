//! The generic managed-resource reconciler, written once and used by every managed kind.

pub mod conditions;
pub mod controller;
pub mod external;
pub mod failure;
pub mod managed;
pub mod reconciler;
