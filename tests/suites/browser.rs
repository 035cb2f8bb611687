//! The dashboard in a real browser: headless Chromium driven by chromedriver over the
//! W3C WebDriver protocol (a few JSON calls, spoken here with reqwest rather than a
//! client crate). Against a running fleet on the mock model it checks that the rows,
//! the timeline and the detail view appear, that a status change shows up without a
//! reload, and that a control (pause) works; a second test measures the page with
//! 200 agents.
//!
//! Without `chromium` and `chromedriver` the tests say why and pass, unless `CI` is
//! set. `FLOTILLA_SCREENSHOT=path.png` saves a screenshot of the page.

use std::process::Stdio;
use std::time::Instant;

use crate::common::http::{HttpServer, TOKEN};
use crate::common::wait::{EVENTUALLY, poll};
use crate::common::*;
use serde_json::{Value, json};

const CHROMIUM: [&str; 2] = ["/usr/bin/chromium", "/usr/bin/chromium-browser"];
/// A render batch this long means the page stopped rendering, not that it was slow.
const HUNG_MS: f64 = 10_000.0;

/// One chromedriver and one browser session; both end on drop.
struct Browser {
    http: reqwest::Client,
    /// `http://127.0.0.1:PORT/session/ID`
    session: String,
    driver: tokio::process::Child,
    _profile: tempfile::TempDir,
}

fn which(name: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(name))
            .find(|f| f.is_file())
    })
}

