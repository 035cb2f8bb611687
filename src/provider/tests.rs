//! HTTP-level tests: the providers against a tiny real HTTP server on 127.0.0.1, checking
//! what they send (path, headers, body) and how they map what comes back.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::anthropic::AnthropicProvider;
use super::http::{EndpointConfig, build_client};
use super::openai::{MaxTokensField, OpenAiProvider};
use super::retry::{RetryError, complete_with_retry};
use super::{Provider, ProviderError};
use crate::config::{Config, Models};
use crate::model::{Message, ModelRequest, ModelResponse, StopReason, Usage};

#[derive(Debug)]
struct Received {
    method: String,
    path: String,
    headers: HashMap<String, String>,
    body: Value,
}

struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
}

fn reply(status: u16, body: Value) -> Reply {
    Reply {
        status,
        headers: Vec::new(),
        body: body.to_string(),
    }
}

/// Answers each request with the next scripted reply (500 when the script runs out)
/// and records what it received.
struct MockServer {
    base: String,
    received: Arc<Mutex<Vec<Received>>>,
}

impl MockServer {
    async fn start(replies: Vec<Reply>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&received);
        let mut replies: VecDeque<Reply> = replies.into();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let next = replies.pop_front().unwrap_or_else(|| reply(500, json!({})));
                serve(stream, next, &log).await;
            }
        });
        Self { base, received }
    }

    fn received(&self) -> Vec<Received> {
        std::mem::take(&mut *self.received.lock().unwrap())
    }
}

async fn serve(mut stream: TcpStream, reply: Reply, log: &Mutex<Vec<Received>>) {
    let mut data = Vec::new();
    let mut chunk = [0u8; 4096];
    let header_end = loop {
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "client closed before sending headers");
        data.extend_from_slice(&chunk[..n]);
        if let Some(pos) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
    };
    let head = String::from_utf8(data[..header_end].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap().split(' ');
    let method = request_line.next().unwrap().to_string();
    let path = request_line.next().unwrap().to_string();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .get("content-length")
        .map_or(0, |v| v.parse().unwrap());
    while data.len() < header_end + length {
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "client closed mid-body");
        data.extend_from_slice(&chunk[..n]);
    }
    let body =
        serde_json::from_slice(&data[header_end..header_end + length]).unwrap_or(Value::Null);
    log.lock().unwrap().push(Received {
        method,
        path,
        headers,
        body,
    });
    let mut response = format!(
        "HTTP/1.1 {} Whatever\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
        reply.status,
        reply.body.len()
    );
    for (name, value) in &reply.headers {
        response.push_str(&format!("{name}: {value}\r\n"));
    }
    response.push_str("\r\n");
    response.push_str(&reply.body);
    stream.write_all(response.as_bytes()).await.unwrap();
    stream.shutdown().await.unwrap();
}

fn endpoint(base: &str, key: Option<&str>) -> EndpointConfig {
    EndpointConfig {
        name: "test".into(),
        base_url: format!("{base}/"),
        api_key: key.map(String::from),
        api_key_env: Some("TEST_KEY".into()),
        headers: vec![("x-extra".into(), "yes".into())],
        idle_timeout: None,
        first_byte_timeout: None,
        temperature: None,
    }
}

fn anthropic(base: &str) -> AnthropicProvider {
    AnthropicProvider::new(
        build_client().unwrap(),
        &endpoint(base, Some("sk-ant-test")),
    )
    .unwrap()
}

async fn call(provider: &dyn Provider) -> Result<ModelResponse, ProviderError> {
    let messages = [Message::user_text("hello")];
    let request = ModelRequest {
        model: "the-model",
        system: "sys",
        messages: &messages,
        tools: &[],
        max_tokens: 77,
    };
    provider.complete(&request).await
}

fn anthropic_ok() -> Value {
    json!({"content": [{"type": "text", "text": "hi there"}], "stop_reason": "end_turn",
           "usage": {"input_tokens": 5, "output_tokens": 2}})
}

#[tokio::test]
async fn anthropic_sends_messages_request() {
    let server = MockServer::start(vec![reply(200, anthropic_ok())]).await;
    let response = call(&anthropic(&server.base)).await.unwrap();
    assert_eq!(response.message.text(), "hi there");
    assert_eq!(response.stop_reason, StopReason::EndTurn);
    assert_eq!(
        response.usage,
        Usage {
            input_tokens: 5,
            output_tokens: 2,
            ..Default::default()
        }
    );

    let [request] = &server.received()[..] else {
        panic!("expected one request")
    };
    assert_eq!(
        (request.method.as_str(), request.path.as_str()),
        ("POST", "/v1/messages")
    );
    assert_eq!(request.headers["x-api-key"], "sk-ant-test");
    assert_eq!(request.headers["anthropic-version"], "2023-06-01");
    assert_eq!(request.headers["content-type"], "application/json");
    assert_eq!(request.headers["x-extra"], "yes");
    assert!(!request.headers.contains_key("authorization"));
    assert_eq!(request.body["model"], "the-model");
    assert_eq!(request.body["max_tokens"], 77);
    assert_eq!(request.body["system"][0]["text"], "sys");
    assert_eq!(request.body["messages"][0]["content"][0]["text"], "hello");
}

