//! Scenario 4, orchestrator context: the reference job (three scouts in parallel, then a
//! planner, then a builder), driven the way prompts/orchestrator.md teaches, counting
//! every byte of tool results the orchestrator receives. The same job is then driven by
//! a naive orchestrator that polls `get_agent_status` every 15 s instead of sleeping in
//! `wait_for_agents`; time is scaled (model steps of `latency` stand for `step_s`
//! seconds, and the poll interval is scaled by the same factor), so the number of polls
//! is what the real job would see. Last, the job submitted as one plan
//! (`create_agents` with `depends_on`), and the bytes of the tool definitions.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::mock::{Mock, write_project};
use crate::server::{Server, structured_bytes, text_of};
use crate::stats::{Summary, loadavg, round, table};

/// Assumed tokens per byte of JSON tool result (≈ 4 bytes per token).
const BYTES_PER_TOKEN: f64 = 4.0;
/// Assumed tokens one tool call adds besides its result: the tool_use block the model
/// writes (name, arguments, id) and the client's framing of the result.
const CALL_OVERHEAD_TOKENS: f64 = 50.0;
/// Assumed size of the orchestrator's context that every model turn re-reads (system
/// prompt, tool definitions, the conversation so far), in tokens.
const TURN_CONTEXT_TOKENS: f64 = 20_000.0;

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Wait,
    Poll(Duration),
}

struct Call {
    tool: String,
    /// The result text itself, for the JSON report.
    body: String,
    text: usize,
    structured: usize,
    wire: usize,
    args: usize,
}

struct Orchestrator<'a> {
    server: &'a Server,
    calls: Vec<Call>,
    /// Model turns, assuming calls that do not depend on each other (the three creates,
    /// the three reads, one poll round) go out in one turn as parallel tool calls.
    turns: usize,
    status_bytes: Vec<f64>,
    /// Bytes of the agents' answers themselves (the `text` of get_agent_output).
    answers: usize,
}

impl Orchestrator<'_> {
    async fn call(&mut self, tool: &str, args: Value) -> Value {
        let wire0 = self.server.wire_bytes.load(Ordering::Relaxed);
        let r = self.server.call(tool, args.clone()).await;
        let wire = self.server.wire_bytes.load(Ordering::Relaxed) - wire0;
        assert_ne!(r.is_error, Some(true), "{tool}: {}", text_of(&r));
        let body = text_of(&r);
        let text = body.len();
        if tool == "get_agent_status" {
            self.status_bytes.push(text as f64);
        }
        self.calls.push(Call {
            tool: tool.to_string(),
            body,
            text,
            structured: structured_bytes(&r),
            wire: wire as usize,
            args: args.to_string().len(),
        });
        let v = crate::server::json_of(&r);
        if tool == "get_agent_output" {
            self.answers += v["text"].as_str().map_or(0, str::len);
        }
        v
    }

    /// One stage: create the agents, let them work (wait or poll), read their outputs.
    async fn stage(&mut self, mode: Mode, agents: &[(&str, &str, String)]) -> Duration {
        let t = Instant::now();
        for (name, role, task) in agents {
            self.call(
                "create_agent",
                json!({"name": name, "role": role, "task": task}),
            )
            .await;
        }
        self.turns += 1;
        let names: Vec<&str> = agents.iter().map(|a| a.0).collect();
        // Agents whose report still has to be read with get_agent_output.
        let mut unread = names.clone();
        match mode {
            Mode::Wait => {
                // As prompts/orchestrator.md teaches: wait and read in one call.
                let r = self
                    .call(
                        "wait_for_agents",
                        json!({"agents": names, "until": "all", "timeout_s": 600, "output_max_chars": 4000}),
                    )
                    .await;
                assert_eq!(r["timed_out"], false);
                self.turns += 1;
                for row in r["agents"].as_array().into_iter().flatten() {
                    let output = row["output"].as_str().unwrap_or("");
                    self.answers += output.len();
                    if row["status"] == "idle"
                        && output.chars().count() as u64
                            == row["output_chars"].as_u64().unwrap_or(u64::MAX)
                    {
                        unread.retain(|n| row["name"] != *n);
                    }
                }
            }
            Mode::Poll(every) => {
                let mut pending = names.clone();
                while !pending.is_empty() {
                    tokio::time::sleep(every).await;
                    let mut still = Vec::new();
                    for name in pending {
                        let s = self.call("get_agent_status", json!({"agent": name})).await;
                        if s["status"] == "running" || s["pending"].as_u64() != Some(0) {
                            still.push(name);
                        }
                    }
                    self.turns += 1;
                    pending = still;
                }
            }
        }
        let elapsed = t.elapsed();
        for name in &unread {
            let out = self.call("get_agent_output", json!({"agent": name})).await;
            assert_eq!(out["command_status"], "done", "{name}: {out}");
        }
        if !unread.is_empty() {
            self.turns += 1;
        }
        elapsed
    }
}

