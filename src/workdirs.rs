//! Where agents may work: every work directory must lie under an allowed root — the
//! server's working directory (or `--workdir`) and the system temp directory, plus the
//! config's `[limits] workdir_roots`. A work directory is checked before it is created
//! (through its deepest existing ancestor, symlinks resolved) and again after, so
//! neither `..` nor a symlink can place an agent elsewhere.

use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

/// Check `dir` (absolute) against `roots` (canonical), create it (with `create`) and
/// return it canonical; the error lists the allowed roots. Blocking.
pub fn prepare(dir: &Path, roots: &[PathBuf], create: bool) -> Result<PathBuf, String> {
    let refuse = |shown: &Path| {
        format!(
            "workdir `{}` is outside the directories agents may work in: {}. Use a directory \
             under one of them, or add a root to `[limits] workdir_roots` in the server's \
             config file",
            shown.display(),
            roots
                .iter()
                .map(|r| r.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let lexical = normalize(dir);
    let planned = canonical_prefix(&lexical)
        .map_err(|e| format!("cannot use workdir `{}`: {e}", dir.display()))?;
    if !under(&planned, roots) {
        return Err(refuse(dir));
    }
    let made = if create {
        std::fs::create_dir_all(&planned)
    } else {
        Ok(())
    };
    made.and_then(|_| planned.canonicalize())
        .map_err(|e| {
            format!(
                "cannot use workdir `{}`: {e}; pass an existing directory or one flotilla may create",
                dir.display()
            )
        })
        .and_then(|made| {
            if under(&made, roots) {
                Ok(made)
            } else {
                Err(refuse(dir))
            }
        })
}

/// Canonicalize the configured roots: relative ones are taken from `base` (the server's
/// working directory); each must exist.
pub fn load_roots(configured: &[PathBuf], base: &Path) -> Result<Vec<PathBuf>, String> {
    configured
        .iter()
        .map(|root| {
            base.join(root).canonicalize().map_err(|e| {
                format!(
                    "[limits] workdir_roots: `{}` cannot be used: {e}",
                    root.display()
                )
            })
        })
        .collect()
}

fn under(path: &Path, roots: &[PathBuf]) -> bool {
    roots.iter().any(|root| path.starts_with(root))
}

/// Lexically normalize a path: `.` dropped, `..` popped (never above `/`).
pub(crate) fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for comp in path.components() {
        match comp {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// The deepest existing ancestor canonicalized (symlinks resolved), plus the rest.
fn canonical_prefix(path: &Path) -> std::io::Result<PathBuf> {
    let mut existing = path.to_path_buf();
    let mut missing: Vec<OsString> = Vec::new();
    loop {
        match existing.canonicalize() {
            Ok(mut canon) => {
                canon.extend(missing.iter().rev());
                return Ok(canon);
            }
            Err(e) => match existing.file_name() {
                Some(name) => {
                    missing.push(name.to_os_string());
                    existing.pop();
                }
                None => return Err(e),
            },
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn only_directories_under_a_root_are_allowed() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().canonicalize().unwrap();
        let root = base.join("project");
        std::fs::create_dir_all(&root).unwrap();
        let roots = vec![root.clone()];
        assert_eq!(prepare(&root, &roots, true).unwrap(), root);
        let made = prepare(&root.join("a/b"), &roots, true).unwrap();
        assert_eq!(made, root.join("a/b"));
        assert!(made.is_dir());
        for bad in [Path::new("/"), &base, &root.join("../elsewhere")] {
            let e = prepare(bad, &roots, true).unwrap_err();
            assert!(e.contains(&root.display().to_string()), "{e}");
            assert!(e.contains("workdir_roots"), "{e}");
        }
        assert!(!base.join("elsewhere").exists());
        // A symlink inside a root that leads out does not count as inside.
        std::os::unix::fs::symlink(&base, root.join("up")).unwrap();
        assert!(prepare(&root.join("up/x"), &roots, true).is_err());
        assert!(!base.join("x").exists());
    }

    #[test]
    fn configured_roots_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().canonicalize().unwrap();
        std::fs::create_dir_all(base.join("r")).unwrap();
        let roots = load_roots(&["r".into(), base.clone()], &base).unwrap();
        assert_eq!(roots, [base.join("r"), base.clone()]);
        let e = load_roots(&["nope".into()], &base).unwrap_err();
        assert!(e.contains("nope"), "{e}");
    }
}
