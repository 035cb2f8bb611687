//! HTTP plumbing shared by the providers: the one `reqwest::Client`, a JSON POST to a
//! fixed endpoint, and the mapping of transport failures and HTTP statuses to
//! [`ProviderError`] (429/529/5xx/connection trouble → `Retryable` with `retry-after`;
//! everything else → `Fatal` with the provider's own message).

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Client, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::ProviderError;
use crate::text::truncate_chars;

/// How long to wait for a TCP/TLS connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest answer body read (a provider that never stops sending is cut off).
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;
/// Longest provider error text we pass on.
const MAX_ERROR_CHARS: usize = 500;

/// The client every provider shares (connection pool, connect timeout, user agent).
/// The deadline of a whole call is the retry policy's (`[retry] request_timeout_s`);
/// the idle timeout while an answer arrives is the endpoint's.
pub fn build_client() -> Result<Client, reqwest::Error> {
    Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .user_agent(concat!("flotilla/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// What a provider module needs to know about where and how to call.
#[derive(Clone, Default)]
pub struct EndpointConfig {
    /// The provider's name as the user writes it (`anthropic`, `ollama`): used in messages.
    pub name: String,
    /// Base URL without trailing `/`.
    pub base_url: String,
    /// The API key, if there is one.
    pub api_key: Option<String>,
    /// The variable the key came from, for "check X" hints on 401/403.
    pub api_key_env: Option<String>,
    /// Extra headers sent with every request.
    pub headers: Vec<(String, String)>,
    /// Longest silence while an answer's body arrives (`[retry] idle_timeout_s`);
    /// `None`: no limit here (the call's deadline still applies).
    pub idle_timeout: Option<Duration>,
    /// Longest wait for the answer to start (its status line and headers) once the
    /// request is sent (`[retry] first_byte_timeout_s`); `None`: no limit here.
    pub first_byte_timeout: Option<Duration>,
    /// Sampling temperature, sent only when the config sets one (current models reject
    /// sampling parameters they do not expect).
    pub temperature: Option<f64>,
}

impl std::fmt::Debug for EndpointConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointConfig")
            .field("name", &self.name)
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("api_key_env", &self.api_key_env)
            .field("headers", &self.headers)
            .field("idle_timeout", &self.idle_timeout)
            .field("first_byte_timeout", &self.first_byte_timeout)
            .finish()
    }
}

/// A ready-to-call URL with its headers.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    pub name: String,
    pub url: String,
    headers: HeaderMap,
    api_key_env: Option<String>,
    idle_timeout: Option<Duration>,
    first_byte_timeout: Option<Duration>,
    /// Sent as `temperature` when set (config `[providers.NAME] temperature`).
    pub temperature: Option<f64>,
}