fn scouts() -> Vec<(&'static str, &'static str, String)> {
    vec![
        ("scout-api", "scout", "Goal: we will add per-client rate limiting to this HTTP API. Find where requests are routed and where middleware is registered, and how handlers are built. Context: Rust project in the current directory. Constraints: read only. Report: under 1,200 chars, cite path:line, no code listings. [bench k=scout a=0]".to_string()),
        ("scout-config", "scout", "Goal: we will add rate-limit settings. Find how configuration is loaded (env vars, files), which struct holds it and how it reaches the router. Constraints: read only. Report: under 1,200 chars with path:line refs. [bench k=scout a=1]".to_string()),
        ("scout-tests", "scout", "Goal: know how to test a rate limiter here. How are the tests run (exact commands), which tests cover the HTTP layer and how do they start the app? Constraints: read only. Report: under 1,000 chars with path:line refs. [bench k=scout a=2]".to_string()),
    ]
}

fn planner(findings: &str) -> Vec<(&'static str, &'static str, String)> {
    vec![(
        "planner",
        "planner",
        format!(
            "Goal: add per-client rate limiting (token bucket, keyed by X-Client-Id) to the HTTP API, answering 429 when exceeded. Findings so far: {findings}. Constraints: no new dependencies; keep existing tests passing. Produce an ordered plan: files, steps, tests, risks; under 2,500 chars. [bench k=planner a=3]"
        ),
    )]
}

fn builder(plan: &str) -> Vec<(&'static str, &'static str, String)> {
    vec![(
        "builder",
        "builder",
        format!(
            "Implement this plan: {plan}. Build and run the tests with `cargo test`. Do not touch unrelated files. Report files changed and test results, under 1,500 chars. [bench k=builder a=4]"
        ),
    )]
}

struct RunResult {
    calls: Vec<Call>,
    answers: usize,
    turns: usize,
    stages: Vec<Duration>,
    status_bytes: Vec<f64>,
    progress: u64,
    progress_bytes: u64,
}

async fn job(mode: Mode, latency: Duration) -> RunResult {
    let mock = Mock::start(latency, 5, 8).await;
    let server = Server::start(&mock.url, write_project).await;
    let mut o = Orchestrator {
        server: &server,
        calls: Vec::new(),
        turns: 0,
        status_bytes: Vec::new(),
        answers: 0,
    };
    let mut stages = Vec::new();
    stages.push(o.stage(mode, &scouts()).await);
    // The orchestrator condenses the scouts' reports into the planner's brief.
    let findings = "routing in src/api.rs:12 (router), middleware via .layer at src/api.rs:31, config in src/config.rs:5/15 (Config::from_env, passed as Arc<Config>), tests build the router in tests/api.rs:9; no existing limiter";
    stages.push(o.stage(mode, &planner(findings)).await);
    let plan = "1) src/rate_limit.rs: token-bucket Limiter keyed by client id; 2) src/config.rs: rate_limit_per_sec=10, rate_limit_burst=20; 3) src/api.rs:31 register the layer before the logger, 429 + retry-after; 4) src/lib.rs: pub mod rate_limit; 5) tests/rate_limit.rs unit test + API test expecting one 429 after burst+1 requests";
    stages.push(o.stage(mode, &builder(plan)).await);
    o.call("delete_all_agents", json!({})).await;
    o.turns += 1;
    let (calls, turns, status_bytes, answers) = (o.calls, o.turns, o.status_bytes, o.answers);
    let progress = server.handler.progress.load(Ordering::Relaxed);
    let progress_bytes = server.handler.progress_bytes.load(Ordering::Relaxed);
    server.stop().await;
    RunResult {
        calls,
        answers,
        turns,
        stages,
        status_bytes,
        progress,
        progress_bytes,
    }
}

