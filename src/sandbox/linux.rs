//! The launcher and the namespace init on Linux (see the module above for the design).
//! Both run single-threaded in a fresh process image: no async runtime, no `unsafe`.

use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, unshare};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use rustix::process::Signal;
use rustix::thread::CapabilitySet;

use super::{INIT_ARG, LINGERING_NOTE, LaunchSpec, SETUP_FAILED, confine, fail, mounts};

/// How long init lets background processes finish after the shell exits.
const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(500);

/// Capabilities a command never keeps: they could reveal what the namespaces hide
/// (unmount the private `/proc`, trace or read other processes, read kernel memory).
const DROPPED: [CapabilitySet; 9] = [
    CapabilitySet::SYS_ADMIN,
    CapabilitySet::SYS_PTRACE,
    CapabilitySet::SYS_RAWIO,
    CapabilitySet::SYS_MODULE,
    CapabilitySet::SYS_BOOT,
    CapabilitySet::DAC_READ_SEARCH,
    CapabilitySet::MKNOD,
    CapabilitySet::BPF,
    CapabilitySet::PERFMON,
];

/// `flotilla __exec SPEC`: die with flotilla, unshare, start init, mirror its exit.
pub(super) fn exec_main(spec: &LaunchSpec) -> i32 {
    if let Err(e) = rustix::process::set_parent_process_death_signal(Some(Signal::KILL)) {
        return fail(&format!("cannot set the parent-death signal: {e}"));
    }
    // flotilla may have died before the line above took effect.
    let parent = rustix::process::getppid().map(|p| p.as_raw_nonzero().get());
    if parent != i32::try_from(spec.parent).ok() {
        return fail(&format!(
            "the launcher's parent is {parent:?}, not flotilla ({}); not starting",
            spec.parent
        ));
    }
    if !spec.isolate {
        // No namespaces: Landlock alone (its TCP rules stand in for a network namespace),
        // writing in the private temp directory too.
        if let Some(c) = &spec.confine {
            let mut c = c.clone();
            c.writable.extend(spec.temp.iter().cloned());
            if let Err(e) = confine::apply(&c, false) {
                return fail(&format!("cannot sandbox the command: {e}"));
            }
        }
        // Without privileges the filter needs no_new_privs, which only a confined
        // command (Landlock) has: best effort for `off`.
        if let Err(e) = mounts::deny_terminal_injection()
            && spec.confine.is_some()
        {
            return fail(&format!("cannot sandbox the command: {e}"));
        }
        // The parent-death signal survives exec: the shell dies with flotilla.
        let e = Command::new("sh")
            .arg("-c")
            .arg(&spec.command)
            .current_dir(&spec.cwd)
            .exec();
        return fail(&format!("cannot run sh: {e}"));
    }
    if let Err(e) = unshare_namespaces(own_network(spec)) {
        return fail(&format!("cannot isolate the command: {e}"));
    }
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => return fail(&format!("cannot find the flotilla binary: {e}")),
    };
    // init's stdin is a pipe whose write end only this process holds: init sees it
    // close if we die before init's own parent-death signal is set.
    let mut init = match Command::new(exe)
        .arg(INIT_ARG)
        .arg(serde_json::to_string(spec).unwrap_or_default())
        .stdin(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => return fail(&format!("cannot start the namespace init: {e}")),
    };
    // Child::wait would close init's stdin first: keep the write end until init exits.
    let _liveness = init.stdin.take();
    match init.wait() {
        Ok(status) => status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)),
        Err(e) => fail(&format!("cannot wait for the namespace init: {e}")),
    }
}

/// Whether the command gets a network namespace of its own (confined, no network).
fn own_network(spec: &LaunchSpec) -> bool {
    spec.confine.as_ref().is_some_and(|c| !c.network)
}

/// New PID, mount and IPC namespaces (and network, with `network`); with a user
/// namespace (mapping our uid to root in it) when we lack the privilege for them
/// directly. The IPC namespace hides the host's SysV IPC objects and POSIX queues.
fn unshare_namespaces(network: bool) -> Result<(), String> {
    let mut base = CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWIPC;
    if network {
        base |= CloneFlags::CLONE_NEWNET;
    }
    match unshare(base) {
        Ok(()) => return Ok(()),
        Err(Errno::EPERM) => {}
        Err(e) => return Err(format!("unshare: {}", e.desc())),
    }
    let (uid, gid) = (
        rustix::process::getuid().as_raw(),
        rustix::process::getgid().as_raw(),
    );
    unshare(base | CloneFlags::CLONE_NEWUSER)
        .map_err(|e| format!("unshare (with a user namespace): {}", e.desc()))?;
    let write = |file: &str, text: String| {
        std::fs::write(file, text).map_err(|e| format!("cannot write {file}: {e}"))
    };
    // Needed before gid_map can be written without CAP_SETGID; absent on old kernels.
    if std::path::Path::new("/proc/self/setgroups").exists() {
        write("/proc/self/setgroups", "deny".into())?;
    }
    write("/proc/self/uid_map", format!("0 {uid} 1"))?;
    write("/proc/self/gid_map", format!("0 {gid} 1"))
}