impl Endpoint {
    /// `path` is appended to the base URL; `auth` turns the key into headers.
    pub fn new(
        config: &EndpointConfig,
        path: &str,
        auth: impl FnOnce(&str) -> Vec<(&'static str, String)>,
    ) -> Result<Self, String> {
        let mut headers = HeaderMap::new();
        for (name, value) in &config.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("header name {name:?} is not a valid HTTP header name"))?;
            let value = HeaderValue::from_str(value)
                .map_err(|_| format!("header {name} has a value that is not valid in HTTP"))?;
            headers.insert(name, value);
        }
        if let Some(key) = &config.api_key {
            for (name, value) in auth(key.trim()) {
                let mut value = HeaderValue::from_str(&value).map_err(|_| {
                    let var = config
                        .api_key_env
                        .as_deref()
                        .unwrap_or("the API key variable");
                    format!("{var} holds characters that are not allowed in an HTTP header")
                })?;
                value.set_sensitive(true);
                headers.insert(HeaderName::from_static(name), value);
            }
        }
        Ok(Self {
            name: config.name.clone(),
            url: format!("{}{path}", config.base_url.trim_end_matches('/')),
            headers,
            api_key_env: config.api_key_env.clone(),
            idle_timeout: config.idle_timeout.filter(|d| !d.is_zero()),
            first_byte_timeout: config.first_byte_timeout.filter(|d| !d.is_zero()),
            temperature: config.temperature,
        })
    }

    /// POST `body` as JSON and parse a successful answer as `T`.
    pub async fn post_json<B: Serialize, T: DeserializeOwned>(
        &self,
        client: &Client,
        body: &B,
    ) -> Result<T, ProviderError> {
        let sent = client
            .post(&self.url)
            .headers(self.headers.clone())
            .json(body)
            .send();
        // A provider that takes the request and never answers fails the attempt
        // (retryable) instead of holding the agent for the whole call's deadline.
        let sent = match self.first_byte_timeout {
            Some(limit) => tokio::time::timeout(limit, sent)
                .await
                .map_err(|_| self.no_first_byte(limit))?,
            None => sent.await,
        };
        let mut response = sent.map_err(|e| self.transport_error(&e))?;
        let status = response.status();
        let retry_after = retry_after(response.headers());
        // Read the body chunk by chunk: a stall longer than the idle timeout, or an
        // answer that never ends, fails the attempt instead of holding the agent.
        let mut bytes = Vec::new();
        loop {
            let chunk = match self.idle_timeout {
                Some(idle) => tokio::time::timeout(idle, response.chunk())
                    .await
                    .map_err(|_| self.stalled(idle))?,
                None => response.chunk().await,
            };
            match chunk.map_err(|e| self.transport_error(&e))? {
                Some(chunk) => {
                    bytes.extend_from_slice(&chunk);
                    if bytes.len() > MAX_RESPONSE_BYTES {
                        return Err(ProviderError::Fatal {
                            status: Some(status.as_u16()),
                            message: format!(
                                "{}: the answer from {} is over {MAX_RESPONSE_BYTES} bytes; gave up reading it",
                                self.name, self.url
                            ),
                        });
                    }
                }
                None => break,
            }
        }
        let text = String::from_utf8_lossy(&bytes);
        if !status.is_success() {
            return Err(self.status_error(status, retry_after, &text));
        }
        serde_json::from_str(&text).map_err(|e| {
            let detail = match extract_error_message(&text) {
                Some(msg) => format!("it reported an error: {msg}"),
                None => format!("{e}; body starts: {}", truncate_chars(&text, 200)),
            };
            ProviderError::Fatal {
                status: Some(status.as_u16()),
                message: format!(
                    "{}: unreadable answer from {}: {detail}",
                    self.name, self.url
                ),
            }
        })
    }

    fn no_first_byte(&self, limit: Duration) -> ProviderError {
        ProviderError::Retryable {
            status: None,
            retry_after: None,
            message: format!(
                "{}: timed out calling {}: no answer started within {}s ([retry] first_byte_timeout_s)",
                self.name,
                self.url,
                limit.as_secs_f64()
            ),
        }
    }

    fn stalled(&self, idle: Duration) -> ProviderError {
        ProviderError::Retryable {
            status: None,
            retry_after: None,
            message: format!(
                "{}: the answer from {} stalled: no data for {}s ([retry] idle_timeout_s)",
                self.name,
                self.url,
                idle.as_secs_f64()
            ),
        }
    }

    fn transport_error(&self, e: &reqwest::Error) -> ProviderError {
        let what = if e.is_timeout() {
            "timed out calling"
        } else if e.is_connect() {
            "cannot connect to"
        } else {
            "request failed for"
        };
        let message = format!("{}: {what} {}: {}", self.name, self.url, error_chain(e));
        if e.is_builder() {
            ProviderError::Fatal {
                status: None,
                message,
            }
        } else {
            ProviderError::Retryable {
                status: None,
                retry_after: None,
                message,
            }
        }
    }

    fn status_error(
        &self,
        status: StatusCode,
        retry_after: Option<Duration>,
        body: &str,
    ) -> ProviderError {
        let detail = extract_error_message(body)
            .unwrap_or_else(|| truncate_chars(body.trim(), MAX_ERROR_CHARS));
        let mut message = format!("{}: HTTP {status}", self.name);
        if !detail.is_empty() {
            message.push_str(": ");
            message.push_str(&detail);
        }
        let code = status.as_u16();
        match code {
            401 | 403 => {
                let var = self
                    .api_key_env
                    .as_deref()
                    .unwrap_or("the provider's API key");
                message.push_str(&format!(" (check {var})"));
            }
            404 => message.push_str(&format!(" (check the model name and the URL {})", self.url)),
            _ => {}
        }
        // OpenAI answers 429 when the account is out of credit: waiting will not help.
        let out_of_quota = code == 429 && body.contains("insufficient_quota");
        if is_retryable_status(code) && !out_of_quota {
            ProviderError::Retryable {
                status: Some(code),
                retry_after,
                message,
            }
        } else {
            ProviderError::Fatal {
                status: Some(code),
                message,
            }
        }
    }
}

/// 408 request timeout, 429 rate limit, 529 overloaded, any 5xx.
pub fn is_retryable_status(code: u16) -> bool {
    matches!(code, 408 | 429 | 529 | 500..=599)
}

/// `retry-after-ms` (milliseconds, as OpenAI sends) or `retry-after` (seconds). HTTP-date
/// forms are ignored: the caller falls back to its own backoff.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let number = |name: &str| -> Option<f64> {
        let value: f64 = headers.get(name)?.to_str().ok()?.trim().parse().ok()?;
        (value.is_finite() && value >= 0.0).then_some(value)
    };
    if let Some(ms) = number("retry-after-ms") {
        return Some(Duration::from_secs_f64(ms.min(86_400_000.0) / 1000.0));
    }
    number("retry-after").map(|s| Duration::from_secs_f64(s.min(86_400.0)))
}

/// `{"error": {"message": ...}}` (Anthropic, OpenAI and most compatible servers), or
/// `{"error": "..."}` / `{"message": "..."}` as some servers send; cut to ~500 chars.
pub fn extract_error_message(body: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(body).ok()?;
    let error = value.get("error");
    let message = error
        .and_then(|e| e.get("message"))
        .or_else(|| error.filter(|e| e.is_string()))
        .or_else(|| value.get("message"))?
        .as_str()?;
    Some(truncate_chars(message.trim(), MAX_ERROR_CHARS))
}

/// An error and its causes, `: `-joined (reqwest hides the useful part in `source`).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
