//! The runtime seam for `run_command`: how an agent's shell command is started, and
//! what it can see.
//!
//! flotilla starts every command through a small launcher mode of its own binary
//! (`flotilla __exec SPEC`, the way Codex ships `codex-linux-sandbox`) rather than
//! running `sh -c` itself. The [`LaunchSpec`] is passed as one JSON argument. On Linux
//! the launcher:
//!
//! 1. sets `PR_SET_PDEATHSIG` (SIGKILL), so it dies with flotilla, even on SIGKILL;
//! 2. unshares a PID and a mount namespace (plus a user namespace when it lacks the
//!    privilege for the other two);
//! 3. starts the namespace's init (`flotilla __init SPEC`, pid 1 inside), which also
//!    dies with the launcher, mounts a fresh private `/proc` (so no process outside the
//!    namespace — flotilla, its parent, other agents' commands — is visible), drops the
//!    capabilities that could undo this (`CAP_SYS_ADMIN`, `CAP_SYS_PTRACE`, …) from the
//!    bounding set, runs `sh -c COMMAND` in the work directory, and reaps;
//! 4. when init exits, the kernel kills everything left in the namespace, including
//!    processes that detached with `setsid` or a double fork.
//!
//! Both processes are single-threaded, so nothing here needs `pre_exec` or `unsafe`.
//! Note that the parent-death signal fires when the *thread* that spawned the launcher
//! exits: commands are spawned from tokio worker threads, which live as long as the
//! runtime (do not spawn them from `spawn_blocking`, whose threads retire when idle).
//! Every command's environment is scrubbed of the provider key variables
//! ([`secret_vars`]: every `api_key_env` of the config, `ANTHROPIC_API_KEY`,
//! `OPENAI_API_KEY`, `FLOTILLA_TOKEN`).
//!
//! [`install`] (called once by `main`) probes whether namespaces work; when they do
//! not (no privilege, a seccomp filter, not Linux) commands run without isolation and
//! a warning is logged. Without [`install`] (unit tests inside the crate, which have no
//! flotilla binary) commands are spawned directly with the scrubbed environment.
//!
//! This is where further confinement (Landlock, a network namespace) belongs: add a
//! field to [`LaunchSpec`] and apply it in `linux::init_main` before the shell starts.

#[cfg(target_os = "linux")]
mod linux;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::config::Config;

/// `flotilla __exec SPEC`: the launcher (outside the namespaces).
pub const EXEC_ARG: &str = "__exec";
/// `flotilla __init SPEC`: the namespace's init (pid 1 inside).
pub const INIT_ARG: &str = "__init";
/// Exit code of a launcher that could not set the command up.
pub const SETUP_FAILED: i32 = 125;
/// The note added when background processes were still running after the shell exited.
pub const LINGERING_NOTE: &str =
    "[Background processes were still running after the command exited; they were killed.]";

/// Variables every command loses, whatever the config says.
const ALWAYS_SECRET: [&str; 3] = ["ANTHROPIC_API_KEY", "OPENAI_API_KEY", "FLOTILLA_TOKEN"];

/// What the launcher runs, passed to it as one JSON argument.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LaunchSpec {
    /// The shell command line, run as `sh -c COMMAND`.
    pub command: String,
    /// Directory the shell starts in (the agent's work directory).
    pub cwd: PathBuf,
    /// flotilla's pid: the launcher exits at once if its parent is already gone.
    pub parent: u32,
    /// Run in fresh PID and mount namespaces with a private `/proc`.
    pub isolate: bool,
}

/// How commands are started in this process; set once by [`install`].
#[derive(Debug)]
struct Runtime {
    /// The flotilla binary (launcher); `None`: spawn `sh` directly.
    launcher: Option<PathBuf>,
    isolate: bool,
    secret_vars: Vec<String>,
}

static RUNTIME: OnceLock<Runtime> = OnceLock::new();

/// Whether commands run isolated, as decided by [`install`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Isolation {
    /// PID + mount namespaces with a private `/proc`.
    Namespaces,
    /// Not available; the reason.
    Unavailable(String),
}

/// The provider key variables no command may see: every `api_key_env` in the config
/// plus `ANTHROPIC_API_KEY`, `OPENAI_API_KEY` and `FLOTILLA_TOKEN`.
pub fn secret_vars(config: &Config) -> Vec<String> {
    let mut vars: Vec<String> = ALWAYS_SECRET.iter().map(|v| v.to_string()).collect();
    for provider in config.providers.values() {
        if let Some(var) = provider.api_key_env.as_deref().map(str::trim)
            && !var.is_empty()
            && !vars.iter().any(|v| v == var)
        {
            vars.push(var.to_string());
        }
    }
    vars
}

/// Start commands through the launcher at `launcher` (flotilla's own binary), with
/// these variables removed. Probes namespaces once; call before any command runs.
pub async fn install(launcher: PathBuf, secret_vars: Vec<String>) -> Isolation {
    let isolation = probe(&launcher, &secret_vars).await;
    let _ = RUNTIME.set(Runtime {
        launcher: Some(launcher),
        isolate: isolation == Isolation::Namespaces,
        secret_vars,
    });
    isolation
}

