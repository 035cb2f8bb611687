//! [`Models`]: every model the server can use, built once at startup from the [`Config`]
//! and the environment, and [`Models::resolve`], which turns a `provider:model` or alias
//! into a ready provider plus price, or a message saying how to fix the spec.
//!
//! Missing API keys are not a startup error: a server without keys still starts, and
//! only resolving a model of that provider fails, naming the variable to set.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::{Config, ConfigError, ProviderKind};
use crate::cli::{CliKind, CliProvider};
use crate::pricing::{Price, builtin_price};
use crate::provider::Provider;
use crate::provider::anthropic::AnthropicProvider;
use crate::provider::http::{EndpointConfig, build_client};
use crate::provider::openai::{MaxTokensField, OpenAiProvider};
use crate::provider::retry::RetryPolicy;

/// Aliases that exist without a config file: the models the vendor's own client (Claude
/// Code 2.1.328) sends for them.
pub const BUILTIN_ALIASES: &[(&str, &str)] = &[
    ("haiku", "anthropic:claude-haiku-5-5"),
    ("sonnet", "anthropic:claude-sonnet-5-5"),
    ("opus", "anthropic:claude-opus-5-5"),
];

/// Default `[retry] first_byte_timeout_s`.
pub const DEFAULT_FIRST_BYTE_TIMEOUT_S: u64 = 60;

/// Default `[retry] idle_timeout_s`.
pub const DEFAULT_IDLE_TIMEOUT_S: u64 = 60;

/// Default output token limit per model call.
pub const DEFAULT_MAX_OUTPUT_TOKENS: u32 = 8192;

/// The built-in providers: name, kind, base URL variable, default base URL, key variable.
const BUILTIN_PROVIDERS: &[(&str, ProviderKind, &str, &str, &str)] = &[
    (
        "anthropic",
        ProviderKind::Anthropic,
        "ANTHROPIC_BASE_URL",
        "https://api.anthropic.com",
        "ANTHROPIC_API_KEY",
    ),
    (
        "openai",
        ProviderKind::OpenAi,
        "OPENAI_BASE_URL",
        "https://api.openai.com/v1",
        "OPENAI_API_KEY",
    ),
];

/// What runs an agent's commands: flotilla's own loop calling a model API, or a
/// coding-agent CLI's session. The one seam between the worker and its runtimes.
#[derive(Clone)]
pub enum Runtime {
    /// flotilla's loop with its own tools, over this provider's API.
    Api(Arc<dyn Provider>),
    /// A Claude Code or Codex session.
    Cli(Arc<CliProvider>),
}

/// A model ready to call.
#[derive(Clone)]
pub struct ResolvedModel {
    /// Canonical `provider:model`, e.g. `anthropic:claude-sonnet-5-5`; a CLI provider's
    /// bare name for the CLI's own default model (`claude-code`).
    pub id: String,
    /// The provider's own model name: everything after the first `:` (empty: the CLI's
    /// default).
    pub model: String,
    pub runtime: Runtime,
    /// USD per million tokens, when known.
    pub price: Option<Price>,
}

impl ResolvedModel {
    /// Whether its spend is known in dollars: a price, or a CLI that reports its cost.
    pub fn priced(&self) -> bool {
        self.price.is_some()
            || matches!(&self.runtime, Runtime::Cli(c) if c.kind == CliKind::ClaudeCode)
    }
}

impl std::fmt::Debug for ResolvedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResolvedModel")
            .field("id", &self.id)
            .field("model", &self.model)
            .field("price", &self.price)
            .finish_non_exhaustive()
    }
}

/// A model spec that cannot be used; the message says why and what to do instead.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ModelError(pub String);

enum Slot {
    Ready(Arc<dyn Provider>),
    MissingKey { env: String },
    Cli(Arc<CliProvider>),
}

/// All models the server can use, built once at startup.
pub struct Models {
    providers: BTreeMap<String, Slot>,
    aliases: BTreeMap<String, String>,
    prices: BTreeMap<String, Price>,
    /// The default spec and where it came from (for messages).
    default_model: Option<(String, String)>,
    retry: RetryPolicy,
    max_output_tokens: u32,
    /// The values of the configured provider keys, for redaction.
    secrets: Vec<String>,
}

