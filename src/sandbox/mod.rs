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
//! On top of that, an agent's [`Sandbox`] confines what its commands may change
//! ([`Confinement`], applied by `confine.rs` before the shell starts, so every child
//! inherits it):
//!
//! - files: a Landlock ruleset — read and execute anywhere, write only beneath the
//!   agent's work directory, the temp directories and `[sandbox] writable_roots`
//!   (`workspace-write`), or nowhere (`read-only`); a few devices (`/dev/null`, …) stay
//!   writable so shells work. Denials are the kernel's `EACCES`: the command prints its
//!   own `Permission denied`.
//! - network: a fresh network namespace with only a loopback interface (when namespaces
//!   work), else Landlock's TCP rules (ABI 4). `network: true` leaves the network alone.
//! - capabilities: a confined command also loses `CAP_NET_ADMIN` and `CAP_NET_RAW`.
//!
//! [`install`] probes Landlock once too; where it is missing, [`sandbox_status`] says
//! why and agents run as with `sandbox: "off"` (the registry warns).

#[cfg(target_os = "linux")]
mod confine;
#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
mod mounts;
mod session;
pub use session::{SessionLaunch, session_command};

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

/// `flotilla __exec SPEC`: the launcher (outside the namespaces).
pub const EXEC_ARG: &str = "__exec";
/// `flotilla __init SPEC`: the namespace's init (pid 1 inside).
pub const INIT_ARG: &str = "__init";
/// Exit code of a launcher that could not set the command up.
pub const SETUP_FAILED: i32 = 125;
/// The note added when background processes were still running after the shell exited.
pub const LINGERING_NOTE: &str =
    "[Background processes were still running after the command exited; they were killed.]";

/// Where a confined, isolated command sees its private temp directory instead.
pub(crate) const TEMP_ROOTS: [&str; 2] = ["/tmp", "/var/tmp"];

/// Variables every command loses, whatever the config says.
pub(crate) const ALWAYS_SECRET: [&str; 3] =
    ["ANTHROPIC_API_KEY", "OPENAI_API_KEY", "FLOTILLA_TOKEN"];

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
    /// Landlock and network confinement; `None`: none (`sandbox: "off"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confine: Option<Confinement>,
    /// The agent's private temp directory: mounted on `/tmp` and `/var/tmp` of a
    /// confined, isolated command; writable (as `$TMPDIR`) without namespaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temp: Option<PathBuf>,
    /// What a confined, isolated command must not see (the data directory, the
    /// config file): covered in its mount namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hidden: Vec<PathBuf>,
    /// Directories a confined, isolated command must still see (read-only) where the
    /// private temp directory covers them: a CLI session's program under `/tmp`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub visible: Vec<PathBuf>,
}

/// What a confined command may change, worked out by flotilla for the launcher.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Confinement {
    /// Directories it may write beneath (each must exist); empty: read-only.
    pub writable: Vec<PathBuf>,
    /// Whether it may reach the network.
    pub network: bool,
}

/// `sandbox` of an agent: what its `run_command` may change. `workspace-write`: read
/// anywhere, write only in the work directory and the temp directories; `read-only`:
/// write nowhere (except `/dev/null`-like devices); `off`: no confinement, the command
/// can do whatever the user running flotilla can. (Described here, not per variant, so
/// its JSON Schema stays a plain string `enum`.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
#[schemars(inline)]
pub enum SandboxMode {
    WorkspaceWrite,
    ReadOnly,
    Off,
}

/// By name; anything else is refused with what each mode does (serde's own message
/// would only say "unknown variant").
impl<'de> Deserialize<'de> for SandboxMode {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Self::parse(&name).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "sandbox must be \"workspace-write\" (write only in the work directory and temp directories), \"read-only\" or \"off\"; got \"{name}\""
            ))
        })
    }
}

impl SandboxMode {
    pub const NAMES: [&'static str; 3] = ["workspace-write", "read-only", "off"];

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "workspace-write" => Some(Self::WorkspaceWrite),
            "read-only" => Some(Self::ReadOnly),
            "off" => Some(Self::Off),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::WorkspaceWrite => "workspace-write",
            Self::ReadOnly => "read-only",
            Self::Off => "off",
        }
    }
}

/// An agent's sandbox: the mode and whether its commands may use the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sandbox {
    pub mode: SandboxMode,
    pub network: bool,
}

impl Default for Sandbox {
    /// `workspace-write` without network: the default where the kernel supports it.
    fn default() -> Self {
        Self {
            mode: SandboxMode::WorkspaceWrite,
            network: false,
        }
    }
}

