//! Model providers: one trait, one module per wire format.
//!
//! [`Provider`] takes provider-neutral [`ModelRequest`]s and returns
//! [`ModelResponse`]s. `anthropic` speaks the Messages API, `openai` speaks Chat
//! Completions (and so every OpenAI-compatible server). [`retry`] wraps any provider
//! with bounded, cancellable backoff on 429/529/5xx honouring `retry-after`. [`http`]
//! holds the shared client and the HTTP status → [`ProviderError`] mapping.

pub mod anthropic;
pub mod calls;
pub mod circuit;
pub mod http;
pub mod openai;
pub mod retry;
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::model::{ModelRequest, ModelResponse};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One model endpoint. Implementations are cheap to share (`Arc<dyn Provider>`).
pub trait Provider: Send + Sync {
    /// Make one model call. No retries here: see [`retry::complete_with_retry`].
    fn complete<'a>(
        &'a self,
        request: &'a ModelRequest<'a>,
    ) -> BoxFuture<'a, Result<ModelResponse, ProviderError>>;
}

/// Why a model call failed.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// Worth trying again: 429, 529, 5xx, or the connection failed.
    #[error("{message}")]
    Retryable {
        status: Option<u16>,
        /// What the server asked us to wait (`retry-after`), if it said.
        retry_after: Option<Duration>,
        message: String,
    },
    /// Not worth trying again: bad request, bad key, unknown model, unreadable answer.
    #[error("{message}")]
    Fatal {
        status: Option<u16>,
        message: String,
    },
}

/// A stand-in for a model that cannot be used (e.g. its key is gone after a restart):
/// every call fails with the reason, so the agent's commands fail with a clear
/// `last_error` instead of the agent vanishing.
pub struct Unavailable(pub String);

impl Provider for Unavailable {
    fn complete<'a>(
        &'a self,
        _request: &'a ModelRequest<'a>,
    ) -> BoxFuture<'a, Result<ModelResponse, ProviderError>> {
        Box::pin(async move {
            Err(ProviderError::Fatal {
                status: None,
                message: self.0.clone(),
            })
        })
    }
}