/// `flotilla __init SPEC`: pid 1 of the namespace. Mounts `/proc`, drops capabilities,
/// runs the shell, reaps every process, and exits with the shell's status; on its exit
/// the kernel kills whatever is left in the namespace.
pub(super) fn init_main(spec: &LaunchSpec) -> i32 {
    if let Err(e) = rustix::process::set_parent_process_death_signal(Some(Signal::KILL)) {
        return fail(&format!("cannot set the parent-death signal: {e}"));
    }
    if launcher_gone() {
        return SETUP_FAILED;
    }
    if let Err(e) = private_proc() {
        return fail(&format!("cannot mount a private /proc: {e}"));
    }
    if let Some(c) = &spec.confine
        && let Err(e) = mounts::private_view(spec, &c.writable)
    {
        return fail(&format!("cannot sandbox the command's files: {e}"));
    }
    // A session of its own: no controlling terminal, so nothing reaches the user's
    // terminal through /dev/tty (init is not a group leader, so this cannot fail).
    if let Err(e) = rustix::process::setsid() {
        return fail(&format!("cannot start a new session: {e}"));
    }
    if own_network(spec)
        && let Err(e) = confine::loopback_up()
    {
        return fail(&format!("cannot isolate the network: {e}"));
    }
    if let Err(e) = drop_capabilities(spec.confine.is_some()) {
        return fail(&format!("cannot drop capabilities: {e}"));
    }
    // Last, after the mounts (a Landlock domain may not mount): the shell and every
    // process it starts inherit it.
    if let Some(c) = &spec.confine
        && let Err(e) = confine::apply(&in_namespace(spec, c), own_network(spec))
    {
        return fail(&format!("cannot sandbox the command: {e}"));
    }
    // Still privileged in the namespace (or no_new_privs from Landlock).
    if let Err(e) = mounts::deny_terminal_injection() {
        return fail(&format!("cannot sandbox the command: {e}"));
    }
    let shell = match Command::new("sh")
        .arg("-c")
        .arg(&spec.command)
        .current_dir(&spec.cwd)
        .stdin(Stdio::null())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => return fail(&format!("cannot run sh: {e}")),
    };
    let shell_pid = Pid::from_raw(i32::try_from(shell.id()).unwrap_or(i32::MAX));
    // Reap everything (orphans are re-parented to us) until the shell exits.
    let code = loop {
        match waitpid(Pid::from_raw(-1), None) {
            Ok(WaitStatus::Exited(pid, code)) if pid == shell_pid => break code,
            Ok(WaitStatus::Signaled(pid, signal, _)) if pid == shell_pid => {
                break 128 + signal as i32;
            }
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return fail(&format!("cannot wait for the shell: {}", e.desc())),
        }
    };
    // Background processes get a moment to finish and flush their output.
    let deadline = Instant::now() + DRAIN_AFTER_EXIT;
    let lingering = loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) if Instant::now() >= deadline => break true,
            Ok(WaitStatus::StillAlive) => std::thread::sleep(Duration::from_millis(10)),
            Ok(_) | Err(Errno::EINTR) => {}
            Err(_) => break false, // ECHILD: nothing left
        }
    };
    if lingering {
        let _ = writeln!(std::io::stderr(), "\n{LINGERING_NOTE}");
    }
    code
}

/// What Landlock lets a confined command write inside the namespace: its writable
/// places, and the private temp mounts when it has a private temp directory.
fn in_namespace(spec: &LaunchSpec, c: &super::Confinement) -> super::Confinement {
    let mut c = c.clone();
    if spec.temp.is_some() {
        c.writable.extend(
            mounts::TEMP_MOUNTS
                .iter()
                .chain(&["/dev/shm"])
                .map(Into::into),
        );
    }
    c
}

/// True when the launcher (which holds the write end of our stdin) is gone.
fn launcher_gone() -> bool {
    use rustix::event::{PollFd, PollFlags};
    let stdin = std::io::stdin();
    let fd = stdin.as_fd();
    let mut fds = [PollFd::new(&fd, PollFlags::IN)];
    let zero = rustix::time::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    match rustix::event::poll(&mut fds, Some(&zero)) {
        Ok(_) => fds[0]
            .revents()
            .intersects(PollFlags::HUP | PollFlags::IN | PollFlags::ERR),
        Err(_) => false,
    }
}

/// Keep our mounts to ourselves, then mount a procfs that shows only our namespace.
fn private_proc() -> Result<(), String> {
    let none: Option<&str> = None;
    mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_PRIVATE, none)
        .map_err(|e| format!("making / private: {}", e.desc()))?;
    mount(
        Some("proc"),
        "/proc",
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        none,
    )
    .map_err(|e| e.desc().to_string())
}

/// Dropped too when the command is sandboxed: they could rebuild a way to the network
/// (a veth pair pushed into another namespace) or forge packets.
const DROPPED_CONFINED: [CapabilitySet; 2] = [CapabilitySet::NET_ADMIN, CapabilitySet::NET_RAW];

/// Remove [`DROPPED`] (and [`DROPPED_CONFINED`] when `confined`) from the bounding set
/// and clear the inheritable and ambient sets, so the shell (even as root) cannot get
/// them back across `exec`.
fn drop_capabilities(confined: bool) -> Result<(), String> {
    use rustix::thread::{
        capabilities, capability_is_in_bounding_set, clear_ambient_capability_set,
        remove_capability_from_bounding_set, set_capabilities,
    };
    let extra: &[CapabilitySet] = if confined { &DROPPED_CONFINED } else { &[] };
    for &cap in DROPPED.iter().chain(extra) {
        // EINVAL: a capability this kernel does not know, so nobody has it.
        if capability_is_in_bounding_set(cap).unwrap_or(false) {
            remove_capability_from_bounding_set(cap).map_err(|e| format!("{cap:?}: {e}"))?;
        }
    }
    let _ = clear_ambient_capability_set();
    let mut sets = capabilities(None).map_err(|e| e.to_string())?;
    sets.inheritable = CapabilitySet::empty();
    set_capabilities(None, sets).map_err(|e| e.to_string())
}
