//! The guard rails' settings: flags and environment variables over the config
//! file's `[limits]` (and each provider's `max_concurrent_requests`), checked once at
//! start so a bad value is an error that names it.

use std::time::Duration;

use super::budget::{Budget, Caps, Spend};
use super::circuit::CircuitPolicy;
use super::{DEFAULT_MAX_RUNNING, DEFAULT_STALL_TIMEOUT, FleetOptions};
use crate::config::{Config, ConfigError};
use crate::plan::redact::Redactor;

/// What the command line (or environment) says; each overrides `[limits]`.
#[derive(Debug, Clone, Default)]
pub struct GuardRails {
    pub max_cost_usd: Option<f64>,
    pub max_tokens: Option<u64>,
    pub max_running: Option<usize>,
    pub stall_timeout_s: Option<u64>,
    pub ask_timeout_s: Option<u64>,
}

/// Settled values: everything the fleet's guard rails need, so the config is read once.
#[derive(Debug, Clone)]
pub struct Settled {
    pub caps: Caps,
    pub max_running: usize,
    pub stall_timeout: Duration,
    /// A question unanswered this long is answered for the agent (`None`: it waits).
    pub ask_timeout: Option<Duration>,
    pub circuit: CircuitPolicy,
    /// Most characters of each dependency's answer handed to a dependent.
    pub handoff_max_chars: usize,
    /// Each provider's `max_concurrent_requests` (`None`: no limit).
    pub provider_limits: std::collections::BTreeMap<String, Option<usize>>,
}

impl GuardRails {
    /// Merge over `config.limits` and check every value.
    pub fn over(&self, config: &Config) -> Result<Settled, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            origin: config.origin(),
            message,
        };
        let l = &config.limits;
        let max_cost_usd = self.max_cost_usd.or(l.max_cost_usd);
        if let Some(c) = max_cost_usd
            && !(c.is_finite() && c > 0.0)
        {
            return Err(invalid(format!(
                "max_cost_usd (--max-cost-usd / FLOTILLA_MAX_COST_USD / [limits]) must be a positive number of USD; got {c}"
            )));
        }
        let max_tokens = self.max_tokens.or(l.max_tokens);
        if max_tokens == Some(0) {
            return Err(invalid(
                "max_tokens (--max-tokens / FLOTILLA_MAX_TOKENS / [limits]) must be at least 1; leave it out for no cap".into(),
            ));
        }
        let stall = self
            .stall_timeout_s
            .or(l.stall_timeout_s)
            .map_or(DEFAULT_STALL_TIMEOUT, Duration::from_secs);
        if stall.is_zero() {
            return Err(invalid(
                "stall_timeout_s (--stall-timeout-s / [limits]) must be at least 1 second".into(),
            ));
        }
        if let (Some(top), Some(limits)) = (config.ask_timeout_s, l.ask_timeout_s)
            && top != limits
        {
            return Err(invalid(format!(
                "ask_timeout_s is set twice, to {top} at the top and to {limits} in [limits]; keep one"
            )));
        }
        let ask_timeout = self
            .ask_timeout_s
            .or(config.ask_timeout_s)
            .or(l.ask_timeout_s)
            .map(Duration::from_secs);
        if ask_timeout.is_some_and(|t| t.is_zero()) {
            return Err(invalid(
                "ask_timeout_s (--ask-timeout-s / [limits]) must be at least 1 second; leave it out to wait for every answer".into(),
            ));
        }
        let defaults = CircuitPolicy::default();
        let circuit = CircuitPolicy {
            failures: l.circuit_failures.unwrap_or(defaults.failures),
            open_for: l
                .circuit_open_s
                .map_or(defaults.open_for, Duration::from_secs),
        };
        if circuit.failures == 0 || circuit.open_for.is_zero() {
            return Err(invalid(
                "[limits] circuit_failures and circuit_open_s must be at least 1".into(),
            ));
        }
        let handoff_max_chars = config
            .handoff_max_chars
            .unwrap_or(super::DEFAULT_HANDOFF_MAX_CHARS);
        if handoff_max_chars == 0 {
            return Err(invalid(
                "handoff_max_chars must be at least 1 (characters of each dependency's answer handed on)".into(),
            ));
        }
        for (name, p) in &config.providers {
            if p.max_concurrent_requests == Some(0) {
                return Err(invalid(format!(
                    "[providers.{name}] max_concurrent_requests must be at least 1; leave it out for no limit"
                )));
            }
        }
        Ok(Settled {
            caps: Caps {
                max_cost_usd,
                max_tokens,
            },
            max_running: self
                .max_running
                .or(l.max_running)
                .unwrap_or(DEFAULT_MAX_RUNNING),
            stall_timeout: stall,
            ask_timeout,
            circuit,
            handoff_max_chars,
            provider_limits: ["anthropic", "openai"]
                .into_iter()
                .map(|n| (n.to_string(), None))
                .chain(
                    config
                        .providers
                        .iter()
                        .map(|(n, p)| (n.clone(), p.max_concurrent_requests)),
                )
                .collect(),
        })
    }
}

