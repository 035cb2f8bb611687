//! Model prices (USD per million tokens) for the `cost_usd` figures in agent status.
//!
//! [`builtin_price`] knows the public list prices of Anthropic's and OpenAI's current
//! models; the config file's `[prices."provider:model"]` tables override or extend it
//! (see `config::Models::resolve`). Unknown models have no price, so their cost is `null`
//! rather than a made-up number.
//!
//! Cached prompt tokens are counted at the full input price ([`crate::model::Usage`] does
//! not separate them), so for Anthropic with prompt caching the cost is an upper bound.

use serde::Deserialize;

/// What has been spent: dollars over priced calls, and tokens over every call.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Spend {
    pub cost_usd: f64,
    pub tokens: u64,
}

/// Costs to a tenth of a cent's hundredth: enough precision, fewer bytes.
pub fn round_cost(c: f64) -> f64 {
    (c * 100_000.0).round() / 100_000.0
}

use crate::model::Usage;

/// A model's price in USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// USD per million prompt tokens.
    pub input: f64,
    /// USD per million generated tokens.
    pub output: f64,
}

impl Price {
    /// USD for `usage`. Prompt-cache reads cost a tenth of the input price and cache
    /// writes a quarter more (Anthropic's and OpenAI's published multipliers).
    pub fn cost(&self, usage: Usage) -> f64 {
        let cached = usage.cache_read_tokens + usage.cache_write_tokens;
        let plain = usage.input_tokens.saturating_sub(cached) as f64;
        let input = plain * self.input
            + usage.cache_read_tokens as f64 * self.input * 0.1
            + usage.cache_write_tokens as f64 * self.input * 1.25;
        (input + usage.output_tokens as f64 * self.output) / 1_000_000.0
    }
}

/// `(provider, model, input, output)`; models without a date suffix.
///
/// Sources (list prices as of 2026-12-03; `claude-haiku-5-5` from Claude Code 2.1.328's
/// model table): Anthropic's pricing page and model overviews
/// (platform.claude.com/docs/en/about-claude/pricing); OpenAI's model pages, and for
/// the GPT-6 family LiteLLM's price table. A wrong price makes a dollar cap wrong:
/// override any of these under `[prices]`.
const BUILTIN: &[(&str, &str, f64, f64)] = &[
    ("anthropic", "claude-fable-5-1", 10.0, 50.0),
    ("anthropic", "claude-opus-5-5", 4.0, 20.0),
    ("anthropic", "claude-sonnet-5-5", 2.0, 10.0),
    ("anthropic", "claude-haiku-5-5", 0.10, 0.50),
    ("anthropic", "claude-sonnet-5", 2.0, 10.0),
    ("anthropic", "claude-opus-4-8", 5.0, 25.0),
    ("anthropic", "claude-opus-4-7", 5.0, 25.0),
    ("anthropic", "claude-opus-4-6", 5.0, 25.0),
    ("anthropic", "claude-sonnet-4-6", 3.0, 15.0),
    ("anthropic", "claude-opus-4-5", 5.0, 25.0),
    ("anthropic", "claude-opus-4-1", 15.0, 75.0),
    ("anthropic", "claude-opus-4-0", 15.0, 75.0),
    ("anthropic", "claude-opus-4", 15.0, 75.0),
    ("anthropic", "claude-sonnet-4-5", 3.0, 15.0),
    ("anthropic", "claude-sonnet-4-0", 3.0, 15.0),
    ("anthropic", "claude-sonnet-4", 3.0, 15.0),
    ("anthropic", "claude-3-7-sonnet", 3.0, 15.0),
    ("anthropic", "claude-3-5-sonnet", 3.0, 15.0),
    ("anthropic", "claude-haiku-4-5", 1.0, 5.0),
    ("anthropic", "claude-3-5-haiku", 0.8, 4.0),
    ("anthropic", "claude-3-haiku", 0.25, 1.25),
    ("anthropic", "claude-3-opus", 15.0, 75.0),
    ("openai", "gpt-6.2-astra", 8.0, 40.0),
    ("openai", "gpt-6.2-sol", 2.0, 10.0),
    ("openai", "gpt-6.1-sol", 2.0, 10.0),
    ("openai", "gpt-6-astra", 10.0, 50.0),
    ("openai", "gpt-6-sol", 2.0, 10.0),
    ("openai", "gpt-6-luna", 0.10, 0.50),
    ("openai", "gpt-5.5", 5.0, 30.0),
    ("openai", "gpt-5", 1.25, 10.0),
    ("openai", "gpt-5.1", 1.25, 10.0),
    ("openai", "gpt-5-codex", 1.25, 10.0),
    ("openai", "gpt-5.1-codex", 1.25, 10.0),
    ("openai", "gpt-5-mini", 0.25, 2.0),
    ("openai", "gpt-5.1-codex-mini", 0.25, 2.0),
    ("openai", "gpt-5-nano", 0.05, 0.40),
    ("openai", "gpt-5-pro", 15.0, 120.0),
    ("openai", "gpt-4.1", 2.0, 8.0),
    ("openai", "gpt-4.1-mini", 0.40, 1.60),
    ("openai", "gpt-4.1-nano", 0.10, 0.40),
    ("openai", "gpt-4o", 2.50, 10.0),
    ("openai", "gpt-4o-mini", 0.15, 0.60),
    ("openai", "o1", 15.0, 60.0),
    ("openai", "o3", 2.0, 8.0),
    ("openai", "o3-pro", 20.0, 80.0),
    ("openai", "o3-mini", 1.10, 4.40),
    ("openai", "o4-mini", 1.10, 4.40),
];

