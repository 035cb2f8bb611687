//! `list_files`, plus the directory walk and glob filter it shares with `search_files`.
//!
//! Walks ([`super::walk`]) honour `.gitignore`, `.ignore` and git's exclude files even
//! outside a git repository, always skip `.git`, show hidden files otherwise, and never
//! follow symlinks; they run on directory handles from the [`super::jail`], so a walk
//! cannot leave the work directory even when a directory is swapped mid-walk. Output is
//! sorted (depth-first, by name) and capped.

use std::path::Path;

use globset::{GlobBuilder, GlobMatcher};
use schemars::JsonSchema;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::jail::{self, Access, Jail, JailError, Opened};
use super::text::thousands;
use super::walk::{Flow, Kind, Walk};
use super::{MAX_OUTPUT_CHARS, ToolContext, ToolError, ToolOutcome, ToolResult};

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

/// Open a directory (or, for `search_files`, a file) argument, default `.`, through the
/// jail (blocking).
pub fn open_start(root: &Path, path: Option<&str>) -> Result<(Jail, Opened), ToolError> {
    let jail = Jail::new(root)?;
    match jail.open(path.unwrap_or("."), Access::Read) {
        Ok(opened) => Ok((jail, opened)),
        Err(JailError::Missing { rel, .. }) => Err(ToolError::Model(format!(
            "`{rel}` does not exist. Use list_files on `.` to see what the work directory contains"
        ))),
        Err(e) => Err(e.into()),
    }
}

/// `list_files`: the walk, filtered, sorted and capped.
pub async fn list_files(input: ListFilesInput, ctx: &ToolContext) -> ToolResult {
    let filter = input.pattern.as_deref().map(GlobFilter::new).transpose()?;
    let root = ctx.root.clone();
    let cancel = ctx.cancel.clone();
    super::fs::blocking("list_files", move || {
        let (jail, dir) = open_start(&root, input.path.as_deref())?;
        if !dir.is_dir() {
            return Err(ToolError::Model(format!(
                "`{}` is a {}, not a directory. Use read_file to read a file",
                dir.rel,
                if dir.file_type() == rustix::fs::FileType::RegularFile {
                    "file"
                } else {
                    jail::kind_name(dir.file_type())
                }
            )));
        }
        Ok(list_blocking(
            &jail,
            &dir,
            filter.as_ref(),
            input.pattern,
            &cancel,
        ))
    })
    .await
}

fn list_blocking(
    jail: &Jail,
    dir: &Opened,
    filter: Option<&GlobFilter>,
    pattern: Option<String>,
    cancel: &CancellationToken,
) -> ToolOutcome {
    let mut out = String::new();
    let (mut shown, mut matched, mut scanned) = (0usize, 0usize, 0usize);
    let mut complete = true;
    let mut walk = Walk::new(jail.root(), dir);
    walk.run(dir, &mut |entry| {
        if cancel.is_cancelled() {
            return Flow::Stop;
        }
        scanned += 1;
        if scanned > MAX_SCANNED {
            complete = false;
            return Flow::Stop;
        }
        if let Some(f) = filter
            && !f.is_match(entry.below)
        {
            return Flow::Continue;
        }
        matched += 1;
        if shown >= MAX_ENTRIES || out.len() > MAX_OUTPUT_CHARS - 1000 {
            return Flow::Continue;
        }
        let rel = entry.rel;
        match entry.kind {
            Kind::Dir => out.push_str(&format!("{rel}/\n")),
            Kind::Symlink => {
                // Name the target only when it is inside the jail: nothing outside the
                // work directory is revealed, not even a name.
                let target = match jail.target_of(rel) {
                    Ok(t) => t,
                    Err(JailError::Unresolvable { .. } | JailError::Missing { .. }) => {
                        "(broken link)".into()
                    }
                    Err(_) => "(outside the work directory)".into(),
                };
                out.push_str(&format!("{rel} -> {target}\n"));
            }
            _ => out.push_str(&format!("{rel}\n")),
        }
        shown += 1;
        Flow::Continue
    });
    if cancel.is_cancelled() {
        return ToolOutcome::error("list_files was cancelled before it finished");
    }
    let unreadable = walk.unreadable;
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