impl Settled {
    /// The fleet's options; `retired`: what agents deleted earlier had spent;
    /// `secrets`: the values of the provider keys, redacted wherever text is handed on.
    pub fn options(&self, retired: Spend, secrets: Vec<String>) -> FleetOptions {
        FleetOptions {
            redactor: Redactor::new(secrets),
            handoff_max_chars: self.handoff_max_chars,
            budget: Budget::new(self.caps, retired),
            max_running: self.max_running,
            stall_timeout: self.stall_timeout,
            ask_timeout: self.ask_timeout,
            circuit: self.circuit,
            provider_limits: self.provider_limits.clone(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_config_and_bad_values_are_named() {
        let config = Config::from_toml_str(
            "[limits]\nmax_cost_usd = 2.0\nmax_running = 4\ncircuit_open_s = 5\n[providers.anthropic]\nmax_concurrent_requests = 3\n",
        )
        .unwrap();
        let s = GuardRails {
            max_running: Some(0),
            ..Default::default()
        }
        .over(&config)
        .unwrap();
        assert_eq!(s.caps.max_cost_usd, Some(2.0));
        assert_eq!(s.max_running, 0, "the flag wins; 0 is no limit");
        assert_eq!(s.circuit.open_for, Duration::from_secs(5));
        assert_eq!(s.stall_timeout, DEFAULT_STALL_TIMEOUT);
        let o = s.options(Spend::default(), Vec::new());
        assert_eq!(o.provider_limits["anthropic"], Some(3));
        assert_eq!(o.provider_limits["openai"], None);

        let e = GuardRails {
            max_cost_usd: Some(-1.0),
            ..Default::default()
        }
        .over(&config)
        .unwrap_err()
        .to_string();
        assert!(e.contains("max_cost_usd"), "{e}");
        let bad =
            Config::from_toml_str("[providers.anthropic]\nmax_concurrent_requests = 0\n").unwrap();
        let e = GuardRails::default().over(&bad).unwrap_err().to_string();
        assert!(e.contains("max_concurrent_requests"), "{e}");
    }

    #[test]
    fn the_ask_timeout_waits_by_default_and_is_set_once() {
        let none = GuardRails::default().over(&Config::default()).unwrap();
        assert_eq!(none.ask_timeout, None, "a question waits for its answer");
        for toml in ["ask_timeout_s = 30\n", "[limits]\nask_timeout_s = 30\n"] {
            let config = Config::from_toml_str(toml).unwrap();
            let s = GuardRails::default().over(&config).unwrap();
            assert_eq!(s.ask_timeout, Some(Duration::from_secs(30)), "{toml}");
            let flag = GuardRails {
                ask_timeout_s: Some(5),
                ..Default::default()
            };
            assert_eq!(
                flag.over(&config).unwrap().ask_timeout,
                Some(Duration::from_secs(5)),
                "the flag wins"
            );
        }
        let twice =
            Config::from_toml_str("ask_timeout_s = 30\n[limits]\nask_timeout_s = 60\n").unwrap();
        let e = GuardRails::default().over(&twice).unwrap_err().to_string();
        assert!(e.contains("set twice"), "{e}");
        let zero = Config::from_toml_str("[limits]\nask_timeout_s = 0\n").unwrap();
        let e = GuardRails::default().over(&zero).unwrap_err().to_string();
        assert!(e.contains("at least 1 second"), "{e}");
    }
}
