//! `search_files`: a regex search over the text files under a path, line by line,
//! gitignore-aware, skipping binary and very large files, never following symlinks;
//! every file is opened from a directory handle of the walk (see [`super::walk`]).
//! Output is `path:line: text`, capped in matches and characters.

use std::os::fd::OwnedFd;

use regex::{Regex, RegexBuilder};
use schemars::JsonSchema;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use rustix::fs::{FileType, Mode, OFlags};

use super::jail::{self, Jail, Opened};
use super::list::{GlobFilter, MAX_SCANNED, open_start};
use super::text::{cut_line, looks_binary, plural, thousands};
use super::walk::{Flow, Kind, Walk};
use super::{MAX_OUTPUT_CHARS, ToolContext, ToolError, ToolOutcome, ToolResult};

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
    let root = ctx.root.clone();
    let cancel = ctx.cancel.clone();
    super::fs::blocking("search_files", move || {
        let (jail, start) = open_start(&root, input.path.as_deref())?;
        Ok(search_blocking(
            &jail,
            &start,
            &regex,
            filter.as_ref(),
            &cancel,
        ))
    })
    .await
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

/// Read a regular file `name` in `dir` (never through a symlink) for searching; `Err`
/// when it is over the size limit, `Ok(None)` when it is not a readable regular file.
fn load(dir: &OwnedFd, name: &std::ffi::OsStr) -> Result<Option<Vec<u8>>, ()> {
    let flags =
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
    let Ok(fd) = rustix::fs::openat(dir, name, flags, Mode::empty()) else {
        return Ok(None);
    };
    let Ok(stat) = rustix::fs::fstat(&fd) else {
        return Ok(None);
    };
    if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
        return Ok(None);
    }
    if u64::try_from(stat.st_size).unwrap_or(u64::MAX) > MAX_SEARCH_FILE_BYTES {
        return Err(());
    }
    Ok(jail::read_all(&fd).ok())
}

fn search_blocking(
    jail: &Jail,
    start: &Opened,
    regex: &Regex,
    filter: Option<&GlobFilter>,
    cancel: &CancellationToken,
) -> ToolOutcome {
    let mut t = Tally::default();
    let mut scanned = 0usize;
    let mut complete = true;
    let consider =
        |t: &mut Tally, dir: &OwnedFd, name: &std::ffi::OsStr, rel: &str, below: &str| {
            if let Some(f) = filter
                && !f.is_match(below)
            {
                return;
            }
            match load(dir, name) {
                Err(()) => t.skipped_large += 1,
                Ok(Some(bytes)) if !looks_binary(&bytes) => {
                    t.files_searched += 1;
                    search_file(rel, &String::from_utf8_lossy(&bytes), regex, t);
                }
                Ok(_) => {}
            }
        };
    if start.is_dir() {
        let mut walk = Walk::new(jail.root(), start);
        walk.run(start, &mut |entry| {
            if cancel.is_cancelled() {
                return Flow::Stop;
            }
            scanned += 1;
            if scanned > MAX_SCANNED {
                complete = false;
                return Flow::Stop;
            }
            // Only regular files: symlinks are never followed.
            if entry.kind == Kind::File {
                consider(&mut t, entry.dir, entry.name, entry.rel, entry.below);
            }
            Flow::Continue
        });
        if cancel.is_cancelled() {
            return ToolOutcome::error("search_files was cancelled before it finished");
        }
    } else if let Some(parent) = start.parents.last() {
        // `path` named one file: search it (its name is what a glob matches).
        let name = start
            .rel
            .rsplit('/')
            .next()
            .unwrap_or(&start.rel)
            .to_string();
        consider(
            &mut t,
            parent,
            std::ffi::OsStr::new(&name),
            &start.rel,
            &name,
        );
    }
    finish(t, &start.rel, regex.as_str(), complete)
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

fn finish(mut t: Tally, start_rel: &str, pattern: &str, complete: bool) -> ToolOutcome {
    let where_ = if start_rel == "." {
        "the work directory".to_string()
    } else {
        format!("`{start_rel}`")
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