impl std::fmt::Debug for Models {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Models")
            .field("providers", &self.providers())
            .field("aliases", &self.aliases)
            .field("default_model", &self.default_model)
            .field("retry", &self.retry)
            .field("max_output_tokens", &self.max_output_tokens)
            .finish_non_exhaustive()
    }
}

impl Models {
    /// Build every provider from `config`; `env` looks up environment variables (tests
    /// pass a closure; main passes `|k| std::env::var(k).ok()`).
    pub fn new(
        config: &Config,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Models, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            origin: config.origin(),
            message,
        };
        let env = |name: &str| {
            env(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let (providers, secrets) = build_providers(config, &env).map_err(&invalid)?;
        let aliases = build_aliases(config, &providers).map_err(&invalid)?;
        check_prices(config).map_err(&invalid)?;
        let max_output_tokens = config
            .max_output_tokens
            .unwrap_or(DEFAULT_MAX_OUTPUT_TOKENS);
        if max_output_tokens == 0 {
            return Err(invalid("max_output_tokens must be at least 1".to_string()));
        }
        let retry = retry_policy(config).map_err(&invalid)?;
        let mut models = Models {
            providers,
            aliases,
            prices: config.prices.clone(),
            default_model: None,
            retry,
            max_output_tokens,
            secrets,
        };
        // A typo in the file's default_model is caught at startup; FLOTILLA_MODEL is
        // checked when used, so a bad variable cannot keep the server from starting.
        if let Some(spec) = &config.default_model {
            models
                .target(spec.trim())
                .map_err(|e| invalid(format!("default_model = {spec:?}: {e}")))?;
        }
        models.default_model = models.choose_default(config, &env);
        Ok(models)
    }

    /// `FLOTILLA_MODEL`, else the config's `default_model`, else a model of a provider
    /// whose key is set; with where the choice came from.
    fn choose_default(
        &self,
        config: &Config,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Option<(String, String)> {
        let key_set = |name: &str| matches!(self.providers.get(name), Some(Slot::Ready(_)));
        if let Some(spec) = env("FLOTILLA_MODEL") {
            Some((spec, "FLOTILLA_MODEL".to_string()))
        } else if let Some(spec) = config.default_model.as_deref().map(str::trim) {
            Some((
                spec.to_string(),
                format!("default_model in the {}", config.origin()),
            ))
        } else if key_set("anthropic") {
            Some((
                "sonnet".to_string(),
                "the Anthropic key being set".to_string(),
            ))
        } else if key_set("openai") {
            Some((
                "openai:gpt-5".to_string(),
                "the OpenAI key being set".to_string(),
            ))
        } else {
            let clis: Vec<&CliProvider> = CliKind::ALL
                .iter()
                .filter_map(|k| match self.providers.get(k.name()) {
                    Some(Slot::Cli(c)) => Some(c.as_ref()),
                    _ => None,
                })
                .collect();
            crate::cli::detect_default(&clis).map(|name| {
                (
                    name.clone(),
                    format!("{name} being installed and logged in"),
                )
            })
        }
    }

    /// The default model spec: `FLOTILLA_MODEL`, else the config's `default_model`, else
    /// `sonnet` when the Anthropic key is set, else `openai:gpt-5` when the OpenAI key is.
    pub fn default_model(&self) -> Option<String> {
        self.default_model.as_ref().map(|(spec, _)| spec.clone())
    }

    /// The default model and where it came from, when it is a CLI found installed and
    /// logged in (no key, no configured default).
    pub fn default_cli(&self) -> Option<(String, String)> {
        let (spec, source) = self.default_model.as_ref()?;
        matches!(self.providers.get(spec), Some(Slot::Cli(_)))
            .then(|| (spec.clone(), source.clone()))
    }

    /// Resolve `spec` (`None` or empty: the default model) to a model ready to call.
    pub fn resolve(&self, spec: Option<&str>) -> Result<ResolvedModel, ModelError> {
        if let Some(spec) = spec.map(str::trim).filter(|s| !s.is_empty()) {
            return self.resolve_spec(spec);
        }
        let Some((spec, source)) = &self.default_model else {
            return Err(ModelError(
                "no model given and no default model is set: pass `model` (e.g. \"sonnet\" or \
                 \"openai:gpt-5\"), or set FLOTILLA_MODEL or an API key in the flotilla \
                 server's environment"
                    .to_string(),
            ));
        };
        self.resolve_spec(spec)
            .map_err(|e| ModelError(format!("default model {spec:?} (from {source}): {e}")))
    }

    /// The values of every configured provider key: text handed onward has them
    /// redacted.
    pub fn secret_values(&self) -> Vec<String> {
        self.secrets.clone()
    }

    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.retry
    }

    /// Output token limit per model call (config `max_output_tokens`, default 8192).
    pub fn max_output_tokens(&self) -> u32 {
        self.max_output_tokens
    }

    /// `(alias, "provider:model")`, sorted by alias.
    pub fn aliases(&self) -> Vec<(String, String)> {
        self.aliases
            .iter()
            .map(|(a, t)| (a.clone(), t.clone()))
            .collect()
    }

    /// The default model and the aliases' models that have no known price (built-in
    /// or `[prices]`), as `provider:model`, without repeats: what a dollar cap cannot
    /// see.
    pub fn unpriced(&self) -> Vec<String> {
        let specs = self
            .default_model
            .iter()
            .map(|(spec, _)| spec.as_str())
            .chain(self.aliases.keys().map(String::as_str));
        let mut unpriced: Vec<String> = specs
            .filter_map(|spec| self.target(spec).ok())
            .map(|(provider, model)| format!("{provider}:{model}"))
            .filter(|id| !self.prices.contains_key(id) && builtin_price(id).is_none())
            .collect();
        unpriced.sort();
        unpriced.dedup();
        unpriced
    }

    /// Provider names, sorted.
    pub fn providers(&self) -> Vec<String> {
        self.providers.keys().cloned().collect()
    }

    fn resolve_spec(&self, spec: &str) -> Result<ResolvedModel, ModelError> {
        let (provider_name, model) = self.target(spec)?;
        let runtime = match &self.providers[&provider_name] {
            Slot::Ready(provider) => Runtime::Api(Arc::clone(provider)),
            Slot::MissingKey { env } => {
                return Err(ModelError(format!(
                    "model {spec:?} needs an API key: set {env} in the flotilla server's \
                     environment (the `env` of its MCP server entry), or use another model"
                )));
            }
            Slot::Cli(cli) => {
                cli.check()
                    .map_err(|e| ModelError(format!("model {spec:?}: {e}")))?;
                Runtime::Cli(Arc::clone(cli))
            }
        };
        let id = if model.is_empty() {
            provider_name.clone()
        } else {
            format!("{provider_name}:{model}")
        };
        let price = self
            .prices
            .get(&id)
            .copied()
            .or_else(|| builtin_price(&id))
            .or_else(|| match &runtime {
                Runtime::Cli(cli) => cli_price(cli.kind, &model),
                Runtime::Api(_) => None,
            });
        Ok(ResolvedModel {
            id,
            model,
            runtime,
            price,
        })
    }

    /// `spec` → (known provider name, model name), without looking at keys.
    fn target(&self, spec: &str) -> Result<(String, String), ModelError> {
        if let Some(name) = self
            .providers
            .iter()
            .find(|(name, slot)| matches!(slot, Slot::Cli(_)) && name.eq_ignore_ascii_case(spec))
            .map(|(name, _)| name)
        {
            return Ok((name.clone(), String::new()));
        }
        let target = if spec.contains(':') {
            spec
        } else if let Some((_, target)) = self
            .aliases
            .iter()
            .find(|(a, _)| a.eq_ignore_ascii_case(spec))
        {
            target.as_str()
        } else {
            let hint = match guess_provider(spec) {
                Some(p) if self.providers.contains_key(p) => {
                    format!(" Did you mean \"{p}:{spec}\"?")
                }
                _ => String::new(),
            };
            return Err(ModelError(format!(
                "unknown model {spec:?}: give \"provider:model\" (e.g. \"anthropic:claude-sonnet-5-5\", \
                 \"openai:gpt-5\") or an alias.{hint} {}",
                self.known()
            )));
        };
        let Some((provider, model)) = target.split_once(':') else {
            return Err(ModelError(format!(
                "alias {spec:?} does not name a provider"
            )));
        };
        let provider = self
            .providers
            .keys()
            .find(|p| p.eq_ignore_ascii_case(provider.trim()))
            .ok_or_else(|| {
                ModelError(format!(
                    "unknown provider {provider:?} in model {spec:?}. {} Other providers can be \
                     added under [providers.NAME] in the config file.",
                    self.known()
                ))
            })?;
        let model = model.trim();
        if model.is_empty() && !matches!(self.providers[provider], Slot::Cli(_)) {
            return Err(ModelError(format!(
                "model {spec:?} has no model name after \"{provider}:\" (e.g. \"{provider}:{}\")",
                if provider == "anthropic" {
                    "claude-sonnet-5-5"
                } else {
                    "gpt-5"
                }
            )));
        }
        Ok((provider.clone(), model.to_string()))
    }

    fn known(&self) -> String {
        let aliases: Vec<String> = self
            .aliases
            .iter()
            .map(|(a, t)| format!("{a} = {t}"))
            .collect();
        format!(
            "Known providers: {}. Known aliases: {}.",
            join(self.providers.keys()),
            aliases.join(", ")
        )
    }
}

/// The built-in providers and the config's, each ready or waiting for its key; with the
/// values of the keys that are set (for redaction).
fn build_providers(
    config: &Config,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(BTreeMap<String, Slot>, Vec<String>), String> {
    let client = build_client().map_err(|e| format!("cannot set up the HTTP client: {e}"))?;
    let mut providers = BTreeMap::new();
    let mut secrets = Vec::new();
    let names = BUILTIN_PROVIDERS
        .iter()
        .map(|b| b.0.to_string())
        .chain(CliKind::ALL.iter().map(|k| k.name().to_string()))
        .chain(config.providers.keys().cloned());
    for name in names {
        if providers.contains_key(&name) {
            continue;
        }
        let (slot, secret) = build_provider(config, &name, &client, env)?;
        secrets.extend(secret);
        providers.insert(name, slot);
    }
    Ok((providers, secrets))
}

/// The built-in aliases with the config's over them; every target names a known provider.
fn build_aliases(
    config: &Config,
    providers: &BTreeMap<String, Slot>,
) -> Result<BTreeMap<String, String>, String> {
    let mut aliases: BTreeMap<String, String> = BUILTIN_ALIASES
        .iter()
        .map(|(a, t)| (a.to_string(), t.to_string()))
        .collect();
    for (alias, target) in &config.aliases {
        if alias.is_empty() || alias.contains(':') || alias.contains(char::is_whitespace) {
            return Err(format!(
                "alias {alias:?}: alias names cannot be empty or contain ':' or spaces"
            ));
        }
        let known = target
            .split_once(':')
            .is_some_and(|(p, m)| providers.contains_key(p) && !m.is_empty());
        if !known {
            return Err(format!(
                "alias {alias} = {target:?}: the target must be \"provider:model\" with a known \
                 provider ({}); add others under [providers.NAME]",
                join(providers.keys())
            ));
        }
        aliases.insert(alias.clone(), target.clone());
    }
    Ok(aliases)
}

/// Every configured price is keyed by `provider:model` and non-negative.
fn check_prices(config: &Config) -> Result<(), String> {
    for (id, price) in &config.prices {
        if !id.contains(':') {
            return Err(format!(
                "prices.{id:?}: price keys are \"provider:model\" ids, e.g. \"ollama:qwen3:8b\""
            ));
        }
        if !(price.input.is_finite() && price.output.is_finite())
            || price.input < 0.0
            || price.output < 0.0
        {
            return Err(format!(
                "prices.{id:?}: input and output must be non-negative USD per million tokens"
            ));
        }
    }
    Ok(())
}

/// `[retry]` over the defaults.
fn retry_policy(config: &Config) -> Result<RetryPolicy, String> {
    let defaults = RetryPolicy::default();
    let ms = |v: Option<u64>, d: Duration| v.map_or(d, Duration::from_millis);
    Ok(RetryPolicy {
        max_retries: config.retry.max_retries.unwrap_or(defaults.max_retries),
        initial_backoff: ms(config.retry.initial_backoff_ms, defaults.initial_backoff),
        max_backoff: ms(config.retry.max_backoff_ms, defaults.max_backoff),
        request_timeout: match config.retry.request_timeout_s {
            Some(0) => return Err("[retry] request_timeout_s must be at least 1".into()),
            Some(s) => Duration::from_secs(s),
            None => defaults.request_timeout,
        },
        timeout_retries: config
            .retry
            .timeout_retries
            .unwrap_or(defaults.timeout_retries),
    })
}

/// One provider slot: built-in defaults, then the `[providers.NAME]` table, then (for
/// the built-ins) the `*_BASE_URL` variable.
fn build_provider(
    config: &Config,
    name: &str,
    client: &reqwest::Client,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Slot, Vec<String>), String> {
    if name.is_empty() || name.contains(':') || name.contains(char::is_whitespace) {
        return Err(format!(
            "[providers.{name:?}]: provider names cannot be empty or contain ':' or spaces"
        ));
    }
    let table = config.providers.get(name).cloned().unwrap_or_default();
    let builtin = BUILTIN_PROVIDERS.iter().find(|b| b.0 == name);
    let builtin_cli = CliKind::ALL.into_iter().find(|k| k.name() == name);
    let kind = table
        .kind
        .or(builtin.map(|b| b.1))
        .or(builtin_cli.map(ProviderKind::from))
        .ok_or_else(|| {
            format!(
                "[providers.{name}] needs kind = \"openai\" (Chat Completions: OpenAI-compatible \
                 servers), \"anthropic\" (Messages API), \"claude-code\", \"codex\" or \"gemini-cli\" (CLI sessions)"
            )
        })?;
    if let Some(cli) = kind.cli() {
        let provider = crate::cli::build(name, cli, &cli_table(&table), env)?;
        let secrets = provider.secrets();
        return Ok((Slot::Cli(Arc::new(provider)), secrets));
    }
    refuse_cli_keys(name, &table)?;
    let base_url = builtin
        .and_then(|b| env(b.2))
        .or(table.base_url.clone())
        .or(builtin.map(|b| b.3.to_string()))
        .ok_or_else(|| {
            format!("[providers.{name}] needs base_url, e.g. \"http://localhost:11434/v1\"")
        })?;
    let base_url = base_url.trim().trim_end_matches('/').to_string();
    let scheme_ok = reqwest::Url::parse(&base_url)
        .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some());
    if !scheme_ok {
        return Err(format!(
            "[providers.{name}] base_url {base_url:?} is not an http:// or https:// URL"
        ));
    }
    let api_key_env = table
        .api_key_env
        .clone()
        .or(builtin.map(|b| b.4.to_string()));
    if api_key_env.as_deref().is_some_and(|v| v.trim().is_empty()) {
        return Err(format!(
            "[providers.{name}] api_key_env is empty: name a variable or leave it out"
        ));
    }
    if kind == ProviderKind::Anthropic && table.max_tokens_field.is_some() {
        return Err(format!(
            "[providers.{name}] max_tokens_field only applies to kind = \"openai\""
        ));
    }
    let endpoint = EndpointConfig {
        name: name.to_string(),
        api_key: api_key_env.as_deref().and_then(env),
        api_key_env,
        headers: table.headers.into_iter().collect(),
        base_url,
        idle_timeout: Some(Duration::from_secs(
            config
                .retry
                .idle_timeout_s
                .unwrap_or(DEFAULT_IDLE_TIMEOUT_S),
        )),
        first_byte_timeout: Some(Duration::from_secs(
            config
                .retry
                .first_byte_timeout_s
                .unwrap_or(DEFAULT_FIRST_BYTE_TIMEOUT_S),
        )),
        temperature: table.temperature,
    };
    // Built even when the key is missing, so bad headers are reported at startup.
    let provider: Arc<dyn Provider> = match kind {
        ProviderKind::Anthropic => Arc::new(AnthropicProvider::new(client.clone(), &endpoint)?),
        ProviderKind::ClaudeCode | ProviderKind::Codex | ProviderKind::Gemini => {
            return Err(format!("[providers.{name}] is a CLI kind"));
        }
        ProviderKind::OpenAi => {
            let field = table
                .max_tokens_field
                .unwrap_or_else(|| MaxTokensField::default_for(&endpoint.base_url));
            Arc::new(OpenAiProvider::new(client.clone(), &endpoint, field)?)
        }
    };
    if let (Some(var), None) = (&endpoint.api_key_env, &endpoint.api_key) {
        return Ok((Slot::MissingKey { env: var.clone() }, Vec::new()));
    }
    Ok((
        Slot::Ready(provider),
        endpoint.api_key.into_iter().collect(),
    ))
}

/// A CLI provider's part of its table, and the first model-API key it sets (refused).
fn cli_table(table: &super::ProviderConfig) -> crate::cli::CliTable<'_> {
    let api_only = [
        ("base_url", table.base_url.is_some()),
        ("api_key_env", table.api_key_env.is_some()),
        ("max_tokens_field", table.max_tokens_field.is_some()),
        ("headers", !table.headers.is_empty()),
        ("temperature", table.temperature.is_some()),
        (
            "max_concurrent_requests",
            table.max_concurrent_requests.is_some(),
        ),
    ];
    crate::cli::CliTable {
        command: table.command.as_deref(),
        args: &table.args,
        env: Some(&table.env),
        mcp_config: table.mcp_config.as_deref(),
        api_key: api_only.iter().find(|(_, set)| *set).map(|(key, _)| *key),
    }
}