async fn probe(launcher: &Path, secret_vars: &[String]) -> Isolation {
    if !cfg!(target_os = "linux") {
        return Isolation::Unavailable("process isolation is implemented for Linux only".into());
    }
    let spec = LaunchSpec {
        command: "exit 0".into(),
        cwd: std::env::temp_dir(),
        parent: std::process::id(),
        isolate: true,
    };
    let mut cmd = launch_command(launcher, &spec, secret_vars);
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    match tokio::time::timeout(std::time::Duration::from_secs(10), cmd.output()).await {
        Ok(Ok(out)) if out.status.success() => Isolation::Namespaces,
        Ok(Ok(out)) => Isolation::Unavailable(
            String::from_utf8_lossy(&out.stderr)
                .trim()
                .trim_start_matches("flotilla: ")
                .to_string(),
        ),
        Ok(Err(e)) => Isolation::Unavailable(format!("cannot start {}: {e}", launcher.display())),
        Err(_) => Isolation::Unavailable("the probe did not finish within 10s".into()),
    }
}

fn launch_command(
    launcher: &Path,
    spec: &LaunchSpec,
    secret_vars: &[String],
) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(launcher);
    cmd.arg(EXEC_ARG)
        .arg(serde_json::to_string(spec).unwrap_or_default())
        .current_dir(&spec.cwd);
    for var in secret_vars {
        cmd.env_remove(var);
    }
    cmd
}

/// The process that runs `sh -c command` in `cwd`: the launcher when [`install`] was
/// called, else `sh` itself. The caller sets stdio, the process group and
/// `kill_on_drop`.
pub fn shell_command(command: &str, cwd: &Path) -> tokio::process::Command {
    match RUNTIME.get() {
        Some(Runtime {
            launcher: Some(launcher),
            isolate,
            secret_vars,
        }) => {
            let spec = LaunchSpec {
                command: command.to_string(),
                cwd: cwd.to_path_buf(),
                parent: std::process::id(),
                isolate: *isolate,
            };
            launch_command(launcher, &spec, secret_vars)
        }
        other => {
            let mut cmd = tokio::process::Command::new("sh");
            cmd.arg("-c").arg(command).current_dir(cwd);
            let defaults: Vec<String> = ALWAYS_SECRET.iter().map(|v| v.to_string()).collect();
            for var in other.map_or(&defaults, |r| &r.secret_vars) {
                cmd.env_remove(var);
            }
            cmd
        }
    }
}

/// If this process was started as the launcher or the namespace init, run that role
/// and return its exit code; `None` for a normal start. `main` calls this first,
/// before any thread exists.
pub fn dispatch() -> Option<i32> {
    let mut args = std::env::args_os().skip(1);
    let role = args.next()?;
    let role = role.to_str()?;
    if role != EXEC_ARG && role != INIT_ARG {
        return None;
    }
    let spec = match args
        .next()
        .and_then(|a| a.into_string().ok())
        .map(|a| serde_json::from_str::<LaunchSpec>(&a))
    {
        Some(Ok(spec)) => spec,
        Some(Err(e)) => return Some(fail(&format!("bad launch spec: {e}"))),
        None => return Some(fail("missing launch spec")),
    };
    #[cfg(target_os = "linux")]
    {
        Some(if role == EXEC_ARG {
            linux::exec_main(&spec)
        } else {
            linux::init_main(&spec)
        })
    }
    #[cfg(not(target_os = "linux"))]
    {
        use std::os::unix::process::CommandExt;
        let e = std::process::Command::new("sh")
            .arg("-c")
            .arg(&spec.command)
            .current_dir(&spec.cwd)
            .exec();
        Some(fail(&format!("cannot run sh: {e}")))
    }
}

/// Say why the launcher failed (on the command's stderr, which the model reads).
fn fail(message: &str) -> i32 {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "flotilla: {message}");
    SETUP_FAILED
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn secret_vars_cover_every_configured_key() {
        let config = Config::from_toml_str(
            "[providers.a]\nkind = \"openai\"\nbase_url = \"http://x\"\napi_key_env = \"A_KEY\"\n\
             [providers.b]\nkind = \"openai\"\nbase_url = \"http://y\"\napi_key_env = \"OPENAI_API_KEY\"\n",
        )
        .unwrap();
        assert_eq!(
            secret_vars(&config),
            [
                "ANTHROPIC_API_KEY",
                "OPENAI_API_KEY",
                "FLOTILLA_TOKEN",
                "A_KEY"
            ]
        );
    }

    #[test]
    fn spec_round_trips_as_one_argument() {
        let spec = LaunchSpec {
            command: "echo 'a b' \"$HOME\"\nls".into(),
            cwd: "/tmp/x y".into(),
            parent: 42,
            isolate: true,
        };
        let arg = serde_json::to_string(&spec).unwrap();
        assert_eq!(serde_json::from_str::<LaunchSpec>(&arg).unwrap(), spec);
    }
}
