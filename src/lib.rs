//! ctwa-operator: Click-to-WhatsApp ad measurement on Kubernetes.
#![forbid(unsafe_code)]

pub mod api;
pub mod apidocs;
pub mod bridge;
pub mod check;
pub mod crdgen;
pub mod leadership;
pub mod managed;
pub mod metrics;
pub mod operator;
pub mod runtime;
pub mod server;
pub mod sharding;
pub mod upstream;
