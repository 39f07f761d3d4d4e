//! Shared by the controller tests: a namespace of their own on the real API server, the
//! fakes, and the operator running in-process scoped to that namespace. The environment
//! itself lives in `ctwa_testenv` (shared with the benches); this is the glue that hands it
//! the operator binary Cargo built for the test.
// Each test binary uses a part of this module; the rest would warn in that binary.
#![allow(dead_code, unused_imports)]

use std::time::Duration;

pub use ctwa_testenv::{
    DIALOG_PASSWORD, Env, X_ACCESS_TOKEN_SECRET, X_CONSUMER_SECRET, child_output, condition,
    free_addr, log_dir, ready, ready_with, sample,
};

pub mod events;

/// The `ctwa-operator` binary Cargo built for this test.
pub const OPERATOR_BIN: &str = env!("CARGO_BIN_EXE_ctwa-operator");

/// The namespace, Secrets and fakes, with the operator running in this process.
pub async fn env(prefix: &str) -> Env {
    env_with(prefix, ctwa_testenv::DEFAULT_RESYNC).await
}

/// As [`env`], with the operator's resync interval `resync`.
pub async fn env_with(prefix: &str, resync: Duration) -> Env {
    Env::with_operator(prefix, OPERATOR_BIN, resync).await
}

/// The namespace, Secrets and fakes, for tests that run the operator themselves.
pub async fn env_without_operator(prefix: &str) -> Env {
    Env::without_operator(prefix, OPERATOR_BIN).await
}
