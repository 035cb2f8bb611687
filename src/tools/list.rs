//! `list_files`, plus the directory walk and glob filter it shares with `search_files`.
//!
//! Walks honour `.gitignore`, `.ignore` and git's exclude files even outside a git
//! repository, always skip `.git`, show hidden files otherwise, and never follow
//! symlinks, so a walk cannot leave the work directory. Output is sorted (depth-first,
//! by name) and capped.

use std::path::Path;

use globset::{GlobBuilder, GlobMatcher};
use ignore::WalkBuilder;
use schemars::JsonSchema;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::text::thousands;
use super::{MAX_OUTPUT_CHARS, ToolContext, ToolError, ToolOutcome, ToolResult, jail};

/// Most entries `list_files` shows.
pub const MAX_ENTRIES: usize = 1000;
/// Most entries a walk visits before giving up counting.
pub const MAX_SCANNED: usize = 200_000;

pub const DESCRIPTION: &str = "List files and directories under a directory of the work directory, \
recursively, skipping what .gitignore/.ignore exclude and the .git directory. Paths are printed relative \
to the work directory, sorted; directories end with `/`, symlinks show `-> target` and are not followed. \
Shows at most 1000 entries; narrow with `path` or `pattern` when there are more.";

/// Arguments of `list_files`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListFilesInput {
    /// Directory to list, relative to the work directory (default `.`, the whole work directory).
    #[serde(default)]
    pub path: Option<String>,
    /// Only list entries matching this glob. Without a `/` it matches the file name at any
    /// depth (`*.rs`, `*.{md,txt}`); with a `/` it matches the path relative to `path`
    /// (`src/**/*.rs`, `docs/*`).
    #[serde(default)]
    pub pattern: Option<String>,
}

/// A glob filter: by file name when the glob has no `/`, else by path relative to the
/// walk's start.
#[derive(Debug, Clone)]
pub struct GlobFilter {
    matcher: GlobMatcher,
    by_name: bool,
}

impl GlobFilter {
    pub fn new(pattern: &str) -> Result<Self, ToolError> {
        let pattern = pattern.strip_prefix("./").unwrap_or(pattern);
        let glob = GlobBuilder::new(pattern)
            .literal_separator(true)
            .build()
            .map_err(|e| {
                ToolError::Model(format!(
                    "invalid glob `{pattern}`: {e}. Examples: `*.rs`, `*.{{md,txt}}`, `src/**/*.ts`"
                ))
            })?;
        Ok(Self {
            matcher: glob.compile_matcher(),
            by_name: !pattern.contains('/'),
        })
    }

    /// `rel` is `/`-separated and relative to the walk's start.
    pub fn is_match(&self, rel: &str) -> bool {
        if self.by_name {
            let name = rel.rsplit('/').next().unwrap_or(rel);
            self.matcher.is_match(name)
        } else {
            self.matcher.is_match(rel)
        }
    }
}

/// A gitignore-aware walk from `start` that never follows symlinks and skips `.git`.
pub fn walker(start: &Path) -> ignore::Walk {
    WalkBuilder::new(start)
        .hidden(false)
        .require_git(false)
        .follow_links(false)
        .sort_by_file_name(|a, b| a.cmp(b))
        .filter_entry(|e| e.file_name() != ".git")
        .build()
}