#[tokio::test]
async fn openai_sends_chat_completions_request() {
    let ok = json!({"choices": [{"message": {"role": "assistant", "content": "hey"},
                    "finish_reason": "stop"}], "usage": {"prompt_tokens": 9, "completion_tokens": 1}});
    let server = MockServer::start(vec![reply(200, ok.clone()), reply(200, ok)]).await;
    let base = format!("{}/v1", server.base);
    let with_key = OpenAiProvider::new(
        build_client().unwrap(),
        &endpoint(&base, Some(" sk-oai \n")),
        MaxTokensField::MaxTokens,
    )
    .unwrap();
    let response = call(&with_key).await.unwrap();
    assert_eq!(response.message.text(), "hey");
    assert_eq!(
        response.usage,
        Usage {
            input_tokens: 9,
            output_tokens: 1,
            ..Default::default()
        }
    );
    let no_key = OpenAiProvider::new(
        build_client().unwrap(),
        &endpoint(&base, None),
        MaxTokensField::MaxTokens,
    )
    .unwrap();
    call(&no_key).await.unwrap();

    let received = server.received();
    assert_eq!(received.len(), 2);
    assert_eq!(received[0].path, "/v1/chat/completions");
    assert_eq!(received[0].headers["authorization"], "Bearer sk-oai");
    assert_eq!(received[0].headers["x-extra"], "yes");
    assert_eq!(
        received[0].body,
        json!({"model": "the-model", "max_tokens": 77, "messages": [
            {"role": "system", "content": "sys"}, {"role": "user", "content": "hello"}]})
    );
    assert!(!received[1].headers.contains_key("authorization"));
}

#[tokio::test]
async fn status_codes_map_to_retryable_or_fatal() {
    let error_body = |msg: &str| json!({"type": "error", "error": {"type": "x", "message": msg}});
    let mut rate_limited = reply(429, error_body("rate limited, slow down"));
    rate_limited.headers.push(("retry-after", "7".into()));
    let mut unavailable = reply(503, json!({"error": {"message": "try later"}}));
    unavailable.headers.push(("retry-after-ms", "1500".into()));
    unavailable.headers.push(("retry-after", "2".into()));
    let server = MockServer::start(vec![
        rate_limited,
        reply(529, error_body("Overloaded")),
        unavailable,
        reply(
            400,
            error_body(&format!("max_tokens too big{}", "!".repeat(600))),
        ),
        reply(401, error_body("invalid x-api-key")),
        Reply {
            status: 502,
            headers: Vec::new(),
            body: "<html>bad gateway</html>".into(),
        },
    ])
    .await;
    let provider = anthropic(&server.base);

    match call(&provider).await {
        Err(ProviderError::Retryable {
            status: Some(429),
            retry_after,
            message,
        }) => {
            assert_eq!(retry_after, Some(Duration::from_secs(7)));
            assert!(
                message.contains("429") && message.contains("rate limited, slow down"),
                "{message}"
            );
        }
        other => panic!("429: {other:?}"),
    }
    match call(&provider).await {
        Err(ProviderError::Retryable {
            status: Some(529),
            retry_after: None,
            message,
        }) => {
            assert!(message.contains("Overloaded"), "{message}");
        }
        other => panic!("529: {other:?}"),
    }
    match call(&provider).await {
        Err(ProviderError::Retryable {
            status: Some(503),
            retry_after,
            ..
        }) => {
            assert_eq!(retry_after, Some(Duration::from_millis(1500)));
        }
        other => panic!("503: {other:?}"),
    }
    match call(&provider).await {
        Err(ProviderError::Fatal {
            status: Some(400),
            message,
        }) => {
            assert!(
                message.starts_with("test: HTTP 400 Bad Request: max_tokens too big!"),
                "{message}"
            );
            assert!(
                message.chars().count() < 600,
                "cut to ~500 chars: {}",
                message.len()
            );
        }
        other => panic!("400: {other:?}"),
    }
    match call(&provider).await {
        Err(ProviderError::Fatal {
            status: Some(401),
            message,
        }) => {
            assert!(
                message.contains("invalid x-api-key") && message.contains("check TEST_KEY"),
                "{message}"
            );
        }
        other => panic!("401: {other:?}"),
    }
    match call(&provider).await {
        Err(ProviderError::Retryable {
            status: Some(502),
            message,
            ..
        }) => {
            assert!(message.contains("bad gateway"), "{message}");
        }
        other => panic!("502: {other:?}"),
    }
}

