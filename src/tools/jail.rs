//! The path jail: turns a path the model gave into an absolute path inside the work
//! directory, or refuses it.
//!
//! A path is resolved lexically first (`.` dropped, `..` popped; climbing above the root
//! is refused), then the deepest existing ancestor is canonicalized, which follows every
//! symlink on the way; the result must still be inside the root. Components that do not
//! exist yet are appended unchanged, so `write_file` can create new files and
//! directories. Dangling or looping symlinks are refused: following one could create a
//! file wherever it points.
//!
//! The returned path is the canonical one, so I/O never re-walks a symlink the check did
//! not see (modulo races with concurrent changes to the tree, which the agent's own
//! `run_command` could cause anyway).

use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

/// A path inside the work directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// Absolute path, canonical up to its deepest existing ancestor.
    pub abs: PathBuf,
    /// The same path relative to the root, `/` separated; `.` for the root itself.
    pub rel: String,
}

/// Why a path was refused; the text is what the model reads.
#[derive(Debug, thiserror::Error)]
pub enum JailError {
    #[error(
        "`{path}` is outside the work directory: it climbs above it with `..`. \
         Use a path relative to the work directory ({root}), e.g. `src/main.rs`"
    )]
    Escapes { path: String, root: String },
    #[error(
        "`{path}` is an absolute path outside the work directory ({root}); nothing outside \
         it can be read or written. Use a path relative to the work directory, e.g. `src/main.rs`"
    )]
    AbsoluteOutside { path: String, root: String },
    #[error(
        "`{path}` goes through a symlink that points outside the work directory (to `{target}`); \
         it cannot be read or written. Use the files inside the work directory ({root})"
    )]
    SymlinkOutside {
        path: String,
        target: String,
        root: String,
    },
    #[error(
        "`{path}` goes through a symlink that cannot be resolved (it is dangling or loops); \
         refusing to follow it. Use a different path or replace the symlink"
    )]
    Unresolvable { path: String },
    #[error("the work directory {root} is not accessible: {source}")]
    Root {
        root: String,
        #[source]
        source: std::io::Error,
    },
}

/// Resolve `input` (relative to `root`, or absolute inside it) or refuse it.
pub fn resolve(root: &Path, input: &str) -> Result<Resolved, JailError> {
    let canon_root = std::fs::canonicalize(root).map_err(|source| JailError::Root {
        root: root.display().to_string(),
        source,
    })?;
    let shown_root = canon_root.display().to_string();
    let raw = Path::new(input);

    // The path's components below the root.
    let below_root: PathBuf = if raw.is_absolute() {
        let norm = normalize_absolute(raw);
        match norm
            .strip_prefix(&canon_root)
            .or_else(|_| norm.strip_prefix(root))
        {
            Ok(rest) => rest.to_path_buf(),
            Err(_) => {
                return Err(JailError::AbsoluteOutside {
                    path: input.to_string(),
                    root: shown_root,
                });
            }
        }
    } else {
        raw.to_path_buf()
    };

    let mut parts: Vec<OsString> = Vec::new();
    for comp in below_root.components() {
        match comp {
            Component::CurDir => {}
            Component::Normal(c) => parts.push(c.to_os_string()),
            Component::ParentDir => {
                if parts.pop().is_none() {
                    return Err(JailError::Escapes {
                        path: input.to_string(),
                        root: shown_root,
                    });
                }
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(JailError::AbsoluteOutside {
                    path: input.to_string(),
                    root: shown_root,
                });
            }
        }
    }

    // Canonicalize the deepest existing ancestor; keep the missing rest as is.
    let mut existing = canon_root.clone();
    existing.extend(&parts);
    let mut missing: Vec<OsString> = Vec::new();
    let canon = loop {
        match std::fs::canonicalize(&existing) {
            Ok(c) => break c,
            Err(_) if existing == canon_root => {
                // Only reachable if the root vanished since the check above.
                return Err(JailError::Unresolvable {
                    path: input.to_string(),
                });
            }
            Err(_) => {
                let is_link = std::fs::symlink_metadata(&existing)
                    .map(|m| m.file_type().is_symlink())
                    .unwrap_or(false);
                if is_link {
                    return Err(JailError::Unresolvable {
                        path: input.to_string(),
                    });
                }
                match existing.file_name() {
                    Some(name) => missing.push(name.to_os_string()),
                    None => {
                        return Err(JailError::Unresolvable {
                            path: input.to_string(),
                        });
                    }
                }
                existing.pop();
            }
        }
    };
    if !canon.starts_with(&canon_root) {
        return Err(JailError::SymlinkOutside {
            path: input.to_string(),
            target: canon.display().to_string(),
            root: shown_root,
        });
    }
    let mut abs = canon;
    abs.extend(missing.iter().rev());
    let rel = relative(&canon_root, &abs);
    Ok(Resolved { abs, rel })
}

