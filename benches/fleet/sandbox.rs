//! Scenario 7, sandbox: what confining `run_command` costs per command.
//!
//! In process, through flotilla's own tool code (`Tool::RunCommand.run`, the path
//! an agent's tool call takes: launcher, namespaces, pipes, process group), with the
//! launcher installed from the release binary. The same command (`true`) runs with
//! `sandbox: off` (PID + mount namespaces only, as before), `workspace-write` (plus a
//! Landlock ruleset and a network namespace with loopback up), `workspace-write` with
//! `network: true` (Landlock only) and `read-only`, interleaved round by round so load
//! changes hit every variant alike. Wall time per command, in microseconds.

use std::time::Instant;

use flotilla::sandbox::{Sandbox, SandboxMode};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::stats::{Summary, loadavg, round, table};

const VARIANTS: [(&str, SandboxMode, bool); 4] = [
    ("off (namespaces only)", SandboxMode::Off, false),
    ("workspace-write", SandboxMode::WorkspaceWrite, false),
    (
        "workspace-write + network",
        SandboxMode::WorkspaceWrite,
        true,
    ),
    ("read-only", SandboxMode::ReadOnly, false),
];

pub async fn run(commands: usize) -> Value {
    let temps = tempfile::tempdir().expect("temp dir");
    let setup = flotilla::sandbox::Setup {
        secret_vars: vec!["ANTHROPIC_API_KEY".into()],
        temp_root: temps.path().join("tmp"),
        ..Default::default()
    };
    let installed = flotilla::sandbox::install(crate::server::FLOTILLA.into(), setup).await;
    if let Err(why) = &installed.sandbox {
        println!("sandbox unavailable here ({why}): nothing to measure");
        return json!({"unavailable": why});
    }
    let work = tempfile::tempdir().expect("temp dir");
    let root = work.path().canonicalize().expect("work dir");
    let ctx = |mode, network| flotilla::tools::ToolContext {
        root: root.clone(),
        cancel: CancellationToken::new(),
        sandbox: Sandbox { mode, network },
        agent: "bench".into(),
    };
    let mut samples: Vec<Vec<f64>> = vec![Vec::with_capacity(commands); VARIANTS.len()];
    // Warm-up: page cache, first namespace set-up.
    for (_, mode, network) in VARIANTS {
        for _ in 0..5 {
            flotilla::tools::Tool::RunCommand
                .run(json!({"command": "true"}), &ctx(mode, network))
                .await;
        }
    }
    for _ in 0..commands {
        for (i, (_, mode, network)) in VARIANTS.iter().enumerate() {
            let c = ctx(*mode, *network);
            let t = Instant::now();
            let out = flotilla::tools::Tool::RunCommand
                .run(json!({"command": "true"}), &c)
                .await;
            samples[i].push(t.elapsed().as_secs_f64() * 1e6);
            assert!(!out.is_error, "run_command failed: {}", out.content);
        }
    }
    let summaries: Vec<Summary> = samples.iter().map(|s| Summary::of_ms(s)).collect();
    let base = summaries[0];
    let mut rows = Vec::new();
    let mut report = serde_json::Map::new();
    for ((name, _, _), s) in VARIANTS.iter().zip(&summaries) {
        rows.push(vec![
            name.to_string(),
            format!("{:.0}", s.p50),
            format!("{:.0}", s.mean),
            format!("{:.0}", s.p99),
            format!("{:+.0}", s.p50 - base.p50),
        ]);
        report.insert(
            name.to_string(),
            json!({"p50_us": round(s.p50, 0), "mean_us": round(s.mean, 0), "p99_us": round(s.p99, 0),
                   "extra_p50_us": round(s.p50 - base.p50, 0)}),
        );
    }
    table(
        &format!(
            "sandbox: cost of confinement per run_command ({commands} × `true` per variant, interleaved)"
        ),
        &["variant", "p50 µs", "mean µs", "p99 µs", "vs off (p50)"],
        &rows,
    );
    println!("load {}", loadavg());
    report.insert("commands".into(), json!(commands));
    Value::Object(report)
}
