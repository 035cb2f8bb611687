//! The confined command's view of the filesystem, built by the namespace init in its
//! own mount namespace before Landlock (a Landlock domain may not mount), the way
//! bubblewrap does it:
//!
//! 1. detached copies of the places the command may write (the work directory and
//!    `[sandbox] writable_roots`) and of the agent's private temp directory are taken;
//! 2. every mount is made read-only (`mount_setattr(AT_RECURSIVE, MOUNT_ATTR_RDONLY)`),
//!    so no change at all — contents, `chmod`, `chown`, `utime`, xattrs, the setuid
//!    bit — can be made outside the writable places, as root or not;
//! 3. the private temp directory goes on `/tmp` and `/var/tmp`, a fresh tmpfs on
//!    `/dev/shm`;
//! 4. the copies go back where they were (a mount point is made for those now under
//!    `/tmp`); in `read-only` the work directory's copy is read-only;
//! 5. flotilla's data directory (store, token, other agents' worktrees) and its config
//!    file are hidden: an empty read-only tmpfs over the directory (the command's own
//!    work directory put back on top when it lies there), `/dev/null` over the file.
//!
//! Then [`deny_terminal_injection`] installs a seccomp filter refusing `TIOCSTI` and
//! `TIOCLINUX` with `EPERM`.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::mount::{MsFlags, mount};
use rustix::mount::{MoveMountFlags, OpenTreeFlags, move_mount, open_tree};

use super::LaunchSpec;

/// Flags every tmpfs of ours gets (and keeps on remount).
const TMPFS_FLAGS: MsFlags = MsFlags::MS_NOSUID
    .union(MsFlags::MS_NODEV)
    .union(MsFlags::MS_NOEXEC);

/// Where the private temp directory is mounted (besides `$TMPDIR`, which is `/tmp`).
pub(super) const TEMP_MOUNTS: [&str; 2] = ["/tmp", "/var/tmp"];

/// Build the filesystem view described above. `writable`: the places the command may
/// write (existing directories); `spec.cwd` is kept visible (read-only) too.
pub(super) fn private_view(spec: &LaunchSpec, writable: &[PathBuf]) -> Result<(), String> {
    let mut keep = Vec::new();
    for dir in writable.iter().filter(|d| d.is_dir()) {
        keep.push((dir.clone(), clone_tree(dir)?));
    }
    let temp = match &spec.temp {
        Some(t) => Some(clone_tree(t)?),
        None => None,
    };
    read_only_everywhere()?;
    // Taken now, the copy of the work directory is read-only like everything else.
    if !writable.contains(&spec.cwd) && spec.cwd.is_dir() {
        keep.push((spec.cwd.clone(), clone_tree(&spec.cwd)?));
    }
    // Taken now too, read-only: what must stay visible where the temp mount covers it.
    for dir in spec.visible.iter().filter(|d| d.is_dir()) {
        if !keep.iter().any(|(k, _)| k == dir) {
            keep.push((dir.clone(), clone_tree(dir)?));
        }
    }
    if let Some(temp) = temp {
        place(&temp, Path::new(TEMP_MOUNTS[0]))?;
        for other in &TEMP_MOUNTS[1..] {
            bind(Path::new(TEMP_MOUNTS[0]), Path::new(other))?;
        }
    }
    if Path::new("/dev/shm").is_dir() {
        tmpfs(Path::new("/dev/shm"))?;
    }
    // Outer directories first, so a writable one inside a visible one stays on top.
    keep.sort_by_key(|(d, _)| d.components().count());
    let kept: Vec<PathBuf> = keep.iter().map(|(d, _)| d.clone()).collect();
    for (dir, tree) in &keep {
        // A mount point where the directory is now covered (under /tmp); elsewhere it
        // exists already.
        let _ = std::fs::create_dir_all(dir);
        place(tree, dir)?;
    }
    for path in &spec.hidden {
        hide(path, &kept)?;
    }
    Ok(())
}

/// Cover `path`: a directory with an empty read-only tmpfs, a file with `/dev/null`.
/// Places in `kept` beneath it (an agent's worktree in the data directory) are put
/// back on top.
fn hide(path: &Path, kept: &[PathBuf]) -> Result<(), String> {
    if path.is_file() {
        return bind(Path::new("/dev/null"), path);
    }
    if !path.is_dir() {
        return Ok(());
    }
    let mut inside = Vec::new();
    for dir in kept.iter().filter(|d| d.starts_with(path) && *d != path) {
        inside.push((dir, clone_tree(dir)?));
    }
    tmpfs(path)?;
    for (dir, tree) in &inside {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("making a mount point at {}: {e}", dir.display()))?;
        place(tree, dir)?;
    }
    remount_read_only(path)
}

