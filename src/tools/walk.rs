//! The directory walk behind `list_files` and `search_files`, on file descriptors: every
//! directory is opened with `openat(parent, name, O_DIRECTORY | O_NOFOLLOW)` from one
//! the jail opened, so a directory swapped for a symlink mid-walk is skipped, never
//! followed. Symlinks are reported, not followed; `.git` is skipped.
//!
//! Ignore rules follow the `ignore` crate's standard filters (what the tools used
//! before): `.ignore` files first, then `.gitignore` and `.git/info/exclude` (not above
//! the repository root), then git's global excludes; the deepest directory's rules win
//! within each kind, and a directory's rules apply below it. Rule files inside the work
//! directory are read through the walk's own handles; those in the directories above it
//! by path.

use std::ffi::{OsStr, OsString};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use ignore::Match;
use ignore::gitignore::{Gitignore, GitignoreBuilder};
use rustix::fs::{AtFlags, FileType, Mode, OFlags};

use super::jail::{self, Opened};

/// Deepest directory level a walk descends to (each level holds one open descriptor).
pub const MAX_DEPTH: usize = 128;
/// Largest ignore file read.
const MAX_RULES_BYTES: u64 = 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
    Symlink,
    Other,
}

/// One entry found by a walk.
pub struct Entry<'a> {
    /// The directory holding it (open), to open the entry race-free.
    pub dir: &'a OwnedFd,
    pub name: &'a OsStr,
    /// Path relative to the work directory, `/` separated.
    pub rel: &'a str,
    /// Path relative to the walk's start, `/` separated.
    pub below: &'a str,
    pub kind: Kind,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Stop,
}

/// The ignore rules of one directory.
#[derive(Default)]
struct Rules {
    ignore: Option<Gitignore>,
    git: Option<Gitignore>,
    exclude: Option<Gitignore>,
    /// The directory holds `.git`: git rules above it do not apply.
    has_git: bool,
}

/// A walk from an open directory.
pub struct Walk {
    root: PathBuf,
    rules: Vec<Rules>,
    global: Gitignore,
    /// Entries that could not be read (or were swapped mid-walk), or were too deep.
    pub unreadable: usize,
}

impl Walk {
    /// Prepare a walk of `start` (a directory the jail opened under `root`), loading
    /// the ignore rules of every directory above it.
    pub fn new(root: &Path, start: &Opened) -> Walk {
        let mut rules = Vec::new();
        let mut above: Vec<&Path> = root.ancestors().skip(1).collect();
        above.reverse();
        for dir in above {
            rules.push(rules_by_path(dir));
        }
        // The root and the directories between it and the start (their handles).
        let mut abs = root.to_path_buf();
        let start_parts: Vec<&str> = if start.rel == "." {
            Vec::new()
        } else {
            start.rel.split('/').collect()
        };
        for (i, fd) in start.parents.iter().enumerate() {
            if i > 0
                && let Some(part) = start_parts.get(i - 1)
            {
                abs.push(part);
            }
            rules.push(rules_of(fd, &abs));
        }
        rules.push(rules_of(&start.fd, &root.join(&start.rel)));
        Walk {
            root: root.to_path_buf(),
            rules,
            global: Gitignore::global().0,
            unreadable: 0,
        }
    }

    /// Visit every entry below `start`, depth-first, sorted by name.
    pub fn run(&mut self, start: &Opened, visit: &mut dyn FnMut(&Entry) -> Flow) -> Flow {
        let rel = if start.rel == "." {
            String::new()
        } else {
            start.rel.clone()
        };
        self.dir(&start.fd, &rel, "", 1, visit)
    }

    fn dir(
        &mut self,
        dir: &OwnedFd,
        rel: &str,
        below: &str,
        depth: usize,
        visit: &mut dyn FnMut(&Entry) -> Flow,
    ) -> Flow {
        let Ok(entries) = read_entries(dir) else {
            self.unreadable += 1;
            return Flow::Continue;
        };
        for (name, file_type) in entries {
            if name == ".git" {
                continue;
            }
            let kind = match file_type {
                FileType::Unknown => {
                    rustix::fs::statat(dir, name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW)
                        .map_or(Kind::Other, |s| kind_of(FileType::from_raw_mode(s.st_mode)))
                }
                t => kind_of(t),
            };
            let shown = name.to_string_lossy();
            let child_rel = join(rel, &shown);
            let child_below = join(below, &shown);
            if self.ignored(&self.root.join(&child_rel), kind == Kind::Dir) {
                continue;
            }
            let entry = Entry {
                dir,
                name: &name,
                rel: &child_rel,
                below: &child_below,
                kind,
            };
            if visit(&entry) == Flow::Stop {
                return Flow::Stop;
            }
            if kind != Kind::Dir {
                continue;
            }
            if depth >= MAX_DEPTH {
                self.unreadable += 1;
                continue;
            }
            let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            match rustix::fs::openat(dir, name.as_os_str(), flags, Mode::empty()) {
                Ok(sub) => {
                    self.rules.push(rules_of(&sub, &self.root.join(&child_rel)));
                    let flow = self.dir(&sub, &child_rel, &child_below, depth + 1, visit);
                    self.rules.pop();
                    if flow == Flow::Stop {
                        return Flow::Stop;
                    }
                }
                // Gone, or swapped for a symlink or a file since it was listed.
                Err(_) => self.unreadable += 1,
            }
        }
        Flow::Continue
    }