#[tokio::test]
async fn out_of_quota_429_is_fatal() {
    let body = json!({"error": {"message": "You exceeded your current quota",
                                "type": "insufficient_quota", "code": "insufficient_quota"}});
    let server = MockServer::start(vec![reply(429, body)]).await;
    match call(&anthropic(&server.base)).await {
        Err(ProviderError::Fatal {
            status: Some(429),
            message,
        }) => {
            assert!(message.contains("exceeded your current quota"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn futures_and_models_can_cross_threads() {
    fn is_send<T: Send>(_: &T) {}
    fn is_send_sync<T: Send + Sync>() {}
    is_send_sync::<Models>();
    is_send_sync::<crate::config::ResolvedModel>();
    let provider =
        AnthropicProvider::new(build_client().unwrap(), &EndpointConfig::default()).unwrap();
    let request = ModelRequest {
        model: "m",
        system: "",
        messages: &[],
        tools: &[],
        max_tokens: 1,
    };
    let policy = super::retry::RetryPolicy::default();
    let cancel = CancellationToken::new();
    let mut on_retry = |_: u32, _: &ProviderError, _: Duration| {};
    let future = complete_with_retry(&provider, &request, &policy, &cancel, &mut on_retry);
    is_send(&future);
}

#[tokio::test]
async fn unreadable_success_bodies_are_fatal() {
    let server = MockServer::start(vec![
        Reply {
            status: 200,
            headers: Vec::new(),
            body: "not json".into(),
        },
        reply(
            200,
            json!({"error": {"message": "upstream provider failed"}}),
        ),
    ])
    .await;
    let provider = OpenAiProvider::new(
        build_client().unwrap(),
        &endpoint(&server.base, None),
        MaxTokensField::MaxTokens,
    )
    .unwrap();
    match call(&provider).await {
        Err(ProviderError::Fatal {
            status: Some(200),
            message,
        }) => {
            assert!(
                message.contains("unreadable answer") && message.contains("not json"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
    match call(&provider).await {
        Err(ProviderError::Fatal { message, .. }) => {
            assert!(
                message.contains("no choices; it reported: upstream provider failed"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn connection_refused_is_retryable() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    match call(&anthropic(&base)).await {
        Err(ProviderError::Retryable {
            status: None,
            message,
            ..
        }) => {
            assert!(
                message.contains("cannot connect") && message.contains(&base),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
}

/// The whole path the worker uses: config → Models → resolve → retry → HTTP.
#[tokio::test]
async fn resolved_model_retries_over_http() {
    let mut busy = reply(429, json!({"error": {"message": "slow down"}}));
    busy.headers.push(("retry-after-ms", "10".into()));
    let server = MockServer::start(vec![busy, reply(200, anthropic_ok())]).await;
    let base = server.base.clone();
    let env = move |name: &str| match name {
        "ANTHROPIC_BASE_URL" => Some(format!("{base}/")),
        "ANTHROPIC_API_KEY" => Some("sk-from-env".to_string()),
        _ => None,
    };
    let models = Models::new(&Config::default(), &env).unwrap();
    let model = models.resolve(None).unwrap();
    assert_eq!(model.id, "anthropic:claude-sonnet-5-5");
    let messages = [Message::user_text("hello")];
    let request = ModelRequest {
        model: &model.model,
        system: "",
        messages: &messages,
        tools: &[],
        max_tokens: models.max_output_tokens(),
    };
    let mut retries = Vec::new();
    let mut on_retry = |n: u32, _: &ProviderError, wait: Duration| retries.push((n, wait));
    let crate::config::Runtime::Api(provider) = &model.runtime else {
        panic!("not an API model")
    };
    let response = complete_with_retry(
        provider.as_ref(),
        &request,
        models.retry_policy(),
        &CancellationToken::new(),
        &mut on_retry,
    )
    .await;
    let response = response.map_err(|e: RetryError| e.to_string()).unwrap();
    assert_eq!(response.message.text(), "hi there");
    assert_eq!(retries, vec![(1, Duration::from_millis(10))]);
    let received = server.received();
    assert_eq!(received.len(), 2);
    assert_eq!(received[1].path, "/v1/messages");
    assert_eq!(received[1].headers["x-api-key"], "sk-from-env");
    assert_eq!(received[1].body["model"], "claude-sonnet-5-5");
    assert_eq!(received[1].body["max_tokens"], 8192);
}
