//! `read_file`, `write_file` and `edit_file`: the tools that read and change one file.
//!
//! Every file is opened through the [`jail`] (race-free, beneath the work directory);
//! only regular files are read or written (a FIFO or device is refused, never opened
//! in a way that blocks). Reads show numbered lines (like
//! `cat -n`) within a character budget and say which `offset` to use next; edits demand
//! an exact, unique match so the model never changes a place it did not mean.

use schemars::JsonSchema;
use serde::Deserialize;

use super::jail::{self, Access, Jail, JailError, Opened};
use super::text::{self, cut_line, plural, thousands};
use super::{MAX_OUTPUT_CHARS, ToolContext, ToolError, ToolOutcome, ToolResult};

/// Lines shown by `read_file` when no `limit` is given.
pub const DEFAULT_READ_LINES: usize = 2000;
/// Longest line `read_file` shows in full.
pub const MAX_LINE_CHARS: usize = 2000;
/// Files larger than this are not loaded (use `search_files` or `run_command`).
pub const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;
/// Budget for the numbered lines of one `read_file` answer (leaves room for the note).
const READ_BUDGET_CHARS: usize = MAX_OUTPUT_CHARS - 500;

pub const READ_DESCRIPTION: &str = "Read a text file in the work directory. Returns lines numbered like `cat -n` \
(number, tab, text). Shows up to 2000 lines (and about 30,000 characters) per call; lines longer than 2000 \
characters are cut. When more remains, the answer says which `offset` to pass next. Binary files are refused.";

pub const WRITE_DESCRIPTION: &str = "Create or overwrite a file in the work directory with the given content; \
parent directories are created as needed. Replaces the whole file: to change part of an existing file use \
edit_file.";

pub const EDIT_DESCRIPTION: &str = "Replace one exact piece of text in a file. `old_text` must appear exactly \
once in the file, matching character for character (whitespace and indentation included); copy it from \
read_file output without the line-number prefix. If it matches nowhere or more than once the file is left \
unchanged and the error says which; add surrounding lines to make it unique.";

/// Arguments of `read_file`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadFileInput {
    /// File path relative to the work directory, e.g. `src/main.rs`.
    pub path: String,
    /// First line to show, 1-based (default 1).
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub offset: Option<usize>,
    /// How many lines to show (default and maximum 2000).
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub limit: Option<usize>,
}

/// Arguments of `write_file`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WriteFileInput {
    /// File path relative to the work directory, e.g. `src/lib.rs`.
    pub path: String,
    /// The complete new content of the file.
    pub content: String,
}

/// Arguments of `edit_file`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EditFileInput {
    /// File path relative to the work directory.
    pub path: String,
    /// The exact text to replace; must occur exactly once in the file.
    pub old_text: String,
    /// The text to put in its place (may be empty to delete `old_text`).
    pub new_text: String,
}

/// A text file's content; `lossy` when invalid UTF-8 was replaced with U+FFFD.
struct Loaded {
    text: String,
    lossy: bool,
}

/// Run blocking jail I/O off the async runtime.
pub(super) async fn blocking<T: Send + 'static>(
    what: &str,
    f: impl FnOnce() -> Result<T, ToolError> + Send + 'static,
) -> Result<T, ToolError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ToolError::Model(format!("{what} failed unexpectedly: {e}")))?
}

/// A jail error as the file tools phrase it (with what to do next).
fn file_error(e: JailError) -> ToolError {
    match e {
        JailError::Missing { rel, .. } => ToolError::Model(format!(
            "`{rel}` does not exist. Use list_files or search_files to find the right path"
        )),
        JailError::IsADirectory { rel } if rel == "." => ToolError::Model(
            "`path` must name a file inside the work directory, e.g. `notes.md`".into(),
        ),
        JailError::IsADirectory { rel } => ToolError::Model(format!(
            "`{rel}` is a directory, not a file. Use list_files to see what it contains, or \
             give a file path"
        )),
        other => ToolError::Jail(other),
    }
}