/// Resolve a directory argument (default `.`) or say why it is not one.
pub async fn resolve_dir(
    ctx: &ToolContext,
    path: Option<&str>,
) -> Result<jail::Resolved, ToolError> {
    let path = jail::resolve(&ctx.root, path.unwrap_or("."))?;
    match tokio::fs::metadata(&path.abs).await {
        Ok(_) => Ok(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(ToolError::Model(format!(
            "`{}` does not exist. Use list_files on `.` to see what the work directory contains",
            path.rel
        ))),
        Err(e) => Err(ToolError::io("access", &path.rel, e)),
    }
}

/// `list_files`: the walk, filtered, sorted and capped.
pub async fn list_files(input: ListFilesInput, ctx: &ToolContext) -> ToolResult {
    let dir = resolve_dir(ctx, input.path.as_deref()).await?;
    if !dir.abs.is_dir() {
        return Err(ToolError::Model(format!(
            "`{}` is a file, not a directory. Use read_file to read it",
            dir.rel
        )));
    }
    let filter = input.pattern.as_deref().map(GlobFilter::new).transpose()?;
    let root = std::fs::canonicalize(&ctx.root).map_err(|e| ToolError::io("access", ".", e))?;
    let cancel = ctx.cancel.clone();
    let pattern = input.pattern.clone();
    tokio::task::spawn_blocking(move || {
        list_blocking(&root, &dir, filter.as_ref(), pattern, &cancel)
    })
    .await
    .map_err(|e| ToolError::Model(format!("list_files failed unexpectedly: {e}")))
}

fn list_blocking(
    root: &Path,
    dir: &jail::Resolved,
    filter: Option<&GlobFilter>,
    pattern: Option<String>,
    cancel: &CancellationToken,
) -> ToolOutcome {
    let mut out = String::new();
    let (mut shown, mut matched, mut scanned, mut unreadable) = (0usize, 0usize, 0usize, 0usize);
    let mut complete = true;
    for entry in walker(&dir.abs) {
        if cancel.is_cancelled() {
            return ToolOutcome::error("list_files was cancelled before it finished");
        }
        let entry = match entry {
            Ok(e) => e,
            Err(_) => {
                unreadable += 1;
                continue;
            }
        };
        if entry.depth() == 0 {
            continue;
        }
        scanned += 1;
        if scanned > MAX_SCANNED {
            complete = false;
            break;
        }
        if let Some(f) = filter {
            let below = jail::relative(&dir.abs, entry.path());
            if !f.is_match(&below) {
                continue;
            }
        }
        matched += 1;
        if shown >= MAX_ENTRIES || out.len() > MAX_OUTPUT_CHARS - 1000 {
            continue;
        }
        let rel = jail::relative(root, entry.path());
        let file_type = entry.file_type();
        if file_type.is_some_and(|t| t.is_dir()) {
            out.push_str(&format!("{rel}/\n"));
        } else if file_type.is_some_and(|t| t.is_symlink()) {
            // Name the target only when it is inside the jail: nothing outside the
            // work directory is revealed, not even a name.
            let target = std::fs::canonicalize(entry.path())
                .ok()
                .filter(|t| t.starts_with(root))
                .map(|t| jail::relative(root, &t))
                .unwrap_or_else(|| "(outside the work directory)".into());
            out.push_str(&format!("{rel} -> {target}\n"));
        } else {
            out.push_str(&format!("{rel}\n"));
        }
        shown += 1;
    }
    let where_ = if dir.rel == "." {
        "the work directory".to_string()
    } else {
        format!("`{}`", dir.rel)
    };
    if matched == 0 {
        let what = match &pattern {
            Some(p) => format!("No entries match `{p}` in {where_}."),
            None => format!("{where_} is empty (or everything in it is ignored)."),
        };
        return ToolOutcome::ok(what);
    }
    if shown < matched {
        out.push_str(&format!(
            "\n[Showing {} of {}{} entries. Narrow the listing with `path` or `pattern`.]",
            thousands(shown),
            if complete { "" } else { "more than " },
            thousands(matched)
        ));
    } else if !complete {
        out.push_str(&format!(
            "\n[Stopped after scanning {} entries. Narrow the listing with `path` or `pattern`.]",
            thousands(MAX_SCANNED)
        ));
    }
    if unreadable > 0 {
        out.push_str(&format!(
            "\n[{} unreadable entries were skipped.]",
            thousands(unreadable)
        ));
    }
    ToolOutcome::ok(out.trim_end().to_string())
}
