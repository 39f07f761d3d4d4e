//! ctwa-operator: Click-to-WhatsApp ad measurement on Kubernetes.
#![forbid(unsafe_code)]

pub mod api;
pub mod bridge;
pub mod crdgen;
pub mod reconcile;
pub mod upstream;