impl Browser {
    /// `None` (and why, on stderr) when there is no browser; a panic under CI.
    async fn start() -> Option<Self> {
        let binary = CHROMIUM.iter().find(|p| std::path::Path::new(p).exists());
        let (Some(binary), Some(driver)) = (binary, which("chromedriver")) else {
            let why = "chromium or chromedriver is not installed (apt-get install chromium chromium-driver)";
            assert!(std::env::var_os("CI").is_none(), "{why}");
            eprintln!("skipping the browser test: {why}");
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = tokio::process::Command::new(driver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start chromedriver");
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        eventually("chromedriver answers", async || {
            http.get(format!("{base}/status")).send().await
        })
        .await;
        let profile = tempfile::tempdir().unwrap();
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1400,900",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([format!("--user-data-dir={}", profile.path().display())])
        .collect::<Vec<_>>();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": binary, "args": args}
        }}});
        let r: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = r["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {r}"))
            .to_string();
        Some(Self {
            http,
            session: format!("{base}/session/{id}"),
            driver: child,
            _profile: profile,
        })
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let mut request = self.http.request(method, format!("{}{path}", self.session));
        if !body.is_null() {
            request = request.json(&body);
        }
        let r: Value = request.send().await.unwrap().json().await.unwrap();
        if r["value"].get("error").is_some() {
            panic!("WebDriver {path}: {r}");
        }
        r["value"].clone()
    }

    async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", json!({"url": url}))
            .await;
    }

    /// Run `script` (a function body) in the page; its `return` value.
    async fn js(&self, script: &str) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            json!({"script": script, "args": []}),
        )
        .await
    }

    /// Wait until `expr` is truthy in the page.
    async fn until(&self, what: &str, expr: &str) {
        let look = format!("return !!({expr});");
        if poll(EVENTUALLY, async || self.js(&look).await == json!(true))
            .await
            .is_err()
        {
            let body = self
                .js("return document.body.innerText.slice(0, 2000);")
                .await;
            panic!("the page never showed {what} ({expr}) within {EVENTUALLY:?}\n{body}");
        }
    }

    async fn screenshot(&self, path: &str) {
        let b64 = self
            .call(reqwest::Method::GET, "/screenshot", Value::Null)
            .await;
        std::fs::write(path, base64_decode(b64.as_str().unwrap())).unwrap();
        eprintln!("screenshot saved to {path}");
    }

    async fn quit(mut self) {
        let _ = self.http.delete(&self.session).send().await;
        let _ = self.driver.kill().await;
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let bytes: Vec<u8> = s
        .bytes()
        .filter(|c| *c != b'=' && !c.is_ascii_whitespace())
        .collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, c)| n | (u32::from(val(*c)) << (18 - 6 * i)));
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_in_a_browser() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let server = HttpServer::start().await;
    let m = &server.mock;
    m.script(
        "[scout]",
        vec![
            Step::tool("list_files", json!({"path": "."})),
            Step::tool(
                "write_file",
                json!({"path": "notes.md", "content": "# notes\n"}),
            )
            .usage(2400, 180),
            Step::text("Mapped the repository; notes in notes.md.").usage(3100, 240),
        ],
    );
    m.script(
        "[builder]",
        vec![
            Step::tool("read_file", json!({"path": "missing.rs"})),
            Step::tool(
                "run_command",
                json!({"command": "echo building; sleep 0.3"}),
            )
            .usage(5200, 300),
            Step::text("Built it.").usage(6100, 420),
        ],
    );
    m.script(
        "[broken]",
        vec![Step::fail_with(
            400,
            "invalid request: max_tokens too large",
        )],
    );
    let fl = server.client().await;
    fl.call(
        "create_agents",
        json!({"agents": [
            {"name": "scout", "role": "scout", "task": "[scout] map the repo"},
            {"name": "builder", "role": "builder", "task": "[builder] build it"},
            {"name": "broken", "task": "[broken] fail"},
            {"name": "reviewer", "role": "reviewer", "task": "[reviewer] review", "depends_on": ["builder"]},
        ]}),
    )
    .await;
    fl.wait_all(&["scout", "builder", "broken", "reviewer"])
        .await;

    let base = format!("http://{}", server.addr);
    browser.goto(&format!("{base}/?token={TOKEN}")).await;
    browser
        .until(
            "the four rows",
            "document.querySelectorAll('#rows tr').length === 4",
        )
        .await;
    browser
        .until(
            "the live feed",
            "document.getElementById('conn').className === 'live'",
        )
        .await;
    let url = browser.js("return location.href;").await;
    assert_eq!(
        url,
        json!(format!("{base}/")),
        "the token left the address bar"
    );
    let failed = browser
        .js("return document.querySelector('#rows tr[data-name=broken]').dataset.status;")
        .await;
    assert_eq!(failed, "failed");
    let error = browser
        .js("return document.querySelector('#rows tr[data-name=broken] td.err').textContent;")
        .await;
    assert!(
        error.as_str().unwrap().contains("max_tokens too large"),
        "{error}"
    );
    browser
        .until(
            "a timeline with a bar per command",
            "+document.getElementById('tl').dataset.bars >= 4",
        )
        .await;

    // Detail view.
    browser
        .js("document.querySelector('#rows tr[data-name=builder]').click();")
        .await;
    browser.until("the detail", "!document.getElementById('detail').hidden && document.querySelectorAll('#d-cmds .cmd').length === 1").await;
    browser.until("the events", "[...document.querySelectorAll('#d-events .ev .k')].some(k => k.textContent === 'tool_call')").await;
    let detail = browser
        .js("return document.getElementById('detail').innerText;")
        .await;
    let detail = detail.as_str().unwrap();
    assert!(
        detail.contains("Built it.") && detail.contains("echo building"),
        "{detail}"
    );
    if let Ok(path) = std::env::var("FLOTILLA_SCREENSHOT") {
        browser.screenshot(&path).await;
    }

    // A status change, live: the page is not reloaded.
    browser.js("window.__sameLoad = true;").await;
    m.script(
        "[builder]",
        vec![
            Step::tool(
                "run_command",
                json!({"command": "while [ ! -f go ]; do sleep 0.05; done"}),
            ),
            Step::text("again"),
        ],
    );
    fl.command("builder", "[builder] once more").await;
    browser
        .until(
            "builder running",
            "document.querySelector('#rows tr[data-name=builder]').dataset.status === 'running'",
        )
        .await;
    browser.until("its new event in the detail", "[...document.querySelectorAll('#d-events .ev')].some(e => e.textContent.includes('once more'))").await;
    assert_eq!(
        browser.js("return window.__sameLoad === true;").await,
        json!(true)
    );

    // A control: pause an idle agent from its detail.
    browser
        .js("document.querySelector('#rows tr[data-name=scout]').click();")
        .await;
    browser
        .until(
            "scout's detail",
            "document.getElementById('d-name').textContent === 'scout'",
        )
        .await;
    browser
        .js("document.querySelector('#detail button[data-act=pause]').click();")
        .await;
    browser
        .until(
            "scout paused",
            "document.querySelector('#rows tr[data-name=scout]').dataset.status === 'paused'",
        )
        .await;
    assert_eq!(fl.status("scout").await["status"], "paused");
    browser
        .js("document.getElementById('f-resume').click();")
        .await;
    browser
        .until(
            "scout resumed",
            "document.querySelector('#rows tr[data-name=scout]').dataset.status === 'idle'",
        )
        .await;

    // The browser sends the dashboard's cookie to any server on this host, whatever
    // its port: what that server sees must open nothing.
    let spy = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let spy_url = format!("http://127.0.0.1:{}/", spy.local_addr().unwrap().port());
    let heard = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut conn, _) = spy.accept().await.unwrap();
        let mut request = Vec::new();
        let mut buf = [0u8; 4096];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = conn.read(&mut buf).await.unwrap();
            assert!(n > 0, "the browser closed the spy connection");
            request.extend_from_slice(&buf[..n]);
        }
        let _ = conn
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
            .await;
        String::from_utf8_lossy(&request).into_owned()
    });
    browser.goto(&spy_url).await;
    let request = tokio::time::timeout(CALL_TIMEOUT, heard)
        .await
        .expect("the browser never reached the spy")
        .unwrap();
    let cookie_name = format!("flotilla_{}=", server.addr.port());
    let cookie = request
        .lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| k.eq_ignore_ascii_case("cookie"))
        .flat_map(|(_, v)| v.split(';'))
        .map(str::trim)
        .find(|c| c.starts_with(&cookie_name))
        .unwrap_or_else(|| panic!("the browser sent no dashboard cookie to the spy:\n{request}"))
        .to_string();
    let value = cookie.split_once('=').unwrap().1;
    assert_ne!(value, TOKEN, "the cookie is the bearer token");
    let http = reqwest::Client::new();
    let mcp = http
        .post(format!("{base}/mcp"))
        .header("authorization", format!("Bearer {value}"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"spy","version":"0"}}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(mcp.status(), 401, "the cookie's value opened /mcp");
    let control = http
        .post(format!("{base}/api/fleet/pause"))
        .header("cookie", &cookie)
        .header("origin", &base)
        .send()
        .await
        .unwrap();
    assert_eq!(
        control.status(),
        403,
        "the cookie alone controlled the fleet"
    );
    assert_eq!(fl.status("scout").await["status"], "idle");
    // Back on the dashboard (same tab, no token in the URL), its controls still work.
    browser.goto(&format!("{base}/")).await;
    browser
        .until(
            "the rows again",
            "document.querySelectorAll('#rows tr').length === 4",
        )
        .await;
    browser
        .js("document.getElementById('f-pause').click();")
        .await;
    browser
        .until(
            "scout paused from the fleet controls",
            "document.querySelector('#rows tr[data-name=scout]').dataset.status === 'paused'",
        )
        .await;
    fl.call("resume_agents", json!({})).await;

    // A question, answered by a person on the dashboard.
    m.script(
        "[asker]",
        vec![
            Step::tool(
                "ask_orchestrator",
                json!({"question": "Keep the v1 or the v2 parser?", "options": ["v1", "v2"]}),
            ),
            Step::text("Kept v2."),
        ],
    );
    fl.create("asker", "[asker] merge the parsers").await;
    browser
        .until(
            "asker needs input",
            "document.querySelector('#rows tr[data-name=asker]')?.dataset.status === 'needs_input'",
        )
        .await;
    browser
        .js("document.querySelector('#rows tr[data-name=asker]').click();")
        .await;
    browser
        .until(
            "the question box",
            "!document.getElementById('d-ask').hidden && document.getElementById('d-q').textContent === 'Keep the v1 or the v2 parser?'",
        )
        .await;
    if let Ok(path) = std::env::var("FLOTILLA_SCREENSHOT_ASK") {
        browser.screenshot(&path).await;
    }
    browser
        .js("[...document.querySelectorAll('#d-opts button')].find(b => b.textContent === 'v2').click(); document.getElementById('d-send').click();")
        .await;
    browser
        .until(
            "asker done",
            "document.querySelector('#rows tr[data-name=asker]').dataset.status === 'idle'",
        )
        .await;
    assert!(
        browser
            .js("return document.getElementById('d-ask').hidden;")
            .await
            == json!(true)
    );
    let out = fl.output("asker").await;
    assert_eq!(
        (out["command"].as_u64(), out["text"].as_str()),
        (Some(1), Some("Kept v2.")),
        "{out}"
    );
    let answered = fl
        .call(
            "get_agent_events",
            json!({"agent": "asker", "kinds": ["answered"]}),
        )
        .await;
    assert!(
        answered
            .to_string()
            .contains("answered by the dashboard: v2"),
        "{answered}"
    );

    std::fs::write(fl.work().join("go"), "").unwrap();
    browser.quit().await;
    server.kill().await;
}