/// The keys of a CLI provider are refused for a model API's.
fn refuse_cli_keys(name: &str, table: &super::ProviderConfig) -> Result<(), String> {
    let cli_only = [
        ("command", table.command.is_some()),
        ("args", !table.args.is_empty()),
        ("env", !table.env.is_empty()),
        ("mcp_config", table.mcp_config.is_some()),
    ];
    match cli_only.iter().find(|(_, set)| *set) {
        Some((key, _)) => Err(format!(
            "[providers.{name}] {key} applies to CLI kinds only (\"claude-code\", \"codex\", \"gemini-cli\")"
        )),
        None => Ok(()),
    }
}

/// A CLI model's price from the table of the vendor behind it: Claude Code's aliases
/// and `claude-…` names are Anthropic's models, Codex's are OpenAI's.
fn cli_price(kind: CliKind, model: &str) -> Option<Price> {
    match kind {
        CliKind::ClaudeCode => {
            let target = BUILTIN_ALIASES
                .iter()
                .find(|(a, _)| a.eq_ignore_ascii_case(model))
                .map_or_else(|| format!("anthropic:{model}"), |(_, t)| t.to_string());
            builtin_price(&target)
        }
        CliKind::Codex => builtin_price(&format!("openai:{model}")),
        CliKind::Gemini => builtin_price(&format!("google:{model}")),
    }
}

/// A bare model name that obviously belongs to a built-in provider.
fn guess_provider(model: &str) -> Option<&'static str> {
    let model = model.to_ascii_lowercase();
    if model.starts_with("claude") {
        Some("anthropic")
    } else if ["gpt-", "o1", "o3", "o4", "chatgpt"]
        .iter()
        .any(|p| model.starts_with(p))
    {
        Some("openai")
    } else {
        None
    }
}

fn join<'a>(names: impl Iterator<Item = &'a String>) -> String {
    names.map(String::as_str).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