/// A detached copy of the mount tree at `dir` (with its submounts).
fn clone_tree(dir: &Path) -> Result<OwnedFd, String> {
    open_tree(
        rustix::fs::CWD,
        dir,
        OpenTreeFlags::OPEN_TREE_CLONE
            | OpenTreeFlags::OPEN_TREE_CLOEXEC
            | OpenTreeFlags::AT_RECURSIVE,
    )
    .map_err(|e| format!("copying the mount at {}: {e}", dir.display()))
}

/// Attach a detached tree at `target`.
fn place(tree: &OwnedFd, target: &Path) -> Result<(), String> {
    move_mount(
        tree,
        "",
        rustix::fs::CWD,
        target,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
    .map_err(|e| format!("mounting {}: {e}", target.display()))
}

fn bind(from: &Path, to: &Path) -> Result<(), String> {
    if !to.exists() {
        return Ok(());
    }
    let none: Option<&str> = None;
    mount(
        Some(from),
        to,
        none,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        none,
    )
    .map_err(|e| {
        format!(
            "mounting {} on {}: {}",
            from.display(),
            to.display(),
            e.desc()
        )
    })
}

fn tmpfs(at: &Path) -> Result<(), String> {
    mount(
        Some("tmpfs"),
        at,
        Some("tmpfs"),
        TMPFS_FLAGS,
        Some("mode=0755"),
    )
    .map_err(|e| format!("mounting a tmpfs on {}: {}", at.display(), e.desc()))
}

fn remount_read_only(at: &Path) -> Result<(), String> {
    let none: Option<&str> = None;
    let flags = TMPFS_FLAGS | MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY;
    mount(none, at, none, flags, none)
        .map_err(|e| format!("making {} read-only: {}", at.display(), e.desc()))
}

/// `struct mount_attr` of `<linux/mount.h>`.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// `mount_setattr(2)` (Linux 5.12); not in rustix or nix yet. The number is the same
/// on every architecture of the unified syscall table (all but alpha and mips).
const SYS_MOUNT_SETATTR: libc::c_long = 442;

/// Every mount of this (private) mount namespace read-only, submounts included.
#[allow(unsafe_code)]
fn read_only_everywhere() -> Result<(), String> {
    const MOUNT_ATTR_RDONLY: u64 = 1;
    const AT_RECURSIVE: libc::c_int = 0x8000;
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    let root = c"/";
    // SAFETY: `root` is a NUL-terminated string and `attr` a live `struct mount_attr`
    // whose size is passed; the kernel only reads both during the call.
    let rc = unsafe {
        libc::syscall(
            SYS_MOUNT_SETATTR,
            libc::AT_FDCWD,
            root.as_ptr(),
            AT_RECURSIVE,
            &raw const attr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(format!(
            "making the filesystem read-only (mount_setattr, Linux 5.12): {}",
            std::io::Error::last_os_error()
        ))
    }
}

/// Refuse `ioctl(TIOCSTI)` (push input into a terminal) and `ioctl(TIOCLINUX)` (which
/// can paste the console's selection) with `EPERM`, for this process and everything
/// it starts. Needs `no_new_privs` or `CAP_SYS_ADMIN`. Only the low 32 bits of the
/// request are compared, as the kernel reads them.
pub(super) fn deny_terminal_injection() -> Result<(), String> {
    use seccompiler::{
        BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
        SeccompRule,
    };
    let err = |e: seccompiler::BackendError| e.to_string();
    let refuse = |request: u64| -> Result<SeccompRule, String> {
        let cond = SeccompCondition::new(1, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, request)
            .map_err(err)?;
        SeccompRule::new(vec![cond]).map_err(err)
    };
    // The request type differs between C libraries (an int on musl).
    #[allow(clippy::unnecessary_cast)]
    let rules = vec![
        refuse(libc::TIOCSTI as u64)?,
        refuse(libc::TIOCLINUX as u64)?,
    ];
    let arch = std::env::consts::ARCH.try_into().map_err(err)?;
    let filter = SeccompFilter::new(
        [(libc::SYS_ioctl, rules)].into_iter().collect(),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )
    .map_err(err)?;
    let program: BpfProgram = filter.try_into().map_err(err)?;
    seccompiler::apply_filter(&program).map_err(|e| format!("installing the seccomp filter: {e}"))
}