/// 200 agents, created while the page is open: every event re-renders within one
/// animation frame. Prints the page's own timing of its render batches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_agents_stay_responsive() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let server = Flotilla::builder()
        .with_test_token()
        .arg("--max-running")
        .arg("50")
        .start_http()
        .await;
    let fl = server.client().await;
    let base = format!("http://{}", server.addr);
    browser.goto(&format!("{base}/?token={TOKEN}")).await;
    browser
        .until(
            "the live feed",
            "document.getElementById('conn').className === 'live'",
        )
        .await;
    let started = Instant::now();
    for batch in 0..4 {
        let agents: Vec<Value> = (0..50)
            .map(|i| {
                let name = format!("agent-{:03}", batch * 50 + i);
                json!({"name": name, "task": format!("[{name}] work")})
            })
            .collect();
        fl.call("create_agents", json!({ "agents": agents })).await;
    }
    let names: Vec<String> = (0..200).map(|i| format!("agent-{i:03}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    fl.wait_all(&refs).await;
    browser
        .until(
            "200 rows",
            "document.querySelectorAll('#rows tr').length === 200",
        )
        .await;
    browser
        .until(
            "200 idle",
            "document.querySelectorAll('#rows tr[data-status=idle]').length === 200",
        )
        .await;
    let elapsed = started.elapsed();
    let first = browser.js("return window.__flotilla.stats;").await;
    eprintln!(
        "200 agents created and run ({:.1}s): {} events in {} render batches, max {:.1} ms (row creation included)",
        elapsed.as_secs_f64(),
        first["events"],
        first["flushes"],
        first["maxMs"].as_f64().unwrap()
    );
    // Steady state: every agent works again while the page shows all 200.
    browser
        .js("window.__flotilla.stats = {flushes: 0, totalMs: 0, maxMs: 0, events: 0};")
        .await;
    for name in &names {
        fl.command(name, &format!("[{name}] again")).await;
    }
    fl.wait_all(&refs).await;
    browser
        .until("200 idle again", "document.querySelectorAll('#rows tr[data-status=idle]').length === 200 && window.__flotilla.stats.events >= 800")
        .await;
    let stats = browser.js("return window.__flotilla.stats;").await;
    // One full re-render of all 200 rows and lanes (layout included), timed in the page.
    let full = browser
        .js("const f = window.__flotilla; f.all = true; f.tl = true; \
             const t = performance.now(); flush(); return performance.now() - t;")
        .await;
    let (batches, events) = (
        stats["flushes"].as_f64().unwrap(),
        stats["events"].as_f64().unwrap(),
    );
    eprintln!(
        "200 agents, second round: {events} events in {batches} render batches; mean {:.1} ms, max {:.1} ms per batch; a full re-render {:.1} ms",
        stats["totalMs"].as_f64().unwrap() / batches.max(1.0),
        stats["maxMs"].as_f64().unwrap(),
        full.as_f64().unwrap()
    );
    assert!(batches < events, "events are batched per frame: {stats}");
    // The times are printed above as figures, not held to a budget: on a machine shared
    // with other tests (CLI sessions, builds) a frame's time says more about the load
    // than about the page. Only a page that stops rendering fails. Alone this page's
    // worst batch is ~35 ms; on 2 cores with real Claude Code sessions running beside
    // it (the CLI suites), one batch was seen at 3.1 s in a CI run: starved, not hung.
    assert!(
        stats["maxMs"].as_f64().unwrap() < HUNG_MS,
        "a render batch hung: {stats}"
    );
    assert!(
        full.as_f64().unwrap() < HUNG_MS,
        "a full re-render hung: {full} ms"
    );
    browser.quit().await;
    server.kill().await;
}