/// How commands are started in this process; set once by [`install`].
#[derive(Debug)]
struct Runtime {
    /// The flotilla binary (launcher); `None`: spawn `sh` directly.
    launcher: Option<PathBuf>,
    isolate: bool,
    /// Whether confinement works here; why not.
    sandbox: Result<(), String>,
    setup: Setup,
}

/// What [`install`] needs from the settings.
#[derive(Debug, Clone, Default)]
pub struct Setup {
    /// Variables no command ever gets (provider keys, the token).
    pub secret_vars: Vec<String>,
    /// Extra directories `workspace-write` commands may write (config `[sandbox]
    /// writable_roots`, canonical).
    pub writable_roots: Vec<PathBuf>,
    /// `[sandbox] env`: variables passed to commands besides the minimal set.
    pub env: Vec<String>,
    /// Hidden from confined commands: the data directory, the config file.
    pub hidden: Vec<PathBuf>,
    /// Where each agent's private temp directory is made (`<data dir>/tmp`).
    pub temp_root: PathBuf,
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

/// What [`install`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    pub isolation: Isolation,
    /// Whether `workspace-write` / `read-only` can be enforced; why not.
    pub sandbox: Result<(), String>,
}

/// Start commands through the launcher at `launcher` (flotilla's own binary), set up
/// as `setup` says. Probes namespaces and confinement once; call before any command
/// runs.
pub async fn install(launcher: PathBuf, mut setup: Setup) -> Installed {
    setup.writable_roots = canonical(setup.writable_roots);
    // The data directory may not exist yet (the store is opened after this).
    setup.hidden = setup
        .hidden
        .into_iter()
        .filter_map(|p| p.canonicalize().ok().or(p.is_absolute().then_some(p)))
        .collect();
    let mut runtime = Runtime {
        launcher: Some(launcher),
        isolate: true,
        sandbox: Ok(()),
        setup,
    };
    let isolation = match runtime.probe(None).await {
        Ok(()) => Isolation::Namespaces,
        Err(why) => Isolation::Unavailable(why),
    };
    runtime.isolate = isolation == Isolation::Namespaces;
    runtime.sandbox = if cfg!(target_os = "linux") {
        runtime.probe(Some(SandboxMode::WorkspaceWrite)).await
    } else {
        Err("the sandbox is implemented for Linux only".into())
    };
    let sandbox = runtime.sandbox.clone();
    let _ = RUNTIME.set(runtime);
    Installed { isolation, sandbox }
}

/// The directories that exist, canonical, without repeats.
fn canonical(dirs: Vec<PathBuf>) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    for dir in dirs {
        if let Ok(dir) = dir.canonicalize()
            && !out.contains(&dir)
        {
            out.push(dir);
        }
    }
    out
}

/// Whether the sandbox can be enforced in this process (`Err`: why not). Without
/// [`install`] (unit tests) it cannot.
pub fn sandbox_status() -> Result<(), String> {
    match RUNTIME.get() {
        Some(r) => r.sandbox.clone(),
        None => Err("the command launcher is not installed".into()),
    }
}

/// Variables every command gets from flotilla's environment (besides `[sandbox] env`),
/// with the `LC_*` ones; none that looks like a credential.
const BASE_ENV: [&str; 12] = [
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "TERM",
    "LANG",
    "LANGUAGE",
    "TZ",
    "TMPDIR",
    "COLORTERM",
    "NO_COLOR",
];

/// Parts of a name that mark a credential: never passed unless `[sandbox] env` names it.
const SECRET_WORDS: [&str; 10] = [
    "KEY",
    "TOKEN",
    "SECRET",
    "PASSWORD",
    "PASSWD",
    "CREDENTIAL",
    "AUTH",
    "HEADERS",
    "COOKIE",
    "SESSION",
];

/// Whether a command gets variable `name` from flotilla's environment.
fn passed_on(name: &str, allowed: &[String], secret_vars: &[String]) -> bool {
    if secret_vars.iter().any(|v| v == name) {
        return false;
    }
    if allowed.iter().any(|v| v == name) {
        return true;
    }
    let upper = name.to_ascii_uppercase();
    (BASE_ENV.contains(&name) || name.starts_with("LC_"))
        && !SECRET_WORDS.iter().any(|w| upper.contains(w))
}

/// A minimal environment for `cmd`, from this process's (see [`passed_on`]).
fn minimal_env(cmd: &mut tokio::process::Command, allowed: &[String], secret_vars: &[String]) {
    cmd.env_clear();
    for (name, value) in std::env::vars_os() {
        if name
            .to_str()
            .is_some_and(|n| passed_on(n, allowed, secret_vars))
        {
            cmd.env(name, value);
        }
    }
}

