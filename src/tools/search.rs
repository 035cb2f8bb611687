//! `search_files`: a regex search over the text files under a path, line by line,
//! gitignore-aware, skipping binary and very large files, never following symlinks.
//! Output is `path:line: text`, capped in matches and characters.

use std::path::Path;

use regex::{Regex, RegexBuilder};
use schemars::JsonSchema;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::list::{GlobFilter, MAX_SCANNED, resolve_dir, walker};
use super::text::{cut_line, looks_binary, plural, thousands};
use super::{MAX_OUTPUT_CHARS, ToolContext, ToolError, ToolOutcome, ToolResult, jail};

/// Most matching lines shown.
pub const MAX_MATCHES: usize = 200;
/// Longest matching line shown in full.
pub const MAX_MATCH_LINE_CHARS: usize = 300;
/// Files larger than this are skipped.
pub const MAX_SEARCH_FILE_BYTES: u64 = 10 * 1024 * 1024;

pub const DESCRIPTION: &str = "Search the text files under a path for lines matching a regular expression \
(Rust regex syntax, case-sensitive; prefix `(?i)` to ignore case). Matches line by line. Skips what \
.gitignore/.ignore exclude, the .git directory, binary files and files over 10 MB. Prints \
`path:line: text`, paths relative to the work directory, at most 200 matching lines (each cut at 300 \
characters); narrow with `path` or `glob` when there are more.";

/// Arguments of `search_files`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchFilesInput {
    /// Regular expression to look for in each line, e.g. `fn main`, `TODO|FIXME`, `(?i)error`.
    pub pattern: String,
    /// File or directory to search, relative to the work directory (default `.`).
    #[serde(default)]
    pub path: Option<String>,
    /// Only search files matching this glob. Without a `/` it matches the file name
    /// (`*.rs`, `*.{ts,tsx}`); with a `/` it matches the path relative to `path` (`src/**/*.rs`).
    #[serde(default)]
    pub glob: Option<String>,
}

/// `search_files`: compile, walk, match, cap.
pub async fn search_files(input: SearchFilesInput, ctx: &ToolContext) -> ToolResult {
    let regex = RegexBuilder::new(&input.pattern)
        .size_limit(10 * 1024 * 1024)
        .build()
        .map_err(|e| {
            ToolError::Model(format!(
                "invalid regex `{}`: {e}\nEscape special characters such as `(`, `[`, `{{`, `.` \
                 with `\\` to match them literally",
                input.pattern
            ))
        })?;
    let filter = input.glob.as_deref().map(GlobFilter::new).transpose()?;
    let start = resolve_dir(ctx, input.path.as_deref()).await?;
    let root = std::fs::canonicalize(&ctx.root).map_err(|e| ToolError::io("access", ".", e))?;
    let cancel = ctx.cancel.clone();
    tokio::task::spawn_blocking(move || {
        search_blocking(&root, &start, &regex, filter.as_ref(), &cancel)
    })
    .await
    .map_err(|e| ToolError::Model(format!("search_files failed unexpectedly: {e}")))
}

#[derive(Default)]
struct Tally {
    out: String,
    shown: usize,
    matches: usize,
    files_with_matches: usize,
    files_searched: usize,
    skipped_large: usize,
    files_read: Vec<String>,
}

fn search_blocking(
    root: &Path,
    start: &jail::Resolved,
    regex: &Regex,
    filter: Option<&GlobFilter>,
    cancel: &CancellationToken,
) -> ToolOutcome {
    let mut t = Tally::default();
    let mut scanned = 0usize;
    let mut complete = true;
    for entry in walker(&start.abs) {
        if cancel.is_cancelled() {
            return ToolOutcome::error("search_files was cancelled before it finished");
        }
        let Ok(entry) = entry else { continue };
        scanned += 1;
        if scanned > MAX_SCANNED {
            complete = false;
            break;
        }
        // Only regular files: symlinks are never followed.
        if !entry.file_type().is_some_and(|ft| ft.is_file()) {
            continue;
        }
        if let Some(f) = filter {
            let below = if entry.depth() == 0 {
                entry.file_name().to_string_lossy().into_owned()
            } else {
                jail::relative(&start.abs, entry.path())
            };
            if !f.is_match(&below) {
                continue;
            }
        }
        if entry
            .metadata()
            .is_ok_and(|m| m.len() > MAX_SEARCH_FILE_BYTES)
        {
            t.skipped_large += 1;
            continue;
        }
        let Ok(bytes) = std::fs::read(entry.path()) else {
            continue;
        };
        if looks_binary(&bytes) {
            continue;
        }
        t.files_searched += 1;
        let rel = jail::relative(root, entry.path());
        search_file(&rel, &String::from_utf8_lossy(&bytes), regex, &mut t);
    }
    finish(t, start, regex.as_str(), complete)
}

fn search_file(rel: &str, text: &str, regex: &Regex, t: &mut Tally) {
    let mut any = false;
    let mut shown_here = false;
    for (i, line) in text.lines().enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if !regex.is_match(line) {
            continue;
        }
        any = true;
        t.matches += 1;
        if t.shown >= MAX_MATCHES || t.out.len() > MAX_OUTPUT_CHARS - 1500 {
            continue;
        }
        let line = line.trim_end();
        t.out.push_str(&format!(
            "{rel}:{}: {}\n",
            i + 1,
            cut_line(line, MAX_MATCH_LINE_CHARS)
        ));
        t.shown += 1;
        shown_here = true;
    }
    if any {
        t.files_with_matches += 1;
    }
    if shown_here {
        t.files_read.push(rel.to_string());
    }
}

fn finish(mut t: Tally, start: &jail::Resolved, pattern: &str, complete: bool) -> ToolOutcome {
    let where_ = if start.rel == "." {
        "the work directory".to_string()
    } else {
        format!("`{}`", start.rel)
    };
    let mut notes = Vec::new();
    if t.matches == 0 {
        notes.push(format!(
            "No matches for `{pattern}` in {where_} ({} searched).",
            plural(t.files_searched, "file")
        ));
    } else if t.shown < t.matches {
        notes.push(format!(
            "[Showing {} of {}{} matching lines in {}. Narrow the search with `path`, `glob` \
             or a more specific pattern.]",
            thousands(t.shown),
            if complete { "" } else { "more than " },
            thousands(t.matches),
            plural(t.files_with_matches, "file")
        ));
    }
    if !complete {
        notes.push(format!(
            "[Stopped after scanning {} entries; narrow the search with `path` or `glob`.]",
            thousands(MAX_SCANNED)
        ));
    }
    if t.skipped_large > 0 {
        notes.push(format!(
            "[Skipped {} over 10 MB.]",
            plural(t.skipped_large, "file")
        ));
    }
    if !notes.is_empty() {
        if !t.out.is_empty() {
            t.out.push('\n');
        }
        t.out.push_str(&notes.join("\n"));
    }
    ToolOutcome {
        content: t.out.trim_end().to_string(),
        files_read: t.files_read,
        ..ToolOutcome::default()
    }
}
