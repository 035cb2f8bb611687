//! Confinement the launcher applies to itself just before the shell starts, so the
//! shell and everything it starts inherit it (Landlock domains and network namespaces
//! pass to every child and survive `exec`): a Landlock ruleset for files (and TCP,
//! when there is no network namespace), and the loopback interface of a fresh network
//! namespace. Single-threaded, no `unsafe`: the `landlock` crate and rustix wrap the
//! system calls.

use std::path::Path;

use landlock::{
    ABI, Access, AccessFs, AccessNet, BitFlags, CompatLevel, Compatible, PathBeneath, PathFd,
    Ruleset, RulesetAttr, RulesetCreated, RulesetCreatedAttr, RulesetError, RulesetStatus, Scope,
};

use super::Confinement;

/// The newest Landlock ABI whose file rights flotilla asks for; a kernel with an older
/// ABI enforces what it knows (best effort), but at least ABI 1 must be there.
const ABI_WANTED: ABI = ABI::V9;

/// Devices every shell needs to write (`2>/dev/null`, `: > /dev/null`), even when
/// nothing else may be written. `/dev/tty` and `/dev/pts` only matter to programs
/// that open a terminal, which commands do not have.
const DEVICES: [&str; 7] = [
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
    "/dev/tty",
    "/dev/ptmx",
];

/// Restrict this process (and so every process it starts) to `c`. `in_netns`: the
/// process is already in a network namespace of its own, so the network needs no
/// Landlock rule; without one, `network: false` needs Landlock's TCP rules (ABI 4).
pub(super) fn apply(c: &Confinement, in_netns: bool) -> Result<(), String> {
    let status = ruleset(c, in_netns)?
        .restrict_self()
        .map_err(|e| describe(&e))?;
    match status.ruleset {
        RulesetStatus::FullyEnforced | RulesetStatus::PartiallyEnforced => Ok(()),
        RulesetStatus::NotEnforced => {
            Err("Landlock is not enabled in this kernel (see /sys/kernel/security/lsm)".into())
        }
    }
}

fn ruleset(c: &Confinement, in_netns: bool) -> Result<RulesetCreated, String> {
    let ll = |e: RulesetError| describe(&e);
    let all = AccessFs::from_all(ABI_WANTED);
    let mut ruleset = Ruleset::default()
        // Landlock itself is required; newer rights are taken where the kernel has them.
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(AccessFs::from_all(ABI::V1))
        .map_err(ll)?
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(all)
        .map_err(ll)?
        // No signals to processes outside the sandbox (ABI 6; best effort).
        .scope(Scope::Signal)
        .map_err(ll)?;
    if !c.network {
        // Abstract UNIX sockets are per network namespace; scope them too.
        ruleset = ruleset.scope(Scope::AbstractUnixSocket).map_err(ll)?;
        if !in_netns {
            ruleset = ruleset
                .set_compatibility(CompatLevel::HardRequirement)
                .handle_access(AccessNet::from_all(ABI::V4))
                .map_err(ll)?
                .set_compatibility(CompatLevel::BestEffort);
        }
    }
    // Read and execute everywhere; connecting to UNIX sockets (ABI 9) too when the
    // network is allowed.
    let mut everywhere = AccessFs::from_read(ABI_WANTED);
    if c.network {
        everywhere |= AccessFs::ResolveUnix;
    }
    let device: BitFlags<AccessFs> =
        AccessFs::ReadFile | AccessFs::WriteFile | AccessFs::Truncate | AccessFs::IoctlDev;
    let mut rules: Vec<(&Path, BitFlags<AccessFs>)> = vec![(Path::new("/"), everywhere)];
    rules.extend(
        DEVICES
            .iter()
            .map(|d| (Path::new(*d), device))
            .chain(std::iter::once((Path::new("/dev/pts"), device)))
            .filter(|(p, _)| p.exists()),
    );
    rules.extend(
        c.writable
            .iter()
            .filter(|d| d.is_dir())
            .map(|d| (d.as_path(), all)),
    );
    let mut created = ruleset.create().map_err(ll)?;
    for (path, access) in rules {
        let fd = PathFd::new(path).map_err(|e| {
            format!(
                "cannot set up the Landlock sandbox: {}: {e}",
                path.display()
            )
        })?;
        // A rule on a file (a device) may only carry file rights.
        let access = if path.is_dir() {
            access
        } else {
            access & AccessFs::from_file(ABI_WANTED)
        };
        created = created.add_rule(PathBeneath::new(fd, access)).map_err(ll)?;
    }
    Ok(created)
}

/// A Landlock error in plain words, with the likely cause.
fn describe(e: &RulesetError) -> String {
    let text = e.to_string();
    if text.contains("ncompatible") || text.contains("not supported") {
        format!("the kernel does not support the Landlock features the sandbox needs ({text})")
    } else {
        format!("cannot set up the Landlock sandbox: {text}")
    }
}

/// Bring up `lo` in a fresh network namespace (it starts down), so a command can still
/// talk to servers it starts itself on 127.0.0.1. One rtnetlink request: RTM_NEWLINK
/// on interface 1 (the loopback is always the first interface of a namespace) with
/// IFF_UP set, and its acknowledgement.
pub(super) fn loopback_up() -> Result<(), String> {
    use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketType, recv, send};
    const RTM_NEWLINK: u16 = 16;
    const NLM_F_REQUEST_ACK: u16 = 0x1 | 0x4;
    const NLMSG_ERROR: u16 = 2;
    const IFF_UP: u32 = 1;
    let fd = rustix::net::socket(AddressFamily::NETLINK, SocketType::RAW, None)
        .map_err(|e| format!("netlink socket: {e}"))?;
    let mut msg = Vec::with_capacity(32);
    msg.extend_from_slice(&32u32.to_ne_bytes()); // nlmsg_len
    msg.extend_from_slice(&RTM_NEWLINK.to_ne_bytes()); // nlmsg_type
    msg.extend_from_slice(&NLM_F_REQUEST_ACK.to_ne_bytes()); // nlmsg_flags
    msg.extend_from_slice(&1u32.to_ne_bytes()); // nlmsg_seq
    msg.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_pid
    msg.extend_from_slice(&[0, 0]); // ifi_family (AF_UNSPEC), padding
    msg.extend_from_slice(&0u16.to_ne_bytes()); // ifi_type
    msg.extend_from_slice(&1i32.to_ne_bytes()); // ifi_index: lo
    msg.extend_from_slice(&IFF_UP.to_ne_bytes()); // ifi_flags
    msg.extend_from_slice(&IFF_UP.to_ne_bytes()); // ifi_change
    send(&fd, &msg, SendFlags::empty()).map_err(|e| format!("netlink send: {e}"))?;
    let mut buf = [0u8; 512];
    let (n, _) =
        recv(&fd, &mut buf, RecvFlags::empty()).map_err(|e| format!("netlink recv: {e}"))?;
    let field = |at: usize, len: usize| buf.get(at..at + len).filter(|_| at + len <= n);
    let kind = field(4, 2).map(|b| u16::from_ne_bytes([b[0], b[1]]));
    let errno = field(16, 4).map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
    match (kind, errno) {
        (Some(NLMSG_ERROR), Some(0)) => Ok(()),
        (Some(NLMSG_ERROR), Some(e)) => Err(format!(
            "bringing up the loopback interface: {}",
            std::io::Error::from_raw_os_error(-e)
        )),
        _ => Err("bringing up the loopback interface: unexpected netlink answer".into()),
    }
}