/// A name safe as one path component for an agent's id.
fn component(agent: &str) -> String {
    agent
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Remove the private temp directory of agent `agent` (its id): called when the agent
/// is deleted. Nothing to do before [`install`].
pub async fn remove_agent_temp(agent: &str) {
    let Some(runtime) = RUNTIME.get() else {
        return;
    };
    let dir = runtime.setup.temp_root.join(component(agent));
    if let Err(e) = tokio::fs::remove_dir_all(&dir).await
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!("cannot remove the temp directory {}: {e}", dir.display());
    }
}

impl Runtime {
    /// Run `exit 0` through the launcher, isolated as found so far and confined as
    /// `mode` says.
    async fn probe(&self, mode: Option<SandboxMode>) -> Result<(), String> {
        if !cfg!(target_os = "linux") {
            return Err("process isolation is implemented for Linux only".into());
        }
        let sandbox = Sandbox {
            mode: mode.unwrap_or(SandboxMode::Off),
            network: false,
        };
        let cwd = self
            .private_temp(".probe")
            .unwrap_or_else(std::env::temp_dir);
        let mut cmd = self
            .command("exit 0", &cwd, sandbox, ".probe")
            .ok_or("the command launcher is not installed")?;
        cmd.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        match tokio::time::timeout(std::time::Duration::from_secs(10), cmd.output()).await {
            Ok(Ok(out)) if out.status.success() => Ok(()),
            Ok(Ok(out)) => Err(String::from_utf8_lossy(&out.stderr)
                .trim()
                .trim_start_matches("flotilla: ")
                .to_string()),
            Ok(Err(e)) => Err(format!("cannot start the launcher: {e}")),
            Err(_) => Err("the probe did not finish within 10s".into()),
        }
    }

    /// The launcher command for `command` of agent `agent` (its id); `None` without a
    /// launcher.
    fn command(
        &self,
        command: &str,
        cwd: &Path,
        sandbox: Sandbox,
        agent: &str,
    ) -> Option<tokio::process::Command> {
        self.command_with(command, cwd, sandbox, agent, &[], &[])
    }

    /// [`Runtime::command`], with `extra` directories writable too when it is
    /// confined with any writable directory at all (or read-only: then only `extra`).
    fn command_with(
        &self,
        command: &str,
        cwd: &Path,
        sandbox: Sandbox,
        agent: &str,
        extra: &[PathBuf],
        visible: &[PathBuf],
    ) -> Option<tokio::process::Command> {
        let launcher = self.launcher.as_ref()?;
        let mut confine = self.confinement(cwd, sandbox);
        if let Some(c) = confine.as_mut() {
            c.writable.extend(extra.iter().cloned());
        }
        let temp = match &confine {
            Some(c) if !c.writable.is_empty() => self.private_temp(agent),
            _ => None,
        };
        let spec = LaunchSpec {
            command: command.to_string(),
            cwd: cwd.to_path_buf(),
            parent: std::process::id(),
            isolate: self.isolate,
            hidden: match (&confine, self.isolate) {
                (Some(_), true) => self.setup.hidden.clone(),
                _ => Vec::new(),
            },
            visible: match (&confine, self.isolate) {
                (Some(_), true) => visible.to_vec(),
                _ => Vec::new(),
            },
            confine,
            temp,
        };
        let mut cmd = tokio::process::Command::new(launcher);
        cmd.arg(EXEC_ARG)
            .arg(serde_json::to_string(&spec).unwrap_or_default())
            .current_dir(&spec.cwd);
        minimal_env(&mut cmd, &self.setup.env, &self.setup.secret_vars);
        match (&spec.temp, self.isolate) {
            (Some(_), true) => cmd.env("TMPDIR", "/tmp"),
            (Some(temp), false) => cmd.env("TMPDIR", temp),
            (None, _) => &mut cmd,
        };
        Some(cmd)
    }

    /// Agent `agent`'s private temp directory, made (mode 0700) if missing; `None`
    /// (and a warning) when it cannot be.
    fn private_temp(&self, agent: &str) -> Option<PathBuf> {
        use std::os::unix::fs::DirBuilderExt;
        let dir = self.setup.temp_root.join(component(agent));
        match std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .and_then(|()| dir.canonicalize())
        {
            Ok(dir) => Some(dir),
            Err(e) => {
                tracing::warn!("cannot make the temp directory {}: {e}", dir.display());
                None
            }
        }
    }
}