/// Load an open regular file as text, or say why not.
fn load_text(opened: &Opened) -> Result<Loaded, ToolError> {
    opened.require_regular().map_err(file_error)?;
    let rel = &opened.rel;
    let size = u64::try_from(opened.stat.st_size).unwrap_or(0);
    if size > MAX_FILE_BYTES {
        return Err(ToolError::Model(format!(
            "`{rel}` is too large to load ({} bytes; the limit is {} bytes). Use search_files \
             to find the relevant lines, or run_command with head/sed/grep",
            thousands(size as usize),
            thousands(MAX_FILE_BYTES as usize)
        )));
    }
    let bytes = jail::read_all(&opened.fd).map_err(|e| ToolError::io("read", rel, e))?;
    if text::looks_binary(&bytes) {
        return Err(ToolError::Model(format!(
            "`{rel}` looks like a binary file ({} bytes, contains NUL bytes); only text files \
             can be read or edited. Use run_command (e.g. `file`, `xxd | head`) to inspect it",
            thousands(bytes.len())
        )));
    }
    Ok(match String::from_utf8(bytes) {
        Ok(text) => Loaded { text, lossy: false },
        Err(e) => Loaded {
            text: String::from_utf8_lossy(e.as_bytes()).into_owned(),
            lossy: true,
        },
    })
}

/// Open `path` in the agent's work directory (blocking).
fn open_in(root: &std::path::Path, path: &str, access: Access) -> Result<Opened, ToolError> {
    Jail::new(root)?.open(path, access).map_err(file_error)
}

/// `read_file`: numbered lines from `offset`, within the line and character budgets.
pub async fn read_file(input: ReadFileInput, ctx: &ToolContext) -> ToolResult {
    let root = ctx.root.clone();
    let path = input.path.clone();
    let (rel, loaded) = blocking("read_file", move || {
        let opened = open_in(&root, &path, Access::Read)?;
        let loaded = load_text(&opened)?;
        Ok((opened.rel, loaded))
    })
    .await?;
    let lines: Vec<&str> = loaded.text.lines().collect();
    let total = lines.len();
    let mut outcome = ToolOutcome {
        files_read: vec![rel.clone()],
        ..ToolOutcome::default()
    };
    if total == 0 {
        outcome.content = format!("`{rel}` is empty (0 lines).");
        return Ok(outcome);
    }
    let start = input.offset.unwrap_or(1).max(1);
    if start > total {
        return Err(ToolError::Model(format!(
            "offset {start} is past the end of `{rel}`, which has {}. Use an offset from 1 to {total}",
            plural(total, "line")
        )));
    }
    let limit = input
        .limit
        .unwrap_or(DEFAULT_READ_LINES)
        .clamp(1, DEFAULT_READ_LINES);
    let mut out = String::new();
    let mut last = start - 1; // last line number shown
    for (i, line) in lines.iter().enumerate().skip(start - 1).take(limit) {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let numbered = format!("{:>6}\t{}\n", i + 1, cut_line(line, MAX_LINE_CHARS));
        // Always show at least one line, even if it alone is over budget.
        if last >= start && out.len() + numbered.len() > READ_BUDGET_CHARS {
            break;
        }
        out.push_str(&numbered);
        last = i + 1;
    }
    if last < total {
        out.push_str(&format!(
            "\n[Showing lines {start}-{last} of {total}. {} more; use offset={} to continue.]",
            plural(total - last, "line"),
            last + 1
        ));
    } else if start > 1 {
        out.push_str(&format!(
            "\n[Showing lines {start}-{last} of {total} (end of file).]"
        ));
    }
    if loaded.lossy {
        out.push_str("\n[The file is not valid UTF-8; invalid bytes are shown as \u{FFFD}.]");
    }
    outcome.content = out;
    Ok(outcome)
}

/// `write_file`: create parents, write the whole file, say what happened.
pub async fn write_file(input: WriteFileInput, ctx: &ToolContext) -> ToolResult {
    let root = ctx.root.clone();
    let path = input.path.clone();
    let content = input.content;
    let bytes = content.len();
    let lines = content.lines().count();
    let (rel, existed) = blocking("write_file", move || {
        let opened = open_in(&root, &path, Access::Create)?;
        opened.require_regular().map_err(file_error)?;
        jail::write_all(&opened.fd, content.as_bytes())
            .map_err(|e| ToolError::io("write", &opened.rel, e))?;
        Ok((opened.rel, !opened.created))
    })
    .await?;
    let verb = if existed { "Overwrote" } else { "Created" };
    Ok(ToolOutcome {
        content: format!(
            "{verb} `{rel}` ({}, {}).",
            plural(bytes, "byte"),
            plural(lines, "line")
        ),
        files_written: vec![rel],
        ..ToolOutcome::default()
    })
}

