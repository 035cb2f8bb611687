//! The process of a coding-agent CLI session (Claude Code, Codex) an agent runs in:
//! through the same launcher as agents' commands, in the same namespaces and under
//! the same Landlock rules, with three differences — it may reach the network (its
//! provider is there), its own state directory is writable too, and its environment
//! is exactly what its provider hands it (never flotilla's own keys or token).

use std::path::{Path, PathBuf};

use super::{RUNTIME, Sandbox, SandboxMode};

/// What a session's process is.
#[derive(Debug, Clone)]
pub struct SessionLaunch<'a> {
    /// The program and its arguments.
    pub argv: &'a [String],
    /// The agent's work directory (or worktree).
    pub cwd: &'a Path,
    /// The agent's sandbox mode: what the session may write besides `writable`.
    pub mode: SandboxMode,
    /// Also writable: the CLI's state directory.
    pub writable: &'a [PathBuf],
    /// The whole environment.
    pub env: &'a [(String, String)],
    /// The agent's id (its private temp directory).
    pub agent: &'a str,
    /// A file standing in for its standard input (the launcher gives commands none).
    pub stdin: &'a Path,
}

/// The command that starts `launch`: through the launcher once [`super::install`]
/// ran, else the program itself; its standard input is `launch.stdin`. The caller
/// sets stdout, stderr, the process group and `kill_on_drop`.
pub fn session_command(launch: &SessionLaunch<'_>) -> std::io::Result<tokio::process::Command> {
    let sandbox = Sandbox {
        mode: launch.mode,
        network: true,
    };
    let visible = under_temp(launch);
    let launched = RUNTIME.get().and_then(|r| {
        r.command_with(
            &format!(
                "{} < {}",
                shell_line(launch.argv),
                quote(&launch.stdin.display().to_string())
            ),
            launch.cwd,
            sandbox,
            launch.agent,
            launch.writable,
            &visible,
        )
    });
    let mut cmd = match launched {
        Some(mut cmd) => {
            cmd.stdin(std::process::Stdio::null());
            cmd
        }
        None => {
            let (program, args) = launch
                .argv
                .split_first()
                .map_or(("", &[][..]), |(p, a)| (p.as_str(), a));
            let mut cmd = tokio::process::Command::new(program);
            cmd.args(args)
                .current_dir(launch.cwd)
                .stdin(std::fs::File::open(launch.stdin)?);
            cmd
        }
    };
    // The launcher's own variables (TMPDIR) are kept; everything else is replaced.
    let tmpdir = cmd
        .as_std()
        .get_envs()
        .find(|(k, _)| *k == "TMPDIR")
        .and_then(|(_, v)| v.map(ToOwned::to_owned));
    cmd.env_clear();
    for (name, value) in launch.env {
        cmd.env(name, value);
    }
    if let Some(tmpdir) = tmpdir {
        cmd.env("TMPDIR", tmpdir);
    }
    Ok(cmd)
}

/// The directories under `/tmp` or `/var/tmp` that the session's program and `PATH`
/// need (a CLI installed in a checkout under `/tmp`): the confined session's private
/// temp covers those places, so they are kept visible, read-only. Each is the first
/// directory below the temp root, so a Node script finds its `node_modules` too.
fn under_temp(launch: &SessionLaunch<'_>) -> Vec<PathBuf> {
    let path = launch
        .env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_str())
        .unwrap_or_default();
    let places = launch
        .argv
        .first()
        .map(PathBuf::from)
        .into_iter()
        .chain(std::env::split_paths(path));
    let mut out: Vec<PathBuf> = Vec::new();
    // Both the path as given (a symlink under /tmp) and where it leads.
    let places = places.flat_map(|p| {
        let real = p.canonicalize().ok();
        [Some(p), real]
    });
    for real in places.flatten() {
        for root in super::TEMP_ROOTS {
            if let Ok(rest) = real.strip_prefix(root)
                && let Some(first) = rest.components().next()
            {
                let dir = Path::new(root).join(first);
                if dir.is_dir() && !out.contains(&dir) {
                    out.push(dir);
                }
            }
        }
    }
    out
}

/// `exec` of `argv` as one `sh -c` line, every word quoted.
fn shell_line(argv: &[String]) -> String {
    let mut line = String::from("exec");
    for word in argv {
        line.push(' ');
        line.push_str(&quote(word));
    }
    line
}

/// `word` quoted for `sh`.
fn quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_quoted_for_sh() {
        let argv = vec!["claude".to_string(), "it's \"x\" $HOME".to_string()];
        assert_eq!(shell_line(&argv), r#"exec 'claude' 'it'\''s "x" $HOME'"#);
    }
}
