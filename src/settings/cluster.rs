//! The settings of a fleet of several nodes: the shared store's URL (`--store`,
//! `FLOTILLA_STORE`, `store`), this node's name (`--node`, `FLOTILLA_NODE`, default the
//! host name) and `[cluster]`.

use std::time::Duration;

use crate::config::ClusterConfig;

/// Default `[cluster] lease_s`.
pub const DEFAULT_LEASE_S: u64 = 15;
/// The shortest lease: heartbeats come every third of it.
const MIN_LEASE_S: u64 = 2;

/// `[cluster]` and the node's name, checked.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    pub node: String,
    pub lease: Duration,
    /// Agents running a command at once across every node.
    pub max_running: Option<usize>,
    pub remote: Option<String>,
}

impl ClusterSettings {
    pub fn resolve(node: Option<String>, config: &ClusterConfig) -> anyhow::Result<Self> {
        let node = match node {
            Some(n) => n,
            None => nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .unwrap_or_else(|| "node".into()),
        };
        check_node(&node)?;
        let lease_s = config.lease_s.unwrap_or(DEFAULT_LEASE_S);
        if lease_s < MIN_LEASE_S {
            anyhow::bail!(
                "invalid config: [cluster] lease_s = {lease_s} is too short; give at least {MIN_LEASE_S} (default {DEFAULT_LEASE_S})"
            );
        }
        Ok(Self {
            node,
            lease: Duration::from_secs(lease_s),
            max_running: config.max_running,
            remote: config.remote.clone(),
        })
    }
}

/// A node name: 1–64 of `A-Z a-z 0-9 . _ -`.
fn check_node(node: &str) -> anyhow::Result<()> {
    let ok = (1..=64).contains(&node.len())
        && node
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !ok {
        anyhow::bail!(
            "--node `{node}` is not a node name: use 1 to 64 letters, digits, '.', '_' or '-' (e.g. --node build-1)"
        );
    }
    Ok(())
}

/// The shared store's URL, checked: PostgreSQL only, and not with `--ephemeral`.
pub fn store(url: Option<String>, ephemeral: bool) -> anyhow::Result<Option<String>> {
    let Some(url) = url.filter(|u| !u.trim().is_empty()) else {
        return Ok(None);
    };
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        anyhow::bail!(
            "--store takes a postgres:// (or postgresql://) URL, not `{}`; omit it to keep the fleet in SQLite in the data directory",
            crate::store::postgres::redact(&url)
        );
    }
    if ephemeral {
        anyhow::bail!(
            "--ephemeral keeps nothing, and --store keeps the fleet in PostgreSQL: choose one"
        );
    }
    Ok(Some(url))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_leases_and_urls_are_checked() {
        let c =
            ClusterSettings::resolve(Some("build-1".into()), &ClusterConfig::default()).unwrap();
        assert_eq!(c.node, "build-1");
        assert_eq!(c.lease, Duration::from_secs(15));
        let e =
            ClusterSettings::resolve(Some("a b".into()), &ClusterConfig::default()).unwrap_err();
        assert!(e.to_string().contains("not a node name"), "{e}");
        let short = ClusterConfig {
            lease_s: Some(1),
            ..Default::default()
        };
        let e = ClusterSettings::resolve(Some("a".into()), &short).unwrap_err();
        assert!(e.to_string().contains("lease_s = 1"), "{e}");
        assert!(ClusterSettings::resolve(None, &ClusterConfig::default()).is_ok());

        assert_eq!(store(None, false).unwrap(), None);
        let url = "postgres://u:pw@db/fleet".to_string();
        assert_eq!(store(Some(url.clone()), false).unwrap(), Some(url.clone()));
        let e = store(Some("mysql://u:pw@db/x".into()), false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("postgres://") && !e.contains("pw@"), "{e}");
        assert!(store(Some(url), true).is_err());
    }
}