/// Built-in price for a canonical id like `anthropic:claude-sonnet-4-5`. Dated snapshots
/// (`claude-sonnet-4-5-20250929`, `gpt-4o-2024-08-06`, `claude-sonnet-4-5@20250929`)
/// and `-latest` names match their model. Only the `anthropic` and `openai` providers
/// have built-in prices; anything else is `None`.
pub fn builtin_price(id: &str) -> Option<Price> {
    let (provider, model) = id.split_once(':')?;
    let model = model.to_ascii_lowercase();
    let model = base_model_name(&model);
    BUILTIN
        .iter()
        .find(|(p, m, _, _)| *p == provider && *m == model)
        .map(|&(_, _, input, output)| Price { input, output })
}

/// Strip a snapshot suffix: `@…`, `-latest`, `-YYYYMMDD` or `-YYYY-MM-DD`.
fn base_model_name(model: &str) -> &str {
    let model = model.split_once('@').map_or(model, |(base, _)| base);
    if let Some(base) = model.strip_suffix("-latest") {
        return base;
    }
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if let Some((base, date)) = model.rsplit_once('-')
        && date.len() == 8
        && digits(date)
    {
        return base;
    }
    // -YYYY-MM-DD: the last three dash-separated parts are 4, 2 and 2 digits.
    let parts: Vec<&str> = model.rsplitn(4, '-').collect();
    if let [day, month, year, base] = parts[..]
        && day.len() == 2
        && month.len() == 2
        && year.len() == 4
        && digits(day)
        && digits(month)
        && digits(year)
    {
        return base;
    }
    model
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn known_models_and_snapshots() {
        let sonnet = Some(Price {
            input: 3.0,
            output: 15.0,
        });
        assert_eq!(builtin_price("anthropic:claude-sonnet-4-5"), sonnet);
        assert_eq!(
            builtin_price("anthropic:claude-sonnet-4-5-20250929"),
            sonnet
        );
        assert_eq!(
            builtin_price("anthropic:claude-sonnet-4-5@20250929"),
            sonnet
        );
        assert_eq!(builtin_price("anthropic:claude-3-7-sonnet-latest"), sonnet);
        assert_eq!(
            builtin_price("anthropic:claude-opus-4-5").map(|p| p.input),
            Some(5.0)
        );
        assert_eq!(
            builtin_price("anthropic:claude-haiku-4-5-20251001").map(|p| p.output),
            Some(5.0)
        );
        assert_eq!(builtin_price("openai:gpt-5").map(|p| p.input), Some(1.25));
        assert_eq!(
            builtin_price("openai:gpt-5-mini").map(|p| p.input),
            Some(0.25)
        );
        assert_eq!(
            builtin_price("openai:gpt-4o-2024-08-06").map(|p| p.input),
            Some(2.5)
        );
        assert_eq!(
            builtin_price("openai:gpt-4.1-mini-2025-04-14").map(|p| p.output),
            Some(1.6)
        );
    }

    #[test]
    fn the_aliases_targets_are_priced() {
        let p = |id: &str| builtin_price(id).map(|p| (p.input, p.output));
        assert_eq!(p("anthropic:claude-sonnet-5"), Some((2.0, 10.0)));
        assert_eq!(p("anthropic:claude-opus-4-8"), Some((5.0, 25.0)));
        assert_eq!(p("anthropic:claude-haiku-4-5-20251001"), Some((1.0, 5.0)));
    }

    #[test]
    fn unknown_models_have_no_price() {
        assert_eq!(builtin_price("openai:gpt-7"), None);
        assert_eq!(builtin_price("ollama:gpt-5"), None);
        assert_eq!(builtin_price("ollama:qwen3:8b"), None);
        assert_eq!(builtin_price("claude-sonnet-4-5"), None);
        // A date-looking suffix must not make an unknown model match a known one.
        assert_eq!(builtin_price("anthropic:claude-sonnet-4-5-extra"), None);
    }

    #[test]
    fn cost_is_per_million_tokens() {
        let price = Price {
            input: 3.0,
            output: 15.0,
        };
        let usage = Usage {
            input_tokens: 2_000_000,
            output_tokens: 100_000,
            ..Default::default()
        };
        assert!((price.cost(usage) - 7.5).abs() < 1e-9);
        // 1M cache reads at 0.3, 1M cache writes at 3.75, 1M plain at 3.
        let cached = Usage {
            input_tokens: 3_000_000,
            output_tokens: 0,
            cache_read_tokens: 1_000_000,
            cache_write_tokens: 1_000_000,
        };
        assert!((price.cost(cached) - 7.05).abs() < 1e-9);
        assert_eq!(price.cost(Usage::default()), 0.0);
    }
}
