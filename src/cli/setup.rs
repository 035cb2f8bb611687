//! Building a [`CliProvider`] from the config and the environment, finding its program
//! and checking its version (once), and whether a CLI is ready to be the default model
//! on a machine without API keys.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{CliKind, CliProvider};

/// Variables every CLI gets from flotilla's environment when set (besides its own).
const BASE_VARS: [&str; 10] = [
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LC_ALL",
    "TZ",
    "TERM",
    "SHELL",
    "NODE_OPTIONS",
];

/// Claude Code's switch for its non-essential traffic (telemetry, update checks).
const QUIET: &str = "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC";

/// What a `[providers.NAME]` table says about a CLI provider (the config module reads
/// the file; this module does not depend on it).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct CliTable<'a> {
    pub command: Option<&'a str>,
    pub args: &'a [String],
    pub env: Option<&'a std::collections::BTreeMap<String, String>>,
    pub mcp_config: Option<&'a Path>,
    /// A model-API key the table sets (`base_url`, `headers`, …), refused for a CLI.
    pub api_key: Option<&'static str>,
}

/// The provider `name` of `kind`, from its `[providers.NAME]` table (maybe empty).
pub(crate) fn build(
    name: &str,
    kind: CliKind,
    table: &CliTable<'_>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<CliProvider, String> {
    if let Some(key) = table.api_key {
        return Err(format!(
            "[providers.{name}] {key} does not apply to kind = \"{}\": the CLI reaches its \
             provider itself (set its own variables under env, e.g. ANTHROPIC_BASE_URL)",
            kind.name()
        ));
    }
    if kind != CliKind::ClaudeCode && table.mcp_config.is_some() {
        return Err(format!(
            "[providers.{name}] mcp_config applies to kind = \"claude-code\" only (codex: \
             configure MCP servers in its config.toml, or pass -c overrides in args)"
        ));
    }
    let command = table
        .command
        .map_or_else(|| kind.default_command().to_string(), String::from);
    if command.trim().is_empty() {
        return Err(format!("[providers.{name}] command is empty"));
    }
    let mut vars: Vec<(String, String)> = Vec::new();
    let names = BASE_VARS.iter().chain(kind.own_vars());
    for var in names {
        if let Some(value) = env(var) {
            vars.push((var.to_string(), value));
        }
    }
    for (k, v) in table.env.into_iter().flatten() {
        vars.retain(|(name, _)| name != k);
        vars.push((k.clone(), v.clone()));
    }
    let has = |vars: &[(String, String)], var: &str| vars.iter().any(|(k, _)| k == var);
    let state_dir = {
        let lookup = |var: &str| vars.iter().find(|(k, _)| k == var).map(|(_, v)| v.clone());
        kind.state_dir(&lookup)
    };
    // Said explicitly, so the CLI keeps all its state (Claude Code's `.claude.json`
    // too) in the one directory the sandbox lets it write.
    if let Some(dir) = &state_dir
        && !has(&vars, kind.state_var())
    {
        let value = kind.state_var_value(dir);
        vars.push((kind.state_var().to_string(), value.display().to_string()));
    }
    // A fleet's sessions need no auto-update checks or telemetry: only model calls
    // leave the machine (a provider's env may say otherwise).
    if kind == CliKind::ClaudeCode && !has(&vars, QUIET) {
        vars.push((QUIET.to_string(), "1".to_string()));
    }
    Ok(CliProvider {
        name: name.to_string(),
        kind,
        command,
        args: table.args.to_vec(),
        env: vars,
        state_dir,
        mcp_config: table.mcp_config.map(Path::to_path_buf),
        checked: Default::default(),
    })
}

impl CliProvider {
    /// Where flotilla leaves files for agent `agent`'s sessions (prompt, schema).
    pub fn handover_dir(&self, agent: &str) -> Option<PathBuf> {
        let safe: String = agent
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        Some(self.state_dir.as_ref()?.join("flotilla").join(safe))
    }

    /// The values of its credentials, for redaction.
    pub fn secrets(&self) -> Vec<String> {
        self.env
            .iter()
            .filter(|(k, _)| self.kind.secret_vars().contains(&k.as_str()))
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// The program and its version, or why this CLI cannot be used (missing, too old,
    /// too new). Found and checked once; the first call runs `--version` (blocking,
    /// at most 10 s).
    pub fn check(&self) -> Result<(PathBuf, String), String> {
        self.checked
            .get_or_init(|| {
                let program = self.find().ok_or_else(|| {
                    format!(
                        "the {} CLI `{}` was not found on PATH: {}",
                        self.kind.name(),
                        self.command,
                        self.kind.install_hint()
                    )
                })?;
                // Node CLIs take from 0.3 s to seconds (cold) to say their version: off
                // the async worker's hands, so other calls go on meanwhile.
                let run = || version_of(&program, &self.env);
                let version = match tokio::runtime::Handle::try_current() {
                    Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                        tokio::task::block_in_place(run)
                    }
                    _ => run(),
                }?;
                self.supports(&version)?;
                Ok((program, version))
            })
            .clone()
    }

