//! Tests for [`Models`]: building from config + environment, and resolving specs.

use std::collections::HashMap;

use super::*;
use crate::pricing::Price;

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k: &str| map.get(k).cloned()
}

fn models(toml: &str, env: &[(&str, &str)]) -> Models {
    Models::new(&Config::from_toml_str(toml).unwrap(), &env_of(env)).unwrap()
}

fn build_error(toml: &str) -> String {
    match Models::new(&Config::from_toml_str(toml).unwrap(), &env_of(&[])) {
        Ok(_) => panic!("expected an error for {toml:?}"),
        Err(e) => e.to_string(),
    }
}

fn resolve_error(models: &Models, spec: Option<&str>) -> String {
    match models.resolve(spec) {
        Ok(m) => panic!("expected an error for {spec:?}, got {m:?}"),
        Err(e) => e.to_string(),
    }
}

const KEYS: &[(&str, &str)] = &[
    ("ANTHROPIC_API_KEY", "sk-ant"),
    ("OPENAI_API_KEY", "sk-oai"),
];

const OLLAMA: &str = r#"
[aliases]
fast = "ollama:qwen3:8b"
[providers.ollama]
kind = "openai"
base_url = "http://localhost:11434/v1"
[prices."ollama:qwen3:8b"]
input = 0.0
output = 0.0
"#;

#[test]
fn builtin_alias_resolves_with_price() {
    let m = models("", KEYS).resolve(Some("sonnet")).unwrap();
    assert_eq!(m.id, "anthropic:claude-sonnet-5-5");
    assert_eq!(m.model, "claude-sonnet-5-5");
    assert_eq!(
        m.price,
        Some(Price {
            input: 2.0,
            output: 10.0
        })
    );
    let haiku = models("", KEYS).resolve(Some("haiku")).unwrap();
    assert_eq!(haiku.id, "anthropic:claude-haiku-5-5");
    assert_eq!(
        haiku.price,
        Some(Price {
            input: 0.10,
            output: 0.50
        })
    );
    // Case and surrounding spaces do not matter for aliases.
    assert_eq!(
        models("", KEYS).resolve(Some(" Opus ")).unwrap().id,
        "anthropic:claude-opus-5-5"
    );
}

#[test]
fn provider_model_splits_at_the_first_colon() {
    let models = models(OLLAMA, KEYS);
    let m = models.resolve(Some("ollama:qwen3:8b")).unwrap();
    assert_eq!(m.id, "ollama:qwen3:8b");
    assert_eq!(m.model, "qwen3:8b");
    assert_eq!(
        m.price,
        Some(Price {
            input: 0.0,
            output: 0.0
        })
    );
    let fast = models.resolve(Some("fast")).unwrap();
    assert_eq!(
        (fast.id.as_str(), fast.model.as_str()),
        ("ollama:qwen3:8b", "qwen3:8b")
    );
    let other = models.resolve(Some("ollama:llama3.2")).unwrap();
    assert_eq!(other.price, None, "unknown models have no price");
    let dated = models
        .resolve(Some("anthropic:claude-haiku-4-5-20251001"))
        .unwrap();
    assert_eq!(dated.model, "claude-haiku-4-5-20251001");
    assert_eq!(dated.price.map(|p| p.input), Some(1.0));
}

#[test]
fn missing_key_names_the_variable() {
    let models = models(
        &format!(
            "{OLLAMA}\n[providers.router]\nkind = \"openai\"\nbase_url = \"https://r.example/api/v1\"\napi_key_env = \"ROUTER_KEY\""
        ),
        &[("OPENAI_API_KEY", "sk"), ("ANTHROPIC_API_KEY", "   ")],
    );
    let err = resolve_error(&models, Some("sonnet"));
    assert!(
        err.contains("set ANTHROPIC_API_KEY in the flotilla server's environment"),
        "{err}"
    );
    let err = resolve_error(&models, Some("router:some/model"));
    assert!(err.contains("ROUTER_KEY"), "{err}");
    // No api_key_env: no key needed.
    assert!(models.resolve(Some("ollama:qwen3:8b")).is_ok());
    assert!(models.resolve(Some("openai:gpt-5")).is_ok());
}

#[test]
fn unknown_provider_lists_the_known_ones() {
    let err = resolve_error(&models(OLLAMA, KEYS), Some("gemini:gemini-2.5-pro"));
    assert!(err.contains("\"gemini\""), "{err}");
    assert!(
        err.contains("Known providers: anthropic, claude-code, codex, gemini-cli, ollama, openai"),
        "{err}"
    );
    assert!(err.contains("fast = ollama:qwen3:8b"), "{err}");
    assert!(err.contains("[providers.NAME]"), "{err}");
}

#[test]
fn unknown_alias_and_missing_prefix_are_explained() {
    let models = models("", KEYS);
    let err = resolve_error(&models, Some("sonet"));
    assert!(err.contains("unknown model \"sonet\""), "{err}");
    assert!(err.contains("haiku = anthropic:claude-haiku-5-5"), "{err}");
    let err = resolve_error(&models, Some("claude-sonnet-4-5"));
    assert!(
        err.contains("Did you mean \"anthropic:claude-sonnet-4-5\"?"),
        "{err}"
    );
    let err = resolve_error(&models, Some("gpt-5"));
    assert!(err.contains("Did you mean \"openai:gpt-5\"?"), "{err}");
    let err = resolve_error(&models, Some("openai:"));
    assert!(err.contains("no model name"), "{err}");
}

