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
    /// The upstream object itself answered that it does not exist (its own 404, SPEC 7.1):
    /// a deletion is done, an update must re-observe. Anywhere else it is Terminal.
    Gone { message: String },
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
            Failure::Gone { message } => Health::Stalled {
                reason: Reason::UpstreamRejected,
                message,
            },
        }
    }

    /// The same failure where "gone" means nothing special: Gone becomes Terminal.
    pub fn settled(self) -> Self {
        match self {
            Failure::Gone { message } => Failure::terminal(Reason::UpstreamRejected, message),
            other => other,
        }
    }

    /// Nothing changes until the user acts (Terminal, or Gone outside a delete or update).
    pub fn stalls(&self) -> bool {
        matches!(self, Failure::Terminal { .. } | Failure::Gone { .. })
    }

    /// The reason and message users see; Gone reads as UpstreamRejected.
    pub fn into_parts(self) -> (Reason, String) {
        match self.settled() {
            Failure::Transient {
                reason, message, ..
            }
            | Failure::Terminal { reason, message }
            | Failure::Waiting { reason, message } => (reason, message),
            Failure::Gone { message } => (Reason::UpstreamRejected, message),
        }
    }

    pub fn is_gone(&self) -> bool {
        matches!(self, Failure::Gone { .. })
    }
}

impl From<UpstreamError> for Failure {
    fn from(e: UpstreamError) -> Self {
        let message = e.to_string();
        if e.is_not_found() {
            return Failure::Gone { message };
        }
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

impl From<crate::upstream::clients::ClientError> for Failure {
    fn from(e: crate::upstream::clients::ClientError) -> Self {
        match e {
            crate::upstream::clients::ClientError::Credentials(e) => e.into(),
            crate::upstream::clients::ClientError::Upstream(e) => Failure::from(e).settled(),
        }
    }
}
