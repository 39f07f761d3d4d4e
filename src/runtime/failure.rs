//! Why a reconcile could not finish, in the terms of the conditions it leads to.

use std::time::Duration;

use crate::runtime::conditions::{Health, Reason};
use crate::upstream::error::{ErrorClass, UpstreamError};
use crate::upstream::secret::CredentialsError;

/// A reconcile that could not finish. The message is shown to users in conditions and
/// Events, so it never holds a credential or a postback URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Retried with backoff by itself (5xx, 429, timeouts): Reconciling=True.
    Transient {
        reason: Reason,
        message: String,
        retry_after: Option<Duration>,
    },
    /// Nothing changes until the user acts: Stalled=True, no retry until the object or its
    /// Secret changes.
    Terminal { reason: Reason, message: String },
    /// Waiting for another object (e.g. a referenced keyword without an id yet).
    Waiting { reason: Reason, message: String },
}

impl Failure {
    pub fn terminal(reason: Reason, message: impl Into<String>) -> Self {
        Failure::Terminal {
            reason,
            message: message.into(),
        }
    }

    pub fn health(&self) -> Health {
        match self.clone() {
            Failure::Transient {
                reason, message, ..
            } => Health::Progressing { reason, message },
            Failure::Terminal { reason, message } => Health::Stalled { reason, message },
            Failure::Waiting { reason, message } => Health::NotReady { reason, message },
        }
    }
}

impl From<UpstreamError> for Failure {
    fn from(e: UpstreamError) -> Self {
        let message = e.to_string();
        match e.class() {
            ErrorClass::Transient => Failure::Transient {
                reason: Reason::UpstreamUnavailable,
                message,
                retry_after: None,
            },
            ErrorClass::RateLimited { .. } => Failure::Transient {
                reason: Reason::RateLimited,
                retry_after: e.retry_after(),
                message,
            },
            ErrorClass::Terminal if e.is_unauthorized() => {
                Failure::terminal(Reason::InvalidCredentials, message)
            }
            ErrorClass::Terminal => Failure::terminal(Reason::UpstreamRejected, message),
        }
    }
}

impl From<CredentialsError> for Failure {
    fn from(e: CredentialsError) -> Self {
        Failure::terminal(Reason::InvalidCredentials, e.to_string())
    }
}