/// The same job submitted whole, as the MCP instructions teach: one `create_agents`
/// with the five agents and their `depends_on` (each receives its dependencies'
/// answers, so the orchestrator copies nothing), one `wait_for_agents` on the builder
/// that also returns its report, and `delete_all_agents`. Also measures the tool
/// definitions on the same server.
async fn plan_job(latency: Duration) -> (RunResult, Value) {
    let mock = Mock::start(latency, 5, 8).await;
    let server = Server::start(&mock.url, write_project).await;
    let definitions = crate::definitions::run(&server).await;
    let mut o = Orchestrator {
        server: &server,
        calls: Vec::new(),
        turns: 0,
        status_bytes: Vec::new(),
        answers: 0,
    };
    let t = Instant::now();
    let mut agents: Vec<Value> = scouts()
        .into_iter()
        .map(|(name, role, task)| json!({"name": name, "role": role, "task": task}))
        .collect();
    agents.push(json!({"name": "planner", "role": "planner", "depends_on": ["scout-api", "scout-config", "scout-tests"],
        "task": "Goal: add per-client rate limiting (token bucket, keyed by X-Client-Id) to the HTTP API, answering 429 when exceeded, from the scouts' findings. Constraints: no new dependencies; keep existing tests passing. Produce an ordered plan: files, steps, tests, risks; under 2,500 chars. [bench k=planner a=3]"}));
    agents.push(json!({"name": "builder", "role": "builder", "depends_on": ["planner"],
        "task": "Implement the planner's plan. Build and run the tests with `cargo test`. Do not touch unrelated files. Report files changed and test results, under 1,500 chars. [bench k=builder a=4]"}));
    o.call("create_agents", json!({"agents": agents})).await;
    o.turns += 1;
    let r = o
        .call(
            "wait_for_agents",
            json!({"agents": ["builder"], "timeout_s": 600, "output_max_chars": 4000}),
        )
        .await;
    o.turns += 1;
    assert_eq!(r["timed_out"], false, "{r}");
    let row = &r["agents"][0];
    assert_eq!(row["status"], "idle", "{r}");
    let output = row["output"].as_str().unwrap_or("");
    o.answers += output.len();
    if output.chars().count() as u64 != row["output_chars"].as_u64().unwrap_or(0) {
        o.call("get_agent_output", json!({"agent": "builder"}))
            .await;
        o.turns += 1;
    }
    let stages = vec![t.elapsed()];
    o.call("delete_all_agents", json!({})).await;
    o.turns += 1;
    let (calls, turns, status_bytes, answers) = (o.calls, o.turns, o.status_bytes, o.answers);
    let progress = server.handler.progress.load(Ordering::Relaxed);
    let progress_bytes = server.handler.progress_bytes.load(Ordering::Relaxed);
    server.stop().await;
    let run = RunResult {
        calls,
        answers,
        turns,
        stages,
        status_bytes,
        progress,
        progress_bytes,
    };
    (run, definitions)
}

fn tokens(r: &RunResult) -> f64 {
    let text: usize = r.calls.iter().map(|c| c.text).sum();
    text as f64 / BYTES_PER_TOKEN + r.calls.len() as f64 * CALL_OVERHEAD_TOKENS
}