/// Start offsets of every occurrence of `needle` in `hay`, overlapping ones included.
fn occurrences(hay: &str, needle: &str) -> Vec<usize> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(i) = hay[from..].find(needle) {
        found.push(from + i);
        // Step one char past this match's start so overlapping matches count too.
        let step = hay[from + i..].chars().next().map_or(1, char::len_utf8);
        from += i + step;
    }
    found
}

/// `edit_file`: replace the unique occurrence of `old_text` with `new_text`.
pub async fn edit_file(input: EditFileInput, ctx: &ToolContext) -> ToolResult {
    if input.old_text.is_empty() {
        return Err(ToolError::Model(
            "`old_text` is empty. Give the exact text to replace, or use write_file to \
             create or overwrite a whole file"
                .into(),
        ));
    }
    if input.old_text == input.new_text {
        return Err(ToolError::Model(
            "`old_text` and `new_text` are identical, so there is nothing to change".into(),
        ));
    }
    let root = ctx.root.clone();
    blocking("edit_file", move || edit_blocking(&root, input)).await
}

/// The read–match–write of `edit_file`, on one open file (blocking).
fn edit_blocking(root: &std::path::Path, input: EditFileInput) -> ToolResult {
    let opened = open_in(root, &input.path, Access::ReadWrite)?;
    let rel = opened.rel.clone();
    let loaded = load_text(&opened)?;
    if loaded.lossy {
        return Err(ToolError::Model(format!(
            "`{rel}` is not valid UTF-8, so edit_file cannot change it without corrupting it. \
             Use run_command (e.g. sed) or rewrite it with write_file"
        )));
    }
    let content = loaded.text;
    let (mut old, mut new) = (input.old_text.clone(), input.new_text.clone());
    let mut found = occurrences(&content, &old);
    // Files with CRLF line ends: the model copies lines from read_file, which shows them
    // without `\r`. Retry with CRLF line ends if that matches.
    if found.is_empty() && content.contains("\r\n") && old.contains('\n') && !old.contains('\r') {
        let crlf_old = old.replace('\n', "\r\n");
        let crlf_found = occurrences(&content, &crlf_old);
        if !crlf_found.is_empty() {
            old = crlf_old;
            new = new.replace("\r\n", "\n").replace('\n', "\r\n");
            found = crlf_found;
        }
    }
    match found.len() {
        0 => Err(ToolError::Model(format!(
            "`old_text` was not found in `{}`; the file is unchanged. It must match exactly, \
             including whitespace, indentation and line breaks. Read the file again with \
             read_file and copy the text without the line-number prefix",
            rel
        ))),
        1 => {
            let at = found[0];
            let mut updated = String::with_capacity(content.len() + new.len());
            updated.push_str(&content[..at]);
            updated.push_str(&new);
            updated.push_str(&content[at + old.len()..]);
            jail::write_all(&opened.fd, updated.as_bytes())
                .map_err(|e| ToolError::io("write", &rel, e))?;
            let first_line = content[..at].matches('\n').count() + 1;
            let new_lines = new.lines().count().max(1);
            Ok(ToolOutcome {
                content: format!(
                    "Edited `{}`: replaced {} with {} at line {first_line}.\n{}",
                    rel,
                    plural(old.lines().count().max(1), "line"),
                    plural(new.lines().count(), "line"),
                    snippet(&updated, first_line, first_line + new_lines - 1)
                ),
                files_read: vec![rel.clone()],
                files_written: vec![rel],
                ..ToolOutcome::default()
            })
        }
        n => {
            let lines: Vec<String> = found
                .iter()
                .take(10)
                .map(|&at| (content[..at].matches('\n').count() + 1).to_string())
                .collect();
            Err(ToolError::Model(format!(
                "`old_text` matches {n} places in `{}` (starting at lines {}); the file is \
                 unchanged. Include more surrounding lines in `old_text` so it matches exactly once",
                rel,
                lines.join(", ")
            )))
        }
    }
}

/// Numbered lines `from..=to` of `content` with two lines of context, at most 40 lines.
fn snippet(content: &str, from: usize, to: usize) -> String {
    let first = from.saturating_sub(2).max(1);
    let last = (to + 2).min(first + 39);
    let mut out = String::new();
    for (i, line) in content.lines().enumerate() {
        let n = i + 1;
        if n < first {
            continue;
        }
        if n > last {
            break;
        }
        let line = line.strip_suffix('\r').unwrap_or(line);
        out.push_str(&format!("{n:>6}\t{}\n", cut_line(line, 200)));
    }
    out
}
