//! The path jail: every file the tools open, create or list is reached from a handle on
//! the work directory, one component at a time, so nothing outside it is ever opened —
//! not even when another process swaps a directory for a symlink mid-call.
//!
//! A path the model gives is first normalized lexically (`.` dropped, `..` popped;
//! climbing above the root or an absolute path elsewhere is refused with a message).
//! Then [`Jail::open`] walks it from the work directory's file descriptor: each directory
//! is opened with `openat(…, O_DIRECTORY | O_NOFOLLOW)` relative to the one before, and
//! the last component with `O_NOFOLLOW | O_NONBLOCK` (a FIFO never blocks). When a
//! component is a symlink, its target is read (`readlinkat`) and walked the same way:
//! a relative target from the directory holding the link, an absolute one only if it
//! names a place inside the work directory (from its handle); `..` never climbs above
//! the work directory. A target outside is refused without being looked at, so refusals
//! reveal nothing about what is outside (not even whether it exists). Dangling or
//! looping symlinks are refused; so are directories and files a symlink target would
//! have to create. The same walk is portable to every Unix (no `openat2` needed), and
//! a swap between two steps can only make a step fail, never lead outside.
//!
//! Not covered: hard links to outside files (a hard link *is* the file) and mount
//! points inside the work directory.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat};
use rustix::io::Errno;

/// Most symlinks one path may go through (as Linux's `MAXSYMLINKS`).
const MAX_LINKS: usize = 40;

/// Why a path was refused or could not be opened; the text is what the model reads.
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
        "`{path}` goes through a symlink that points outside the work directory; it cannot \
         be read or written. Use the files inside the work directory ({root})"
    )]
    SymlinkOutside { path: String, root: String },
    #[error(
        "`{path}` goes through a symlink that cannot be resolved (it is dangling or loops); \
         refusing to follow it. Use a different path or replace the symlink"
    )]
    Unresolvable { path: String },
    /// A component of the path (`rel`, relative to the root) does not exist.
    #[error("`{rel}` does not exist")]
    Missing { path: String, rel: String },
    #[error("`{rel}` is not a directory, so `{path}` cannot be inside it")]
    NotADirectory { path: String, rel: String },
    #[error("`{rel}` is a directory, not a file")]
    IsADirectory { rel: String },
    #[error(
        "`{rel}` is not a regular file (it is a {kind}); only regular files can be read or \
         written. Use run_command to inspect it"
    )]
    NotRegular { rel: String, kind: &'static str },
    #[error("could not open `{rel}`: {source}")]
    Io {
        rel: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the work directory {root} is not accessible: {source}")]
    Root {
        root: String,
        #[source]
        source: std::io::Error,
    },
}

/// How [`Jail::open`] opens the last component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read a file or list a directory.
    Read,
    /// Read and rewrite an existing regular file (`edit_file`).
    ReadWrite,
    /// Write a regular file, creating it and its missing parent directories.
    Create,
}

/// An open file or directory inside the jail.
#[derive(Debug)]
pub struct Opened {
    pub fd: OwnedFd,
    pub stat: Stat,
    /// Path relative to the root, `/` separated, symlinks resolved; `.` for the root.
    pub rel: String,
    /// True when [`Access::Create`] created the file.
    pub created: bool,
    /// The directories walked through, root first (the parents of `fd`).
    pub parents: Vec<OwnedFd>,
}

impl Opened {
    pub fn file_type(&self) -> FileType {
        FileType::from_raw_mode(self.stat.st_mode)
    }

    pub fn is_dir(&self) -> bool {
        self.file_type() == FileType::Directory
    }

    /// Refuse anything but a regular file (directories get their own message).
    pub fn require_regular(&self) -> Result<(), JailError> {
        match self.file_type() {
            FileType::RegularFile => Ok(()),
            FileType::Directory => Err(JailError::IsADirectory {
                rel: self.rel.clone(),
            }),
            other => Err(JailError::NotRegular {
                rel: self.rel.clone(),
                kind: kind_name(other),
            }),
        }
    }
}