#[test]
fn default_model_chain() {
    // FLOTILLA_MODEL first.
    let env = [("FLOTILLA_MODEL", "opus"), ("ANTHROPIC_API_KEY", "k")];
    let m = models("default_model = \"haiku\"", &env);
    assert_eq!(m.default_model().as_deref(), Some("opus"));
    assert_eq!(m.resolve(None).unwrap().id, "anthropic:claude-opus-5-5");
    assert_eq!(m.resolve(Some("")).unwrap().id, "anthropic:claude-opus-5-5");
    // Then the config file.
    let m = models("default_model = \"haiku\"", &[("OPENAI_API_KEY", "k")]);
    assert_eq!(m.default_model().as_deref(), Some("haiku"));
    // Then whichever key is set, Anthropic first.
    assert_eq!(models("", KEYS).default_model().as_deref(), Some("sonnet"));
    let m = models("", &[("OPENAI_API_KEY", "k")]);
    assert_eq!(m.default_model().as_deref(), Some("openai:gpt-5"));
    assert_eq!(m.resolve(None).unwrap().id, "openai:gpt-5");
    // Nothing at all.
    let m = models("", &[]);
    assert_eq!(m.default_model(), None);
    let err = resolve_error(&m, None);
    assert!(
        err.contains("pass `model`") && err.contains("FLOTILLA_MODEL"),
        "{err}"
    );
}

#[test]
fn bad_flotilla_model_fails_at_resolve_naming_the_variable() {
    let m = models(
        "",
        &[("FLOTILLA_MODEL", "sonet"), ("ANTHROPIC_API_KEY", "k")],
    );
    let err = resolve_error(&m, None);
    assert!(
        err.contains("from FLOTILLA_MODEL") && err.contains("unknown model \"sonet\""),
        "{err}"
    );
    // An explicit model still works.
    assert!(m.resolve(Some("sonnet")).is_ok());
}

#[test]
fn builtin_base_urls_and_overrides() {
    // A [providers.anthropic] table tunes the built-in without repeating kind or key.
    let m = models(
        "[providers.anthropic]\nbase_url = \"https://proxy.example/\"",
        KEYS,
    );
    assert!(m.resolve(Some("sonnet")).is_ok());
    // Config aliases can replace built-ins.
    let m = models("[aliases]\nsonnet = \"openai:gpt-5\"", KEYS);
    assert_eq!(m.resolve(Some("sonnet")).unwrap().id, "openai:gpt-5");
    assert!(
        m.aliases()
            .contains(&("sonnet".to_string(), "openai:gpt-5".to_string()))
    );
    assert_eq!(
        m.providers(),
        vec!["anthropic", "claude-code", "codex", "gemini-cli", "openai"]
    );
}

#[test]
fn retry_and_output_limit_come_from_config() {
    let m = models("", &[]);
    assert_eq!(m.retry_policy(), &RetryPolicy::default());
    assert_eq!(m.max_output_tokens(), 8192);
    let m = models(
        "max_output_tokens = 1000\n[retry]\nmax_retries = 1\ninitial_backoff_ms = 20\nmax_backoff_ms = 500",
        &[],
    );
    assert_eq!(m.max_output_tokens(), 1000);
    assert_eq!(
        m.retry_policy(),
        &RetryPolicy {
            max_retries: 1,
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(500),
            ..RetryPolicy::default()
        }
    );
}

#[test]
fn invalid_configs_are_explained() {
    let cases = [
        (
            "[providers.x]\nbase_url = \"http://h\"",
            "needs kind = \"openai\"",
        ),
        ("[providers.x]\nkind = \"openai\"", "needs base_url"),
        (
            "[providers.x]\nkind = \"openai\"\nbase_url = \"localhost:8080\"",
            "not an http",
        ),
        (
            "[providers.\"a:b\"]\nkind = \"openai\"\nbase_url = \"http://h\"",
            "cannot be empty or contain ':'",
        ),
        (
            "[providers.anthropic]\nmax_tokens_field = \"max_tokens\"",
            "only applies to kind = \"openai\"",
        ),
        (
            "[providers.x]\nkind = \"openai\"\nbase_url = \"http://h\"\nheaders = { \"bad header\" = \"v\" }",
            "not a valid HTTP header name",
        ),
        (
            "[aliases]\nfast = \"ollama:qwen3\"",
            "known provider (anthropic, claude-code, codex, gemini-cli, openai)",
        ),
        ("[aliases]\nfast = \"qwen3\"", "must be \"provider:model\""),
        (
            "default_model = \"sonet\"",
            "default_model = \"sonet\": unknown model",
        ),
        (
            "[prices.gpt-5]\ninput = 1.0\noutput = 2.0",
            "price keys are \"provider:model\"",
        ),
        (
            "[prices.\"openai:x\"]\ninput = -1.0\noutput = 2.0",
            "non-negative",
        ),
        ("max_output_tokens = 0", "at least 1"),
    ];
    for (toml, expected) in cases {
        let err = build_error(toml);
        assert!(err.contains(expected), "{toml:?}: {err}");
        assert!(err.starts_with("invalid config: "), "{toml:?}: {err}");
    }
}
