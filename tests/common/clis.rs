//! The real agent CLIs (Claude Code, Codex, Gemini CLI) as the tests find and run them:
//! installed at pinned versions by `.ci/install-clis` into `.ci/clis/node_modules/.bin`,
//! or wherever `FLOTILLA_TEST_CLIS` points; each run pointed at a [`MockModel`] with a
//! private config directory, stdin closed, no traffic off loopback.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

use super::MockModel;

/// How long one CLI command may take before the test calls it a hang.
pub const CLI_TIMEOUT: Duration = Duration::from_secs(90);

/// The directory holding `node`, `claude`, `codex` and `gemini`: `FLOTILLA_TEST_CLIS`,
/// else `.ci/clis/node_modules/.bin`, installed there by `.ci/install-clis` (once per
/// test run) when missing, so `cargo test` alone sets a fresh machine up.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("FLOTILLA_TEST_CLIS") {
        return PathBuf::from(dir);
    }
    static INSTALLED: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    INSTALLED
        .get_or_init(|| {
            let root = Path::new(env!("CARGO_MANIFEST_DIR"));
            let dir = root.join(".ci/clis/node_modules/.bin");
            if !["node", "claude", "codex", "gemini"]
                .iter()
                .all(|c| dir.join(c).exists())
            {
                let status = std::process::Command::new(root.join(".ci/install-clis"))
                    .stdin(Stdio::null())
                    .status()
                    .expect("run .ci/install-clis");
                assert!(status.success(), ".ci/install-clis failed: {status}");
            }
            dir
        })
        .clone()
}

/// The CLI `name`, or a panic saying how to install it.
pub fn cli(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.exists(),
        "{name} not found at {}: run .ci/install-clis (or set FLOTILLA_TEST_CLIS to a \
         directory holding the pinned CLIs)",
        path.display()
    );
    path
}

/// `PATH` with the CLIs' directory (and their Node) first: they are Node scripts.
pub fn path() -> String {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs = vec![bin_dir()];
    dirs.extend(std::env::split_paths(&path));
    std::env::join_paths(dirs)
        .expect("PATH")
        .to_string_lossy()
        .into_owned()
}

/// A flotilla server with `config`, on `mock`, whose agents find the CLIs on `PATH`.
pub async fn flotilla(
    mock: MockModel,
    root: std::sync::Arc<tempfile::TempDir>,
    config: &str,
) -> super::Flotilla {
    super::Flotilla::builder()
        .root(root)
        .mock(mock)
        .config(config)
        .env("PATH", &path())
        .start()
        .await
}

/// `name` in the server's work directory, as the CLIs see it (canonical).
pub fn work_file(fl: &super::Flotilla, name: &str) -> PathBuf {
    fl.work().canonicalize().expect("work dir").join(name)
}

/// `name args…` in `cwd` with the CLIs' directory first on `PATH` and stdin closed.
pub fn command(name: &str, cwd: &Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(cli(name));
    cmd.current_dir(cwd)
        .env("PATH", path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// What a CLI run printed: its exit code, stdout as JSON lines, stderr.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub lines: Vec<Value>,
    pub stderr: String,
}

impl Run {
    /// The lines whose `type` is `kind`.
    pub fn of_type(&self, kind: &str) -> Vec<&Value> {
        self.lines.iter().filter(|l| l["type"] == kind).collect()
    }

    /// The `type` of every line, in order.
    pub fn types(&self) -> Vec<String> {
        self.lines
            .iter()
            .map(|l| l["type"].as_str().unwrap_or("?").to_string())
            .collect()
    }
}

/// Runs `cmd` to the end (or panics after [`CLI_TIMEOUT`]); every stdout line must be
/// JSON.
pub async fn run(mut cmd: tokio::process::Command) -> Run {
    let child = cmd.spawn().expect("spawn CLI");
    let out = tokio::time::timeout(CLI_TIMEOUT, child.wait_with_output())
        .await
        .expect("CLI finished in time")
        .expect("CLI output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let lines = stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("non-JSON stdout line ({e}): {l}\nstderr: {stderr}"))
        })
        .collect();
    Run {
        code: out.status.code(),
        lines,
        stderr,
    }
}

/// A `claude` command talking to `mock` with its own config directory under `home`:
/// no telemetry or update checks, no retries.
pub fn claude(mock: &MockModel, home: &Path, cwd: &Path) -> tokio::process::Command {
    let mut cmd = command("claude", cwd);
    cmd.env("ANTHROPIC_BASE_URL", mock.url())
        .env("ANTHROPIC_API_KEY", "mock-key")
        .env("CLAUDE_CONFIG_DIR", home)
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .env("CLAUDE_CODE_MAX_RETRIES", "0")
        .env_remove("ANTHROPIC_AUTH_TOKEN");
    cmd
}

/// The model Codex tests ask for: one Codex 0.169.0 knows (an unknown name costs an
/// error item) and that is offered the classic `exec_command` function tool.
pub const CODEX_MODEL: &str = "gpt-5.5";

/// A `CODEX_HOME/config.toml` naming `mock` as the Responses provider (key in
/// `MOCK_KEY`, no retries) and [`CODEX_MODEL`].
fn codex_settings(mock: &MockModel) -> String {
    format!(
        "model_provider = \"mock\"\nmodel = \"{CODEX_MODEL}\"\n\n[model_providers.mock]\n\
         name = \"mock\"\nbase_url = \"{}\"\nenv_key = \"MOCK_KEY\"\nwire_api = \"responses\"\n\
         request_max_retries = 0\nstream_max_retries = 0\n",
        mock.openai_url()
    )
}

/// A `codex` command whose `CODEX_HOME` (under `home`) names `mock` as its Responses
/// provider, key in `MOCK_KEY`, no retries.
pub fn codex(mock: &MockModel, home: &Path, cwd: &Path) -> tokio::process::Command {
    std::fs::create_dir_all(home).expect("codex home");
    std::fs::write(home.join("config.toml"), codex_settings(mock)).expect("codex config");
    let mut cmd = command("codex", cwd);
    cmd.env("CODEX_HOME", home)
        .env("MOCK_KEY", "mock-key")
        .env_remove("OPENAI_API_KEY");
    cmd
}

/// The config for both CLI kinds: Claude Code's and Codex's state directories under
/// `root`, Codex pointed at the mock's Responses API; `claude_env` (`, K = "v"`…) is
/// added to Claude Code's `env`.
pub fn both_config(root: &Path, mock: &MockModel, claude_env: &str) -> String {
    let (claude_home, codex_home) = (root.join("claude-home"), root.join("codex-home"));
    std::fs::create_dir_all(&claude_home).unwrap();
    std::fs::create_dir_all(&codex_home).unwrap();
    std::fs::write(codex_home.join("config.toml"), codex_settings(mock)).unwrap();
    format!(
        "[providers.claude-code]\ncommand = \"{}\"\nenv = {{ CLAUDE_CONFIG_DIR = \"{}\", CLAUDE_CODE_MAX_RETRIES = \"0\"{claude_env} }}\n\n\
         [providers.codex]\ncommand = \"{}\"\nenv = {{ CODEX_HOME = \"{}\", MOCK_KEY = \"mock-key\" }}\n",
        cli("claude").display(),
        claude_home.display(),
        cli("codex").display(),
        codex_home.display()
    )
}