    /// Its program: a path as given, or the first match on its `PATH`.
    fn find(&self) -> Option<PathBuf> {
        let command = Path::new(&self.command);
        if command.components().count() > 1 {
            return command.is_file().then(|| command.to_path_buf());
        }
        let path = self.env.iter().find(|(k, _)| k == "PATH")?.1.clone();
        std::env::split_paths(&path)
            .map(|dir| dir.join(command))
            .find(|p| is_executable(p))
    }

    /// Refuses a version outside [`CliKind::supported`].
    fn supports(&self, version: &str) -> Result<(), String> {
        let (low, high) = self.kind.supported();
        let parsed = parse_version(version).ok_or_else(|| {
            format!(
                "cannot read the version of the {} CLI from {version:?}",
                self.kind.name()
            )
        })?;
        if parsed < low || parsed >= high {
            return Err(format!(
                "the {} CLI is version {}.{}.{}; flotilla supports {}.{}.{} up to (not \
                 including) {}.{}.{}: install a supported version ({})",
                self.kind.name(),
                parsed.0,
                parsed.1,
                parsed.2,
                low.0,
                low.1,
                low.2,
                high.0,
                high.1,
                high.2,
                self.kind.install_hint()
            ));
        }
        Ok(())
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// `program --version`, its first line.
fn version_of(program: &Path, env: &[(String, String)]) -> Result<String, String> {
    let mut child = std::process::Command::new(program)
        .arg("--version")
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run `{} --version`: {e}", program.display()))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "`{} --version` did not answer within 10 s",
                    program.display()
                ));
            }
        }
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("`{} --version`: {e}", program.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().next().unwrap_or_default().trim().to_string();
    if !out.status.success() || line.is_empty() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(format!(
            "`{} --version` failed: {}",
            program.display(),
            crate::text::short(err.trim(), 300)
        ));
    }
    Ok(line)
}

/// The first `a.b.c` in `text` ("2.1.328 (Claude Code)", "codex-cli 0.169.0").
fn parse_version(text: &str) -> Option<(u64, u64, u64)> {
    text.split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .find_map(|word| {
            let mut parts = word.split('.').map(|p| p.parse::<u64>().ok());
            Some((parts.next()??, parts.next()??, parts.next()??))
        })
}

/// A CLI that can be the default model on a machine without API keys: installed
/// (on `PATH`) and logged in (its credentials file in its state directory). Claude
/// Code first, then Codex, then Gemini CLI.
pub(crate) fn detect_default(providers: &[&CliProvider]) -> Option<String> {
    providers.iter().find_map(|p| {
        let logged_in = p.state_dir.as_ref().is_some_and(|dir| {
            let file = match p.kind {
                CliKind::ClaudeCode => ".credentials.json",
                CliKind::Codex => "auth.json",
                CliKind::Gemini => "oauth_creds.json",
            };
            dir.join(file).is_file()
        });
        (logged_in && p.find().is_some()).then(|| p.name.clone())
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_read_from_what_the_clis_print() {
        assert_eq!(parse_version("2.1.328 (Claude Code)"), Some((2, 1, 328)));
        assert_eq!(parse_version("codex-cli 0.169.0"), Some((0, 169, 0)));
        assert_eq!(parse_version("nothing here"), None);
    }

    #[test]
    fn api_settings_are_refused_for_a_cli() {
        let table = CliTable {
            api_key: Some("base_url"),
            ..Default::default()
        };
        let err = build("c", CliKind::Codex, &table, &|_| None).unwrap_err();
        assert!(err.contains("base_url does not apply"), "{err}");
    }

    #[test]
    fn a_cli_gets_only_its_own_credentials() {
        let env = |k: &str| {
            matches!(
                k,
                "PATH" | "HOME" | "ANTHROPIC_API_KEY" | "OPENAI_API_KEY" | "FLOTILLA_TOKEN"
            )
            .then(|| format!("v-{k}"))
        };
        let p = build(
            "claude-code",
            CliKind::ClaudeCode,
            &Default::default(),
            &env,
        )
        .unwrap();
        let names: Vec<&str> = p.env.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "PATH",
                "HOME",
                "ANTHROPIC_API_KEY",
                "CLAUDE_CONFIG_DIR",
                QUIET
            ]
        );
        assert_eq!(p.secrets(), ["v-ANTHROPIC_API_KEY"]);
        assert_eq!(p.state_dir, Some(PathBuf::from("v-HOME/.claude")));
    }
}
