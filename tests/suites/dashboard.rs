//! The dashboard and `/metrics` through the real binary: the token and cookie rules
//! (401, the session cookie, CSRF refusals), `/metrics` parsed by a strict
//! Prometheus text parser and matched against the fleet after a scripted run, the
//! live feed (SSE) delivering a status change, and the stdio-mode `--dashboard`
//! listener with its URL in the MCP instructions.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::common::http::{HttpServer, TOKEN};
use crate::common::*;
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, COOKIE, LOCATION, ORIGIN, SET_COOKIE};
use serde_json::{Value, json};

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// `name=value` of the session cookie, opened with `/?token=`.
async fn login(base: &str) -> String {
    login_with_csrf(base).await.0
}

/// The session cookie (`name=value`) and the page's CSRF value (from the redirect's
/// fragment), opened with `/?token=`.
async fn login_with_csrf(base: &str) -> (String, String) {
    let r = no_redirects()
        .get(format!("{base}/?token={TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let set = r.headers()[SET_COOKIE].to_str().unwrap().to_string();
    let location = r.headers()[LOCATION].to_str().unwrap();
    let csrf = location.strip_prefix("/#csrf=").unwrap().to_string();
    (set.split(';').next().unwrap().to_string(), csrf)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_and_cookie_rules() {
    let server = HttpServer::start().await;
    let base = format!("http://{}", server.addr);
    let http = no_redirects();
    let get = |path: &str, cookie: Option<&str>| {
        let mut r = http.get(format!("{base}{path}"));
        if let Some(c) = cookie {
            r = r.header(COOKIE, c);
        }
        r.send()
    };
    for path in [
        "/",
        "/api/fleet",
        "/api/events",
        "/metrics",
        "/api/timeline",
    ] {
        assert_eq!(
            get(path, None).await.unwrap().status(),
            StatusCode::UNAUTHORIZED,
            "{path}"
        );
    }
    let hint = get("/", None).await.unwrap().text().await.unwrap();
    assert!(hint.contains("?token="), "{hint}");
    let wrong = http
        .get(format!("{base}/?token=wrong-token-0123456789"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);

    let opened = http
        .get(format!("{base}/?token={TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(opened.status(), StatusCode::SEE_OTHER);
    // The token leaves the URL; the page's CSRF value comes in the fragment, which
    // the browser never sends to any server.
    let location = opened.headers()[LOCATION].to_str().unwrap().to_string();
    let csrf = location
        .strip_prefix("/#csrf=")
        .unwrap_or_else(|| panic!("Location {location}"))
        .to_string();
    assert!(!location.contains(TOKEN), "{location}");
    let set = opened.headers()[SET_COOKIE].to_str().unwrap();
    let port = server.addr.port();
    assert!(set.starts_with(&format!("flotilla_{port}=")), "{set}");
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Path=/"),
        "{set}"
    );
    assert!(
        !set.contains(TOKEN),
        "the cookie is not the bearer token: {set}"
    );
    let cookie = set.split(';').next().unwrap().to_string();
    let secret = cookie.split_once('=').unwrap().1.to_string();
    assert_ne!(secret, csrf);

    let page = get("/", Some(&cookie)).await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(
        page.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
    assert!(page.text().await.unwrap().contains("<title>flotilla"));
    assert_eq!(
        get("/api/fleet", Some(&cookie)).await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(
        get("/metrics", Some(&cookie)).await.unwrap().status(),
        StatusCode::OK
    );
    let bearer = http
        .get(format!("{base}/api/fleet"))
        .header(AUTHORIZATION, format!("Bearer {TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        bearer.status(),
        StatusCode::OK,
        "scripts use the bearer token"
    );

    // /mcp stays bearer-only.
    let mcp = http
        .post(format!("{base}/mcp"))
        .header(COOKIE, &cookie)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(mcp.status(), StatusCode::UNAUTHORIZED);
    // A browser sends the cookie to every port of the host: its value, seen by another
    // local server, opens nothing that needs the token.
    for value in [&secret, &csrf] {
        let as_bearer = http
            .post(format!("{base}/mcp"))
            .header(AUTHORIZATION, format!("Bearer {value}"))
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(as_bearer.status(), StatusCode::UNAUTHORIZED);
        let fleet = http
            .get(format!("{base}/api/fleet"))
            .header(AUTHORIZATION, format!("Bearer {value}"))
            .send()
            .await
            .unwrap();
        assert_eq!(fleet.status(), StatusCode::UNAUTHORIZED);
    }

    // Controls: POST with the cookie and the page's own Origin only.
    let post_csrf = |cookie: Option<&str>, origin: Option<&str>, csrf: Option<&str>| {
        let mut r = http.post(format!("{base}/api/fleet/pause"));
        if let Some(c) = cookie {
            r = r.header(COOKIE, c.to_string());
        }
        if let Some(o) = origin {
            r = r.header(ORIGIN, o.to_string());
        }
        if let Some(v) = csrf {
            r = r.header("x-flotilla-csrf", v.to_string());
        }
        r.send()
    };
    let post = |cookie: Option<&str>, origin: Option<&str>| post_csrf(cookie, origin, Some(&csrf));
    let own = format!("http://{}", server.addr);
    assert_eq!(
        post(Some(&cookie), None).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        post(Some(&cookie), Some("http://evil.example"))
            .await
            .unwrap()
            .status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        post(None, Some(&own)).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        post(Some(&cookie), Some(&own)).await.unwrap().status(),
        StatusCode::OK
    );
    // The cookie and the Origin are not enough: a change needs the page's CSRF value.
    let own_ref = own.as_str();
    assert_eq!(
        post_csrf(Some(&cookie), Some(own_ref), None)
            .await
            .unwrap()
            .status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        post_csrf(Some(&cookie), Some(own_ref), Some(&secret))
            .await
            .unwrap()
            .status(),
        StatusCode::FORBIDDEN
    );
    let other_port = format!("flotilla_{}={TOKEN}", port + 1);
    assert_eq!(
        post(Some(&other_port), Some(&own)).await.unwrap().status(),
        StatusCode::UNAUTHORIZED,
        "another listener's cookie"
    );
    server.kill().await;
}

/// A strict reader of the Prometheus text format: every sample belongs to a family
/// declared once by `# TYPE` before it, names and labels are well formed, values
/// are numbers, no series repeats, histogram buckets are cumulative and end in
/// `+Inf` = `_count`. Returns series (`name{labels}`, labels sorted) → value.
fn parse_prometheus(text: &str) -> BTreeMap<String, f64> {
    let name_ok = |n: &str| {
        let mut c = n.chars();
        c.next()
            .is_some_and(|f| f.is_ascii_alphabetic() || f == '_' || f == ':')
            && c.all(|x| x.is_ascii_alphanumeric() || x == '_' || x == ':')
    };
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut series = BTreeMap::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (kw, name, tail) = (parts.next().unwrap(), parts.next().unwrap(), parts.next());
            assert!(name_ok(name), "bad metric name in `{line}`");
            if kw == "TYPE" {
                let t = tail.unwrap();
                assert!(
                    ["counter", "gauge", "histogram", "summary", "untyped"].contains(&t),
                    "{line}"
                );
                assert!(
                    types.insert(name.to_string(), t.to_string()).is_none(),
                    "TYPE twice: {line}"
                );
            } else {
                assert_eq!(kw, "HELP", "{line}");
            }
            continue;
        }
        let (key, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value: {line}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("bad value in `{line}`")),
        };
        let (name, labels) = match key.split_once('{') {
            None => (key, Vec::new()),
            Some((n, rest)) => {
                let body = rest
                    .strip_suffix('}')
                    .unwrap_or_else(|| panic!("unclosed labels: {line}"));
                let mut labels = Vec::new();
                let mut rest = body;
                while !rest.is_empty() {
                    let (k, v) = rest
                        .split_once("=\"")
                        .unwrap_or_else(|| panic!("bad label: {line}"));
                    assert!(name_ok(k), "bad label name in `{line}`");
                    let end = v
                        .find('"')
                        .unwrap_or_else(|| panic!("unterminated value: {line}"));
                    assert!(
                        !v[..end].ends_with('\\'),
                        "escaped quotes are not expected here"
                    );
                    labels.push(format!("{k}=\"{}\"", &v[..end]));
                    rest = v[end + 1..].strip_prefix(',').unwrap_or(&v[end + 1..]);
                }
                labels.sort();
                (n, labels)
            }
        };
        assert!(name_ok(name), "bad name in `{line}`");
        let family = ["_bucket", "_sum", "_count", "_total"]
            .iter()
            .filter_map(|s| name.strip_suffix(s))
            .find(|f| types.get(*f).is_some_and(|t| t == "histogram"))
            .unwrap_or(name);
        assert!(
            types.contains_key(family),
            "sample before its # TYPE: {line}"
        );
        let key = format!("{name}{{{}}}", labels.join(","));
        assert!(series.insert(key, value).is_none(), "series twice: {line}");
    }
    // Histograms: cumulative buckets, +Inf equals _count.
    for (family, t) in &types {
        if t != "histogram" {
            continue;
        }
        let mut by_labels: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
        for (k, v) in &series {
            if let Some(rest) = k.strip_prefix(&format!("{family}_bucket{{")) {
                let labels: Vec<&str> = rest.trim_end_matches('}').split(',').collect();
                let le = labels
                    .iter()
                    .find_map(|l| l.strip_prefix("le=\""))
                    .unwrap()
                    .trim_end_matches('"');
                let le: f64 = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().unwrap()
                };
                let others: Vec<&str> = labels
                    .into_iter()
                    .filter(|l| !l.starts_with("le="))
                    .collect();
                by_labels
                    .entry(others.join(","))
                    .or_default()
                    .push((le, *v));
            }
        }
        for (labels, mut buckets) in by_labels {
            buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            assert!(
                buckets.windows(2).all(|w| w[0].1 <= w[1].1),
                "{family}{{{labels}}} not cumulative"
            );
            let inf = buckets.last().unwrap();
            assert!(
                inf.0.is_infinite(),
                "{family}{{{labels}}} has no +Inf bucket"
            );
            assert_eq!(series[&format!("{family}_count{{{labels}}}")], inf.1);
        }
    }
    series
}

fn sum_of(series: &BTreeMap<String, f64>, prefix: &str) -> f64 {
    series
        .iter()
        .filter(|(k, _)| k.starts_with(prefix))
        .map(|(_, v)| v)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_match_the_fleet() {
    let server = HttpServer::start().await;
    server.mock.script(
        "[m1]",
        vec![
            Step::tool("write_file", json!({"path": "a.txt", "content": "x"})).usage(300, 40),
            Step::tool("read_file", json!({"path": "missing.txt"})),
            Step::text("one"),
        ],
    );
    server.mock.script(
        "[m2]",
        vec![Step::fail(500), Step::text("two").usage(50, 7)],
    );
    let fl = server.client().await;
    fl.create("m1", "[m1] write").await;
    fl.create("m2", "[m2] answer").await;
    fl.wait_all(&["m1", "m2"]).await;
    let list = fl.call("list_agents", json!({})).await;
    let (s1, s2) = (fl.status("m1").await, fl.status("m2").await);
    let steps = s1["steps"].as_u64().unwrap() + s2["steps"].as_u64().unwrap();
    let tools = s1["tool_calls"].as_u64().unwrap() + s2["tool_calls"].as_u64().unwrap();
    assert_eq!((steps, tools), (4, 2), "{s1}\n{s2}");

    let url = format!("http://{}/metrics", server.addr);
    // The observer reads the bus on its own task: let it catch up.
    let m = eventually("/metrics counts both commands done", async || {
        let r = reqwest::Client::new()
            .get(&url)
            .header(AUTHORIZATION, format!("Bearer {TOKEN}"))
            .send()
            .await
            .unwrap();
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/plain; version=0.0.4")
        );
        let m = parse_prometheus(&r.text().await.unwrap());
        let done = m["flotilla_commands_finished_total{status=\"done\"}"];
        if done == 2.0 {
            Ok(m)
        } else {
            Err(format!("{done} done"))
        }
    })
    .await;
    let n = |k: &str| *m.get(k).unwrap_or_else(|| panic!("no series {k}"));
    assert_eq!(n("flotilla_agents{status=\"idle\"}"), 2.0);
    assert_eq!(n("flotilla_agents{status=\"running\"}"), 0.0);
    assert_eq!(n("flotilla_commands_total{}"), 2.0);
    assert_eq!(n("flotilla_commands_finished_total{status=\"done\"}"), 2.0);
    assert_eq!(n("flotilla_model_calls_total{}"), steps as f64);
    assert_eq!(n("flotilla_tool_calls_total{}"), tools as f64);
    assert_eq!(
        n("flotilla_tool_errors_total{}"),
        1.0,
        "read_file of a missing file"
    );
    assert_eq!(n("flotilla_model_retries_total{}"), 1.0);
    let totals = &list["totals"]["tokens"];
    assert_eq!(
        n("flotilla_tokens_total{direction=\"input\"}"),
        totals["input"].as_f64().unwrap()
    );
    assert_eq!(
        n("flotilla_tokens_total{direction=\"output\"}"),
        totals["output"].as_f64().unwrap()
    );
    assert_eq!(n("flotilla_queued_agents{}"), 0.0);
    assert_eq!(n("flotilla_pending_commands{}"), 0.0);
    // Every attempt is timed: 4 answers and the 500.
    assert_eq!(
        sum_of(&m, "flotilla_model_call_duration_seconds_count"),
        5.0,
        "{m:#?}"
    );
    let errors: Vec<_> = m
        .iter()
        .filter(|(k, _)| k.starts_with("flotilla_provider_errors_total"))
        .collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].0.contains("kind=\"server_error\"") && errors[0].0.contains("retryable=\"true\""),
        "{errors:?}"
    );
    assert_eq!(*errors[0].1, 1.0);
    server.kill().await;
}

/// Read SSE messages until one satisfies `pred`.
async fn sse_until(
    response: &mut reqwest::Response,
    what: &str,
    pred: impl Fn(&str, &Value) -> bool,
) -> Value {
    let mut buf = String::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        while let Some(end) = buf.find("\n\n") {
            let message: String = buf.drain(..end + 2).collect();
            let mut event = "message";
            let mut data = String::new();
            for line in message.lines() {
                if let Some(e) = line.strip_prefix("event: ") {
                    event = e;
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data.push_str(d);
                }
            }
            if let Ok(v) = serde_json::from_str::<Value>(&data)
                && pred(event, &v)
            {
                return v;
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, response.chunk()).await {
            Ok(Ok(Some(chunk))) => buf.push_str(&String::from_utf8_lossy(&chunk)),
            other => panic!("no SSE message for {what}: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_feed_delivers_a_status_change() {
    let server = HttpServer::start().await;
    let base = format!("http://{}", server.addr);
    let fl = server.client().await;
    fl.create("s1", "[s1] answer").await;
    fl.wait_all(&["s1"]).await;
    let (cookie, csrf) = login_with_csrf(&base).await;
    let mut feed = reqwest::Client::new()
        .get(format!("{base}/api/events"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(feed.status(), StatusCode::OK);
    assert!(
        feed.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    // Paused by the orchestrator (over MCP): the page hears it.
    fl.call("pause_agents", json!({"agents": ["s1"]})).await;
    let e = sse_until(&mut feed, "the pause", |event, v| {
        event == "agent" && v["kind"] == "paused"
    })
    .await;
    assert_eq!(e["agent"], "s1");
    assert_eq!(e["row"]["status"], "paused", "{e}");
    assert!(e["seq"].as_u64().unwrap() > 0);
    // And a header follows with the new counts.
    let h = sse_until(&mut feed, "the header", |event, _| event == "header").await;
    assert_eq!(h["by_status"]["paused"], 1, "{h}");

    // Resumed from the dashboard: the agent's detail shows the events.
    let r = reqwest::Client::new()
        .post(format!("{base}/api/agents/s1/resume"))
        .header(COOKIE, &cookie)
        .header(ORIGIN, &base)
        .header("x-flotilla-csrf", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let e = sse_until(&mut feed, "the resume", |event, v| {
        event == "agent" && v["kind"] == "unpaused"
    })
    .await;
    assert_eq!(e["row"]["status"], "idle", "{e}");
    let detail: Value = reqwest::Client::new()
        .get(format!("{base}/api/agents/s1"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kinds = kinds(&detail);
    assert!(
        kinds.starts_with(&["created", "command", "started", "model", "finished"]),
        "{kinds:?}"
    );
    assert_eq!(detail["commands"][0]["status"], "done", "{detail}");
    assert_eq!(status_of(&fl, "s1").await, "idle");
    server.kill().await;
}

async fn status_of(fl: &Flotilla, agent: &str) -> String {
    fl.status(agent).await["status"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdio_mode_serves_the_dashboard_beside_stdio() {
    let fl = Flotilla::builder()
        .env("FLOTILLA_TOKEN", TOKEN)
        .arg("--dashboard")
        .arg("127.0.0.1:0")
        .start()
        .await;
    let info = fl.client.peer_info().expect("server info");
    let instructions = info.instructions.clone().unwrap_or_default();
    let at = instructions
        .find("http://127.0.0.1:")
        .expect("the dashboard URL in the instructions");
    let url = instructions[at..]
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    assert!(url.ends_with('/'), "{url}");
    let base = url.trim_end_matches('/');
    assert!(fl.log_tail(200).contains(&format!("dashboard at {url}")));
    let cookie = login(base).await;
    fl.create("d1", "[d1] answer").await;
    fl.wait_all(&["d1"]).await;
    let fleet: Value = reqwest::Client::new()
        .get(format!("{base}/api/fleet"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(fleet["agents"][0]["name"], "d1", "{fleet}");
    assert_eq!(fleet["header"]["agents"], 1);
    // No MCP on the dashboard listener.
    let mcp = reqwest::Client::new()
        .post(format!("{base}/mcp"))
        .header(AUTHORIZATION, format!("Bearer {TOKEN}"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(mcp.status(), StatusCode::NOT_FOUND);
    assert!(
        fl.shutdown(Duration::from_secs(15)).await,
        "stdio shutdown with the dashboard up"
    );
}