/// `fifo`, `socket`, … for messages.
pub fn kind_name(t: FileType) -> &'static str {
    match t {
        FileType::Fifo => "FIFO (named pipe)",
        FileType::Socket => "socket",
        FileType::CharacterDevice => "character device",
        FileType::BlockDevice => "block device",
        FileType::Symlink => "symlink",
        FileType::Directory => "directory",
        FileType::RegularFile => "regular file",
        _ => "special file",
    }
}

/// A handle on one work directory.
#[derive(Debug)]
pub struct Jail {
    root: PathBuf,
    dir: OwnedFd,
}

impl Jail {
    /// Open the work directory (`root` is canonical: the caller canonicalized it).
    pub fn new(root: &Path) -> Result<Jail, JailError> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let dir = rustix::fs::open(root, flags, Mode::empty()).map_err(|e| JailError::Root {
            root: root.display().to_string(),
            source: e.into(),
        })?;
        Ok(Jail {
            root: root.to_path_buf(),
            dir,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Open `input` (relative to the root, or absolute inside it) race-free.
    pub fn open(&self, input: &str, access: Access) -> Result<Opened, JailError> {
        let parts = self.lexical(input)?;
        Walk::new(self, input)?.run(parts, access)
    }

    /// Where `rel` (already inside the jail, e.g. a symlink a walk found) leads: its
    /// path relative to the root with every symlink resolved, if it stays inside.
    pub fn target_of(&self, rel: &str) -> Result<String, JailError> {
        let parts = self.lexical(rel)?;
        let mut walk = Walk::new(self, rel)?;
        walk.locate = true;
        walk.run(parts, Access::Read).map(|o| o.rel)
    }

    /// The components of `input` below the root, after lexical normalization.
    fn lexical(&self, input: &str) -> Result<Vec<OsString>, JailError> {
        let shown_root = self.root.display().to_string();
        let raw = Path::new(input);
        let below_root: PathBuf = if raw.is_absolute() {
            match crate::workdirs::normalize(raw).strip_prefix(&self.root) {
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
        Ok(parts)
    }
}

/// One resolution: a stack of open directories from the root down.
struct Walk<'a> {
    jail: &'a Jail,
    input: &'a str,
    dirs: Vec<OwnedFd>,
    names: Vec<OsString>,
    links: usize,
    /// Only find out where the path leads (no open of the last component).
    locate: bool,
}

/// A component still to walk, and whether it came from a symlink's target.
type Pending = VecDeque<(OsString, bool)>;

impl<'a> Walk<'a> {
    fn new(jail: &'a Jail, input: &'a str) -> Result<Self, JailError> {
        let root = jail.dir.try_clone().map_err(|source| JailError::Root {
            root: jail.root.display().to_string(),
            source,
        })?;
        Ok(Walk {
            jail,
            input,
            dirs: vec![root],
            names: Vec::new(),
            links: 0,
            locate: false,
        })
    }

    fn rel_with(&self, last: Option<&OsStr>) -> String {
        let mut parts: Vec<String> = self
            .names
            .iter()
            .map(|n| n.to_string_lossy().into_owned())
            .collect();
        if let Some(last) = last {
            parts.push(last.to_string_lossy().into_owned());
        }
        if parts.is_empty() {
            ".".to_string()
        } else {
            parts.join("/")
        }
    }

    fn cur(&self) -> &OwnedFd {
        // The stack always holds the root.
        &self.dirs[self.dirs.len() - 1]
    }

    fn run(mut self, parts: Vec<OsString>, access: Access) -> Result<Opened, JailError> {
        let mut pending: Pending = parts.into_iter().map(|p| (p, false)).collect();
        let mut mkdir_retries = 0;
        if pending.is_empty() {
            return self.finish_root(access);
        }
        while let Some((name, from_link)) = pending.pop_front() {
            if name == "." {
                if pending.is_empty() {
                    return self.finish_dir(access);
                }
                continue;
            }
            if name == ".." {
                if self.names.pop().is_none() {
                    return Err(self.outside());
                }
                self.dirs.pop();
                if pending.is_empty() {
                    return self.finish_dir(access);
                }
                continue;
            }
            let last = pending.is_empty();
            let opened = if last && self.locate {
                self.locate_last(&name)
            } else if last {
                self.open_last(&name, access, from_link)
            } else {
                self.open_dir(&name).map(|fd| (fd, false))
            };
            match opened {
                Ok((fd, created)) if last => {
                    let stat = rustix::fs::fstat(&fd).map_err(|e| self.io(Some(&name), e))?;
                    let rel = self.rel_with(Some(&name));
                    return Ok(Opened {
                        fd,
                        stat,
                        rel,
                        created,
                        parents: self.dirs,
                    });
                }
                Ok((fd, _)) => {
                    self.dirs.push(fd);
                    self.names.push(name);
                }
                Err(Errno::LOOP | Errno::NOTDIR | Errno::MLINK) if self.is_symlink(&name) => {
                    self.follow(&name, &mut pending)?;
                }
                Err(Errno::NOENT)
                    if !last && access == Access::Create && !from_link && mkdir_retries < 8 =>
                {
                    mkdir_retries += 1;
                    match rustix::fs::mkdirat(self.cur(), name.as_os_str(), Mode::from(0o777)) {
                        Ok(()) | Err(Errno::EXIST) => pending.push_front((name, false)),
                        Err(e) => return Err(self.io(Some(&name), e)),
                    }
                }
                Err(Errno::NOENT) if from_link => {
                    return Err(JailError::Unresolvable {
                        path: self.input.to_string(),
                    });
                }
                Err(Errno::NOENT) => {
                    return Err(JailError::Missing {
                        path: self.input.to_string(),
                        rel: self.rel_with(Some(&name)),
                    });
                }
                Err(Errno::NOTDIR) if !last => {
                    return Err(JailError::NotADirectory {
                        path: self.input.to_string(),
                        rel: self.rel_with(Some(&name)),
                    });
                }
                Err(Errno::ISDIR) => {
                    return Err(JailError::IsADirectory {
                        rel: self.rel_with(Some(&name)),
                    });
                }
                Err(Errno::NXIO) => {
                    // A FIFO without a reader (opened for writing) or a socket.
                    return Err(JailError::NotRegular {
                        rel: self.rel_with(Some(&name)),
                        kind: "FIFO or socket",
                    });
                }
                Err(e) => return Err(self.io(Some(&name), e)),
            }
        }
        // Only reachable when the last pending component was a symlink whose target
        // ended the walk in a directory already open (e.g. `link -> .`).
        self.finish_dir(access)
    }

    /// The path ends at a directory already on the stack (the root, or after `..`).
    fn finish_dir(mut self, access: Access) -> Result<Opened, JailError> {
        let rel = self.rel_with(None);
        if access != Access::Read {
            return Err(JailError::IsADirectory { rel });
        }
        let fd = match self.dirs.pop() {
            Some(fd) => fd,
            None => return Err(self.outside()),
        };
        let stat = rustix::fs::fstat(&fd).map_err(|e| self.io(None, e))?;
        self.names.pop();
        Ok(Opened {
            fd,
            stat,
            rel,
            created: false,
            parents: self.dirs,
        })
    }

    fn finish_root(self, access: Access) -> Result<Opened, JailError> {
        self.finish_dir(access)
    }

    fn open_dir(&self, name: &OsStr) -> Result<OwnedFd, Errno> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        rustix::fs::openat(self.cur(), name, flags, Mode::empty())
    }

    fn open_last(
        &self,
        name: &OsStr,
        access: Access,
        from_link: bool,
    ) -> Result<(OwnedFd, bool), Errno> {
        let common = OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
        let open = |flags: OFlags| rustix::fs::openat(self.cur(), name, flags, Mode::from(0o666));
        match access {
            Access::Read => open(OFlags::RDONLY | common).map(|fd| (fd, false)),
            Access::ReadWrite => open(OFlags::RDWR | common).map(|fd| (fd, false)),
            // A symlink's target is never created: that would follow a dangling link.
            Access::Create if from_link => open(OFlags::WRONLY | common).map(|fd| (fd, false)),
            Access::Create => match open(OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | common) {
                Ok(fd) => Ok((fd, true)),
                Err(Errno::EXIST) => open(OFlags::WRONLY | common).map(|fd| (fd, false)),
                Err(e) => Err(e),
            },
        }
    }

    /// For [`Jail::target_of`]: a symlink is reported as `LOOP` (to be followed);
    /// anything else is "opened" as the directory holding it (never itself).
    fn locate_last(&self, name: &OsStr) -> Result<(OwnedFd, bool), Errno> {
        let stat = rustix::fs::statat(self.cur(), name, AtFlags::SYMLINK_NOFOLLOW)?;
        if FileType::from_raw_mode(stat.st_mode) == FileType::Symlink {
            return Err(Errno::LOOP);
        }
        self.cur()
            .try_clone()
            .map(|fd| (fd, false))
            .map_err(|_| Errno::BADF)
    }

    fn is_symlink(&self, name: &OsStr) -> bool {
        rustix::fs::statat(self.cur(), name, AtFlags::SYMLINK_NOFOLLOW)
            .is_ok_and(|s| FileType::from_raw_mode(s.st_mode) == FileType::Symlink)
    }

    /// Replace the symlink `name` by its target's components at the front of `pending`.
    fn follow(&mut self, name: &OsStr, pending: &mut Pending) -> Result<(), JailError> {
        self.links += 1;
        let unresolvable = || JailError::Unresolvable {
            path: self.input.to_string(),
        };
        if self.links > MAX_LINKS {
            return Err(unresolvable());
        }
        let target = rustix::fs::readlinkat(self.cur(), name, Vec::new())
            .map_err(|e| self.io(Some(name), e))?;
        let target = PathBuf::from(OsString::from_vec(target.into_bytes()));
        if target.as_os_str().is_empty() {
            return Err(unresolvable());
        }
        let below: Vec<OsString> = if target.is_absolute() {
            let Ok(rest) = crate::workdirs::normalize(&target)
                .strip_prefix(&self.jail.root)
                .map(Path::to_path_buf)
            else {
                return Err(self.outside());
            };
            // Restart from the root.
            self.dirs.truncate(1);
            self.names.clear();
            rest.components()
                .map(|c| c.as_os_str().to_os_string())
                .collect()
        } else {
            target
                .components()
                .filter_map(|c| match c {
                    Component::CurDir => None,
                    other => Some(other.as_os_str().to_os_string()),
                })
                .collect()
        };
        for part in below.into_iter().rev() {
            pending.push_front((part, true));
        }
        if pending.is_empty() {
            // `link -> /the/root` itself.
            pending.push_back((OsString::from("."), true));
        }
        Ok(())
    }

    fn outside(&self) -> JailError {
        JailError::SymlinkOutside {
            path: self.input.to_string(),
            root: self.jail.root.display().to_string(),
        }
    }

    fn io(&self, name: Option<&OsStr>, e: Errno) -> JailError {
        JailError::Io {
            rel: self.rel_with(name),
            source: e.into(),
        }
    }
}

/// Read a whole open file.
pub fn read_all(fd: &OwnedFd) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut file = std::fs::File::from(fd.try_clone()?);
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Replace the whole content of an open regular file.
pub fn write_all(fd: &OwnedFd, content: &[u8]) -> std::io::Result<()> {
    use std::io::{Seek, Write};
    let mut file = std::fs::File::from(fd.try_clone()?);
    file.set_len(0)?;
    file.seek(std::io::SeekFrom::Start(0))?;
    file.write_all(content)?;
    file.flush()
}

/// A name as bytes, for sorting directory entries like `ignore` does.
pub fn name_bytes(name: &OsStr) -> &[u8] {
    name.as_bytes()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