/// The process that runs `sh -c command` in `cwd` (the work directory of agent
/// `agent`, its id), confined by `sandbox` where the kernel supports it: the launcher
/// when [`install`] was called, else `sh` itself. The caller sets stdio, the process
/// group and `kill_on_drop`.
pub fn shell_command(
    command: &str,
    cwd: &Path,
    sandbox: Sandbox,
    agent: &str,
    visible: &[PathBuf],
) -> tokio::process::Command {
    if let Some(cmd) = RUNTIME
        .get()
        .and_then(|r| r.command_with(command, cwd, sandbox, agent, &[], visible))
    {
        return cmd;
    }
    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("-c").arg(command).current_dir(cwd);
    let secret: Vec<String> = ALWAYS_SECRET.iter().map(|v| v.to_string()).collect();
    let secret = RUNTIME.get().map_or(&secret, |r| &r.setup.secret_vars);
    let allowed = RUNTIME.get().map_or(&[][..], |r| &r.setup.env[..]);
    minimal_env(&mut cmd, allowed, secret);
    cmd
}

impl Runtime {
    /// What a command of an agent with `sandbox`, working in `workdir`, may change;
    /// `None` when it runs unconfined (`off`, or no sandbox on this kernel).
    fn confinement(&self, workdir: &Path, sandbox: Sandbox) -> Option<Confinement> {
        if self.sandbox.is_err() {
            return None;
        }
        let writable = match sandbox.mode {
            SandboxMode::Off => return None,
            SandboxMode::ReadOnly => Vec::new(),
            SandboxMode::WorkspaceWrite => {
                let mut w = vec![workdir.to_path_buf()];
                w.extend(self.setup.writable_roots.iter().cloned());
                w
            }
        };
        Some(Confinement {
            writable,
            network: sandbox.network,
        })
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
    fn spec_round_trips_as_one_argument() {
        let spec = LaunchSpec {
            command: "echo 'a b' \"$HOME\"\nls".into(),
            cwd: "/tmp/x y".into(),
            parent: 42,
            isolate: true,
            confine: Some(Confinement {
                writable: vec!["/tmp".into(), "/w d".into()],
                network: false,
            }),
            temp: Some("/d/tmp/a1".into()),
            hidden: vec!["/d".into()],
            visible: Vec::new(),
        };
        let arg = serde_json::to_string(&spec).unwrap();
        assert_eq!(serde_json::from_str::<LaunchSpec>(&arg).unwrap(), spec);
    }

    #[test]
    fn sandbox_modes_parse_and_print_their_names() {
        for name in SandboxMode::NAMES {
            assert_eq!(SandboxMode::parse(name).unwrap().as_str(), name);
            let json = serde_json::to_value(SandboxMode::parse(name).unwrap()).unwrap();
            assert_eq!(json, name);
        }
        assert_eq!(SandboxMode::parse("workspace_write"), None);
        let e = serde_json::from_value::<SandboxMode>(serde_json::json!("strict")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "sandbox must be \"workspace-write\" (write only in the work directory and temp directories), \"read-only\" or \"off\"; got \"strict\""
        );
    }

    #[test]
    fn commands_get_a_minimal_environment() {
        let secret = vec!["ANTHROPIC_API_KEY".to_string()];
        let listed = vec!["MY_API_KEY".to_string(), "ANTHROPIC_API_KEY".to_string()];
        for name in [
            "PATH", "HOME", "LANG", "LC_ALL", "TERM", "USER", "SHELL", "TMPDIR",
        ] {
            assert!(passed_on(name, &[], &secret), "{name}");
        }
        for name in [
            "OTEL_EXPORTER_OTLP_HEADERS",
            "MY_API_KEY",
            "GITHUB_TOKEN",
            "LC_TOKEN",
            "EDITOR",
        ] {
            assert!(!passed_on(name, &[], &secret), "{name}");
        }
        assert!(passed_on("MY_API_KEY", &listed, &secret));
        // A provider key never, even listed.
        assert!(!passed_on("ANTHROPIC_API_KEY", &listed, &secret));
    }

    #[test]
    fn confinement_follows_the_mode() {
        let runtime = Runtime {
            launcher: None,
            isolate: true,
            sandbox: Ok(()),
            setup: Setup {
                writable_roots: vec!["/cache".into()],
                ..Setup::default()
            },
        };
        let work = Path::new("/w");
        let sb = |mode, network| Sandbox { mode, network };
        let ww = runtime
            .confinement(work, sb(SandboxMode::WorkspaceWrite, false))
            .unwrap();
        assert_eq!(ww.writable, [PathBuf::from("/w"), PathBuf::from("/cache")]);
        assert!(!ww.network);
        let ro = runtime
            .confinement(work, sb(SandboxMode::ReadOnly, true))
            .unwrap();
        assert!(ro.writable.is_empty() && ro.network);
        assert_eq!(runtime.confinement(work, sb(SandboxMode::Off, false)), None);
        let missing = Runtime {
            sandbox: Err("no Landlock".into()),
            ..runtime
        };
        assert_eq!(
            missing.confinement(work, sb(SandboxMode::WorkspaceWrite, false)),
            None
        );
    }
}