pub async fn run(latency: Duration, poll_s: f64, step_s: f64) -> Value {
    let load_before = loadavg();
    let wait = job(Mode::Wait, latency).await;
    let scale = step_s / latency.as_secs_f64();
    let poll_every = Duration::from_secs_f64(poll_s / scale);
    let poll = job(Mode::Poll(poll_every), latency).await;
    let (plan, definitions) = plan_job(latency).await;

    // Per-call table for the wait-driven job.
    let rows: Vec<Vec<String>> = wait
        .calls
        .iter()
        .enumerate()
        .map(|(i, c)| {
            vec![
                format!("{:>2}", i + 1),
                c.tool.clone(),
                c.args.to_string(),
                c.text.to_string(),
                c.structured.to_string(),
                c.wire.to_string(),
            ]
        })
        .collect();
    table(
        "Orchestrator context: the reference job as prompts/orchestrator.md drives it (bytes)",
        &[
            "#",
            "tool",
            "args",
            "result text",
            "structuredContent",
            "wire (JSON-RPC line)",
        ],
        &rows,
    );
    let sum = |r: &RunResult, f: fn(&Call) -> usize| r.calls.iter().map(f).sum::<usize>();
    let summary_row = |label: &str, r: &RunResult| {
        vec![
            label.to_string(),
            r.calls.len().to_string(),
            r.turns.to_string(),
            format!(
                "{:.0} s",
                r.stages.iter().map(|d| d.as_secs_f64()).sum::<f64>() * scale
            ),
            sum(r, |c| c.text).to_string(),
            r.answers.to_string(),
            (sum(r, |c| c.text) - r.answers).to_string(),
            sum(r, |c| c.structured).to_string(),
            sum(r, |c| c.wire).to_string(),
            format!("{:.0}", tokens(r)),
            format!("{:.0}", r.turns as f64 * TURN_CONTEXT_TOKENS),
        ]
    };
    let scaled_stages: Vec<f64> = wait
        .stages
        .iter()
        .map(|d| d.as_secs_f64() * scale)
        .collect();
    table(
        &format!(
            "Orchestrator context: wait_for_agents vs polling get_agent_status every {poll_s:.0} s (model step = {step_s:.0} s, job ≈ {:.0} s)",
            scaled_stages.iter().sum::<f64>()
        ),
        &[
            "driver",
            "tool calls",
            "model turns",
            "job time",
            "result text B",
            "of which answers",
            "envelope",
            "structured B",
            "wire B",
            "≈ tokens into context",
            "≈ tokens re-read by turns",
        ],
        &[
            summary_row("wait_for_agents", &wait),
            summary_row(&format!("poll every {poll_s:.0} s"), &poll),
            summary_row("one plan (create_agents)", &plan),
        ],
    );
    let status = Summary::of_ms(&poll.status_bytes);
    println!(
        "  assumptions: {BYTES_PER_TOKEN} bytes/token; {CALL_OVERHEAD_TOKENS} tokens per tool call for the tool_use block and framing; each model turn re-reads a {TURN_CONTEXT_TOKENS} token context (cached input); independent calls batched in one turn"
    );
    println!(
        "  get_agent_status row: {:.0} bytes median ({} polls); progress notifications during the waits: {} ({} bytes, shown by clients, not fed to the model)",
        status.p50,
        poll.status_bytes.len(),
        wait.progress,
        wait.progress_bytes
    );

    let run_json = |r: &RunResult| {
        json!({
            "tool_calls": r.calls.len(),
            "job_s_scaled": round(r.stages.iter().map(|d| d.as_secs_f64()).sum::<f64>() * scale, 1),
            "answer_bytes": r.answers,
            "envelope_bytes": sum(r, |c| c.text) - r.answers,
            "model_turns": r.turns,
            "result_text_bytes": sum(r, |c| c.text),
            "structured_bytes": sum(r, |c| c.structured),
            "wire_bytes": sum(r, |c| c.wire),
            "args_bytes": sum(r, |c| c.args),
            "tokens_into_context": round(tokens(r), 0),
            "tokens_reread_by_turns": round(r.turns as f64 * TURN_CONTEXT_TOKENS, 0),
            "progress_notifications": r.progress,
            "calls": r.calls.iter().map(|c| json!({"tool": c.tool, "text": c.text, "structured": c.structured, "wire": c.wire, "args": c.args, "result": c.body})).collect::<Vec<_>>(),
        })
    };
    json!({
        "latency_ms": latency.as_millis() as u64,
        "poll_interval_s": poll_s,
        "model_step_s": step_s,
        "poll_interval_scaled_ms": round(poll_every.as_secs_f64() * 1e3, 2),
        "job_stages_s_scaled": scaled_stages.iter().map(|s| round(*s, 1)).collect::<Vec<_>>(),
        "status_row_bytes_p50": status.p50,
        "assumptions": {
            "bytes_per_token": BYTES_PER_TOKEN,
            "call_overhead_tokens": CALL_OVERHEAD_TOKENS,
            "turn_context_tokens": TURN_CONTEXT_TOKENS,
        },
        "wait": run_json(&wait),
        "poll": run_json(&poll),
        "plan": run_json(&plan),
        "definitions": definitions,
        "load_before": load_before,
        "load_after": loadavg(),
    })
}