    /// Whether the standard filters exclude `abs`.
    fn ignored(&self, abs: &Path, is_dir: bool) -> bool {
        let decide = |m: Match<&ignore::gitignore::Glob>| match m {
            Match::Ignore(_) => Some(true),
            Match::Whitelist(_) => Some(false),
            Match::None => None,
        };
        for r in self.rules.iter().rev() {
            if let Some(d) = r
                .ignore
                .as_ref()
                .and_then(|g| decide(g.matched(abs, is_dir)))
            {
                return d;
            }
        }
        for pick in [git_rules as fn(&Rules) -> Option<&Gitignore>, exclude_rules] {
            for r in self.rules.iter().rev() {
                if let Some(d) = pick(r).and_then(|g| decide(g.matched(abs, is_dir))) {
                    return d;
                }
                if r.has_git {
                    break;
                }
            }
        }
        decide(self.global.matched(abs, is_dir)).unwrap_or(false)
    }
}

fn git_rules(r: &Rules) -> Option<&Gitignore> {
    r.git.as_ref()
}

fn exclude_rules(r: &Rules) -> Option<&Gitignore> {
    r.exclude.as_ref()
}

fn kind_of(t: FileType) -> Kind {
    match t {
        FileType::Directory => Kind::Dir,
        FileType::RegularFile => Kind::File,
        FileType::Symlink => Kind::Symlink,
        _ => Kind::Other,
    }
}

fn join(a: &str, b: &str) -> String {
    if a.is_empty() {
        b.to_string()
    } else {
        format!("{a}/{b}")
    }
}

/// A directory's entries (no `.`/`..`), sorted by name.
fn read_entries(dir: &OwnedFd) -> std::io::Result<Vec<(OsString, FileType)>> {
    let mut out = Vec::new();
    for entry in rustix::fs::Dir::read_from(dir)? {
        let entry = entry?;
        let name = OsString::from_vec(entry.file_name().to_bytes().to_vec());
        if name == "." || name == ".." {
            continue;
        }
        out.push((name, entry.file_type()));
    }
    out.sort_by(|a, b| jail::name_bytes(&a.0).cmp(jail::name_bytes(&b.0)));
    Ok(out)
}

/// Read a small regular file `name` in `dir` without following a symlink.
fn read_small(dir: &OwnedFd, name: &str) -> Option<String> {
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let fd = rustix::fs::openat(dir, name, flags, Mode::empty()).ok()?;
    let stat = rustix::fs::fstat(&fd).ok()?;
    if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile
        || u64::try_from(stat.st_size).unwrap_or(u64::MAX) > MAX_RULES_BYTES
    {
        return None;
    }
    let bytes = jail::read_all(&fd).ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

fn build(dir_abs: &Path, text: Option<String>) -> Option<Gitignore> {
    let text = text?;
    let mut builder = GitignoreBuilder::new(dir_abs);
    for line in text.lines() {
        // A bad glob only loses its own line, as in git.
        let _ = builder.add_line(None, line);
    }
    builder.build().ok().filter(|g| !g.is_empty())
}

/// The rules of a directory inside the work directory, read through its handle.
fn rules_of(dir: &OwnedFd, dir_abs: &Path) -> Rules {
    let git_dir = rustix::fs::statat(dir, ".git", AtFlags::SYMLINK_NOFOLLOW).ok();
    let exclude = git_dir
        .filter(|s| FileType::from_raw_mode(s.st_mode) == FileType::Directory)
        .and_then(|_| {
            let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let git = rustix::fs::openat(dir, ".git", flags, Mode::empty()).ok()?;
            let info = rustix::fs::openat(&git, "info", flags, Mode::empty()).ok()?;
            read_small(&info, "exclude")
        });
    Rules {
        ignore: build(dir_abs, read_small(dir, ".ignore")),
        git: build(dir_abs, read_small(dir, ".gitignore")),
        exclude: build(dir_abs, exclude),
        has_git: git_dir.is_some(),
    }
}

/// The rules of a directory above the work directory (not the agent's to change).
fn rules_by_path(dir: &Path) -> Rules {
    let read = |p: PathBuf| {
        std::fs::metadata(&p)
            .ok()
            .filter(|m| m.is_file() && m.len() <= MAX_RULES_BYTES)
            .and_then(|_| std::fs::read_to_string(p).ok())
    };
    Rules {
        ignore: build(dir, read(dir.join(".ignore"))),
        git: build(dir, read(dir.join(".gitignore"))),
        exclude: build(dir, read(dir.join(".git/info/exclude"))),
        has_git: std::fs::symlink_metadata(dir.join(".git")).is_ok(),
    }
}
