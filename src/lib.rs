//! ctwa-operator: Click-to-WhatsApp ad measurement on Kubernetes.
#![forbid(unsafe_code)]

pub mod api;
pub mod apidocs;
pub mod bridge;
pub mod controllers;
pub mod crdgen;
pub mod metrics;
pub mod operator;
pub mod reconcile;
pub mod runtime;
pub mod server;
pub mod upstream;
