//! Where the fleet is shared and who this node is: the store URL (`--store`,
//! `FLOTILLA_STORE`, `store`: PostgreSQL only), the node's name (`--node`,
//! `FLOTILLA_NODE`, default the host name) and `[cluster]` (lease, fleet-wide run
//! slots, git remote).

use std::time::Duration;

use crate::config::ClusterConfig;
use crate::store::postgres::redact;

/// How long a lease lasts by default, and at least.
const DEFAULT_LEASE_S: u64 = 15;
const MIN_LEASE_S: u64 = 2;
const MAX_NODE_LEN: usize = 64;

/// This node and the `[cluster]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSettings {
    /// This node's name: written with every event and lease.
    pub node: String,
    /// How long an agent's lease lasts without renewal.
    pub lease: Duration,
    /// Agents running a command at once across every node.
    pub max_running: Option<usize>,
    /// The git remote worktree agents' branches go through (`[cluster] remote`).
    pub remote: crate::worktree::GitRemote,
}

impl ClusterSettings {
    /// `--node` (else the host name) and `[cluster]`, checked.
    pub fn resolve(node: Option<String>, config: &ClusterConfig) -> anyhow::Result<Self> {
        let node = match node {
            Some(n) => check_node(&n, "--node / FLOTILLA_NODE")?,
            None => {
                let host = nix::unistd::gethostname().map_err(|e| {
                    anyhow::anyhow!("cannot read the host name ({e}): pass --node NAME")
                })?;
                check_node(&host.to_string_lossy(), "the host name (pass --node NAME)")?
            }
        };
        let lease_s = config.lease_s.unwrap_or(DEFAULT_LEASE_S);
        if lease_s < MIN_LEASE_S {
            anyhow::bail!(
                "invalid config: [cluster] lease_s = {lease_s}: a lease must last at least {MIN_LEASE_S} seconds"
            );
        }
        let remote = crate::worktree::GitRemote::parse(config.remote.as_deref())
            .map_err(|e| anyhow::anyhow!("invalid config: {e}"))?;
        Ok(Self {
            node,
            lease: Duration::from_secs(lease_s),
            max_running: config.max_running,
            remote,
        })
    }
}

fn check_node(name: &str, origin: &str) -> anyhow::Result<String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NODE_LEN
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !ok {
        anyhow::bail!(
            "node name {name:?} from {origin} is not usable: use 1 to {MAX_NODE_LEN} of A-Z a-z 0-9 . _ -"
        );
    }
    Ok(name.to_string())
}

/// The shared store's URL, checked: PostgreSQL only, and not with `--ephemeral`.
pub fn store_url(url: Option<String>, ephemeral: bool) -> anyhow::Result<Option<String>> {
    let Some(url) = url else { return Ok(None) };
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        anyhow::bail!(
            "the fleet store {} (--store / FLOTILLA_STORE / store) is not a PostgreSQL URL: only postgres://… and postgresql://… are accepted; leave it unset to keep the fleet in SQLite in the data directory",
            redact(&url)
        );
    }
    if ephemeral {
        anyhow::bail!(
            "--ephemeral keeps nothing, but a shared fleet store is set (--store / FLOTILLA_STORE / store): use one or the other"
        );
    }
    Ok(Some(url))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn only_postgres_urls_are_a_store_and_never_with_ephemeral() {
        assert_eq!(store_url(None, true).unwrap(), None);
        let pg = "postgresql://u:pw@db/fleet".to_string();
        assert_eq!(
            store_url(Some(pg.clone()), false).unwrap(),
            Some(pg.clone())
        );
        let e = store_url(Some("mysql://u:pw@db/x".into()), false)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("postgres://") && e.contains("SQLite in the data directory"),
            "{e}"
        );
        assert!(!e.contains("pw@"), "{e}");
        let e = store_url(Some(pg), true).unwrap_err().to_string();
        assert!(e.contains("--ephemeral"), "{e}");
    }

    #[test]
    fn node_names_are_checked_and_default_to_the_host_name() {
        let c = ClusterConfig::default();
        let s = ClusterSettings::resolve(Some("node-1.a_b".into()), &c).unwrap();
        assert_eq!(s.node, "node-1.a_b");
        assert_eq!(s.lease, Duration::from_secs(15));
        for bad in ["", "a b", "ü", &"x".repeat(65)] {
            let e = ClusterSettings::resolve(Some(bad.into()), &c)
                .unwrap_err()
                .to_string();
            assert!(e.contains("A-Z a-z 0-9 . _ -"), "{e}");
        }
        let host = nix::unistd::gethostname().unwrap();
        assert_eq!(
            ClusterSettings::resolve(None, &c).unwrap().node,
            host.to_string_lossy()
        );
    }

    #[test]
    fn cluster_keys_resolve_and_a_short_lease_is_refused() {
        let c = ClusterConfig {
            lease_s: Some(3),
            max_running: Some(40),
            remote: None,
        };
        let s = ClusterSettings::resolve(Some("n".into()), &c).unwrap();
        assert_eq!(s.lease, Duration::from_secs(3));
        assert_eq!(s.max_running, Some(40));
        assert_eq!(s.remote, crate::worktree::GitRemote::Own);
        let c = ClusterConfig {
            remote: Some("origin".into()),
            ..ClusterConfig::default()
        };
        let s = ClusterSettings::resolve(Some("n".into()), &c).unwrap();
        assert_eq!(s.remote, crate::worktree::GitRemote::Named("origin".into()));
        let c = ClusterConfig {
            remote: Some("not a remote".into()),
            ..ClusterConfig::default()
        };
        let e = ClusterSettings::resolve(Some("n".into()), &c)
            .unwrap_err()
            .to_string();
        assert!(e.contains("invalid config: [cluster] remote"), "{e}");
        let c = ClusterConfig {
            lease_s: Some(1),
            ..ClusterConfig::default()
        };
        let e = ClusterSettings::resolve(Some("n".into()), &c)
            .unwrap_err()
            .to_string();
        assert!(e.contains("[cluster] lease_s"), "{e}");
    }
}