/// `abs` relative to `root`, `/` separated; `.` for the root itself. `abs` must be under
/// `root` (otherwise the full path is returned).
pub fn relative(root: &Path, abs: &Path) -> String {
    let rest = abs.strip_prefix(root).unwrap_or(abs);
    let parts: Vec<String> = rest
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.is_empty() {
        ".".to_string()
    } else {
        parts.join("/")
    }
}

/// Lexically normalize an absolute path: drop `.`, pop on `..` (never above `/`).
fn normalize_absolute(path: &Path) -> PathBuf {
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn setup() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::create_dir_all(root.join("src")).unwrap();
        std::fs::write(root.join("src/main.rs"), "fn main() {}\n").unwrap();
        (dir, root)
    }

    #[test]
    fn plain_relative_paths_resolve_inside() {
        let (_d, root) = setup();
        let r = resolve(&root, "src/main.rs").unwrap();
        assert_eq!(r.abs, root.join("src/main.rs"));
        assert_eq!(r.rel, "src/main.rs");
        assert_eq!(resolve(&root, ".").unwrap().rel, ".");
        assert_eq!(resolve(&root, "").unwrap().abs, root);
        assert_eq!(
            resolve(&root, "./src/../src/main.rs").unwrap().rel,
            "src/main.rs"
        );
        // Not-yet-existing nested paths resolve too (for write_file).
        let r = resolve(&root, "new/dir/file.txt").unwrap();
        assert_eq!(r.abs, root.join("new/dir/file.txt"));
        assert_eq!(r.rel, "new/dir/file.txt");
    }

    #[test]
    fn dot_dot_escapes_are_refused() {
        let (_d, root) = setup();
        for p in ["../x", "..", "src/../../x", "a/b/../../../etc/passwd"] {
            let e = resolve(&root, p).unwrap_err();
            assert!(matches!(e, JailError::Escapes { .. }), "{p}: {e}");
            assert!(e.to_string().contains("relative to the work directory"));
        }
    }

    #[test]
    fn absolute_paths_only_inside_root() {
        let (_d, root) = setup();
        let e = resolve(&root, "/etc/passwd").unwrap_err();
        assert!(matches!(e, JailError::AbsoluteOutside { .. }), "{e}");
        let inside = root.join("src/main.rs");
        let r = resolve(&root, inside.to_str().unwrap()).unwrap();
        assert_eq!(r.rel, "src/main.rs");
        let sneaky = format!("{}/../etc", root.display());
        assert!(resolve(&root, &sneaky).is_err());
    }

    #[test]
    fn symlinks_out_of_root_are_refused() {
        let (_d, root) = setup();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "s").unwrap();
        symlink(outside.path().join("secret"), root.join("file_link")).unwrap();
        symlink(outside.path(), root.join("dir_link")).unwrap();
        for p in [
            "file_link",
            "dir_link",
            "dir_link/secret",
            "dir_link/new/file",
        ] {
            let e = resolve(&root, p).unwrap_err();
            assert!(matches!(e, JailError::SymlinkOutside { .. }), "{p}: {e}");
        }
    }

    #[test]
    fn symlinks_inside_root_resolve_to_their_target() {
        let (_d, root) = setup();
        symlink(root.join("src"), root.join("code")).unwrap();
        let r = resolve(&root, "code/main.rs").unwrap();
        assert_eq!(r.abs, root.join("src/main.rs"));
        assert_eq!(r.rel, "src/main.rs");
    }

    #[test]
    fn dangling_and_looping_symlinks_are_refused() {
        let (_d, root) = setup();
        symlink("/nonexistent/flotilla/target", root.join("dangling")).unwrap();
        symlink(root.join("loop_b"), root.join("loop_a")).unwrap();
        symlink(root.join("loop_a"), root.join("loop_b")).unwrap();
        for p in ["dangling", "dangling/x", "loop_a"] {
            let e = resolve(&root, p).unwrap_err();
            assert!(matches!(e, JailError::Unresolvable { .. }), "{p}: {e}");
        }
    }
}
