//! Scenario 7, sandbox: what confining `run_command` costs per command.
//!
//! In process, through flotilla's own tool code (`Tool::RunCommand.run`, the path
//! an agent's tool call takes: launcher, namespaces, pipes, process group), with the
//! launcher installed from the release binary. The same command (`true`) runs with
//! `sandbox: off` (PID + mount namespaces only, as before), `workspace-write` (plus a
//! Landlock ruleset and a network namespace with loopback up), `workspace-write` with
//! `network: true` (Landlock only) and `read-only`, interleaved round by round so load
//! changes hit every variant alike. Beside them, the floor: a plain spawn of the same
//! `sh -c true` from this process (tokio, piped output, own process group), no launcher
//! and no tool code. Wall time per command, in microseconds.

use std::time::Instant;

use flotilla::sandbox::{Sandbox, SandboxMode};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::stats::{Summary, loadavg, round, table};

/// Each variant: its name and the agent's sandbox (`None`: the plain spawn).
const VARIANTS: [(&str, Option<(SandboxMode, bool)>); 5] = [
    ("plain spawn (no launcher)", None),
    ("off (namespaces only)", Some((SandboxMode::Off, false))),
    (
        "workspace-write",
        Some((SandboxMode::WorkspaceWrite, false)),
    ),
    (
        "workspace-write + network",
        Some((SandboxMode::WorkspaceWrite, true)),
    ),
    ("read-only", Some((SandboxMode::ReadOnly, false))),
];

/// Run `true` once as `variant`; panics if it fails.
async fn once(variant: Option<(SandboxMode, bool)>, root: &std::path::Path) {
    let Some((mode, network)) = variant else {
        let out = tokio::process::Command::new("sh")
            .args(["-c", "true"])
            .current_dir(root)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .output()
            .await
            .expect("spawn sh");
        assert!(out.status.success(), "sh -c true failed");
        return;
    };
    let ctx = flotilla::tools::ToolContext {
        root: root.to_path_buf(),
        cancel: CancellationToken::new(),
        sandbox: Sandbox { mode, network },
        agent: "bench".into(),
        visible: Vec::new(),
    };
    let out = flotilla::tools::Tool::RunCommand
        .run(json!({"command": "true"}), &ctx)
        .await;
    assert!(!out.is_error, "run_command failed: {}", out.content);
}

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
    let mut samples: Vec<Vec<f64>> = vec![Vec::with_capacity(commands); VARIANTS.len()];
    // CPU of the finished children (and theirs), per variant: where the time goes.
    let mut child_cpu = vec![0.0; VARIANTS.len()];
    // Warm-up: page cache, first namespace set-up.
    for (_, variant) in VARIANTS {
        for _ in 0..5 {
            once(variant, &root).await;
        }
    }
    for _ in 0..commands {
        for (i, (_, variant)) in VARIANTS.iter().enumerate() {
            let cpu0 = children_cpu_s();
            let t = Instant::now();
            once(*variant, &root).await;
            samples[i].push(t.elapsed().as_secs_f64() * 1e6);
            child_cpu[i] += children_cpu_s() - cpu0;
        }
    }
    let summaries: Vec<Summary> = samples.iter().map(|s| Summary::of_ms(s)).collect();
    let base = summaries[0];
    let mut rows = Vec::new();
    let mut report = serde_json::Map::new();
    for (((name, _), s), cpu) in VARIANTS.iter().zip(&summaries).zip(&child_cpu) {
        let cpu_us = cpu * 1e6 / commands as f64;
        rows.push(vec![
            name.to_string(),
            format!("{:.0}", s.p50),
            format!("{:.0}", s.mean),
            format!("{:.0}", s.p99),
            format!("{:+.0}", s.p50 - base.p50),
            format!("{cpu_us:.0}"),
        ]);
        report.insert(
            name.to_string(),
            json!({"p50_us": round(s.p50, 0), "mean_us": round(s.mean, 0), "p99_us": round(s.p99, 0),
                   "extra_p50_us_vs_plain": round(s.p50 - base.p50, 0),
                   "children_cpu_us": round(cpu_us, 0)}),
        );
    }
    table(
        &format!(
            "sandbox: cost of confinement per run_command ({commands} × `true` per variant, interleaved)"
        ),
        &[
            "variant",
            "p50 µs",
            "mean µs",
            "p99 µs",
            "vs plain (p50)",
            "children's CPU µs",
        ],
        &rows,
    );
    println!("load {}", loadavg());
    report.insert("commands".into(), json!(commands));
    Value::Object(report)
}

/// CPU seconds of this process's waited-for children and their descendants (`cutime`
/// + `cstime` of `/proc/self/stat`, in 10 ms ticks: meaningful summed over many commands).
fn children_cpu_s() -> f64 {
    crate::server::stat_seconds("/proc/self/stat", 16, 17)
}
