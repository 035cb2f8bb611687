//! Secret redaction for every piece of text that leaves flotilla: MCP results and
//! progress, the dashboard's JSON, feed and metrics, span attributes and the log, and
//! handoffs (see docs/security.md for where each exit calls it).
//!
//! A [`Redactor`] replaces with [`REDACTED`]:
//! - the values of the configured provider keys (given to [`Redactor::new`]; values shorter
//!   than [`MIN_SECRET_CHARS`] are ignored, they would redact ordinary words), and any
//!   piece of one that starts or ends it and is at least [`PIECE_CHARS`] characters long
//!   (a key cut by a label's or a window's length);
//! - common key shapes: Anthropic (`sk-ant-…`), OpenAI (`sk-…`, `sk-proj-…`), GitHub
//!   (`ghp_`/`gho_`/`ghu_`/`ghs_`/`ghr_…`, `github_pat_…`), AWS access key ids
//!   (`AKIA`/`ASIA` + 16) and the value of `aws_secret_access_key = …`-style assignments,
//!   Slack (`xox[abprs]-…`, `xapp-…`).
//!
//! Matching runs on a normalised view of the text: invisible and format characters
//! ([`is_invisible`]) are skipped and every other character is NFKC-normalised, so a
//! zero-width character inside a key or a key written in fullwidth letters is still
//! found; the replaced range covers the original characters, invisible ones included.
//!
//! The shapes are compiled once per process; text with nothing to redact is returned
//! borrowed, without a copy. Shapes demand a realistic length (and, for a bare `sk-`, a
//! digit and a long unbroken run) so that `sk-learn` or `xoxb-` in prose stay untouched.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;
use std::sync::{LazyLock, OnceLock};

use regex::Regex;
use serde_json::Value;
use unicode_normalization::UnicodeNormalization;

pub use super::handoff::is_invisible;

/// What every secret becomes.
pub const REDACTED: &str = "[REDACTED]";

/// Configured secret values shorter than this are not redacted (too likely to be words).
pub const MIN_SECRET_CHARS: usize = 8;

/// A piece of a configured secret this long that starts or ends it is redacted too: the
/// secret was cut (an activity label, an output window). Long enough that the fixed
/// prefixes of vendor keys (`sk-ant-api03-` is 13) are not redacted on their own.
pub const PIECE_CHARS: usize = 16;

/// Token shapes, each matched whole. A bare `sk-` match is further checked by
/// [`keylike_sk`].
const TOKEN_PATTERN: &str = r"(?x)
    (?-u:\b)(?:
        sk-[A-Za-z0-9_-]{20,}                       # Anthropic sk-ant-…, OpenAI sk-…, sk-proj-…
      | gh[pousr]_[A-Za-z0-9]{30,}                  # GitHub ghp_ gho_ ghu_ ghs_ ghr_
      | github_pat_[A-Za-z0-9_]{30,}                # GitHub fine-grained tokens
      | (?:AKIA|ASIA)[A-Z0-9]{16}(?-u:\b)           # AWS access key ids
      | xox[abprs]-[A-Za-z0-9-]{10,}                # Slack bot/user/app tokens
      | xapp-[A-Za-z0-9-]{10,}                      # Slack app-level tokens
    )";

/// `aws_secret_access_key = …`, `AWS_SECRET_ACCESS_KEY=…`, `"SecretAccessKey": "…"`: group 1
/// is the value, the only part replaced.
const ASSIGNMENT_PATTERN: &str = r#"(?i)(?:secret_?access_?key|aws_?secret_?key)["']?\s*(?::|=>|=)\s*["']?([A-Za-z0-9/+]{30,}={0,2})"#;

/// `sk-` sub-prefixes specific enough that length alone makes a key.
const SK_PREFIXES: [&str; 4] = ["sk-ant-", "sk-proj-", "sk-svcacct-", "sk-admin-"];

#[allow(clippy::expect_used)] // a constant pattern, compiled by every test below
static TOKENS: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(TOKEN_PATTERN).expect("TOKEN_PATTERN compiles"));

#[allow(clippy::expect_used)] // a constant pattern, compiled by every test below
static ASSIGNMENTS: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(ASSIGNMENT_PATTERN).expect("ASSIGNMENT_PATTERN compiles"));

/// The process's redactor, for the exits that are not tied to a fleet (the log, the
/// span exporter): set once by [`install`] when the fleet is built.
static PROCESS: OnceLock<Redactor> = OnceLock::new();

/// Makes `redactor` the process's (the first call wins; later ones are ignored).
pub fn install(redactor: Redactor) {
    let _ = PROCESS.set(redactor);
}

/// The process's redactor: the one [`install`]ed, else the built-in shapes alone.
pub fn process() -> &'static Redactor {
    static SHAPES: LazyLock<Redactor> = LazyLock::new(Redactor::default);
    PROCESS.get().unwrap_or(&SHAPES)
}

/// Replaces secrets with [`REDACTED`]. Cheap to clone; build one per fleet from the
/// configured provider keys. `Debug` never prints the secrets.
#[derive(Clone, Default)]
pub struct Redactor {
    /// Configured secret values, longest first, deduplicated.
    secrets: Vec<String>,
}

impl Redactor {
    /// A redactor for these secret values (e.g. every configured provider key) plus the
    /// built-in key shapes. Values are trimmed; those shorter than [`MIN_SECRET_CHARS`]
    /// characters are ignored.
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Self {
        let mut secrets: Vec<String> = secrets
            .into_iter()
            .map(|s| normalise(s.trim()))
            .filter(|s| s.chars().count() >= MIN_SECRET_CHARS)
            .collect();
        secrets.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        secrets.dedup();
        Self { secrets }
    }

    /// How many configured secret values this redactor knows (the shapes not counted).
    pub fn secret_count(&self) -> usize {
        self.secrets.len()
    }

    /// `text` with every secret replaced by [`REDACTED`]; borrowed when nothing matched.
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let view = View::of(text);
        let spans = self.spans(view.text());
        if spans.is_empty() {
            return Cow::Borrowed(text);
        }
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for span in merge(spans.into_iter().map(|s| view.original(s)).collect()) {
            out.push_str(&text[at..span.start]);
            out.push_str(REDACTED);
            at = span.end;
        }
        out.push_str(&text[at..]);
        Cow::Owned(out)
    }

    /// [`Self::redact`] into an owned string.
    pub fn redact_string(&self, text: String) -> String {
        match self.redact(&text) {
            Cow::Borrowed(_) => text,
            Cow::Owned(clean) => clean,
        }
    }

    /// Redacts every string inside a JSON value in place (object keys are left alone).
    /// Returns whether anything was replaced.
    pub fn redact_json(&self, value: &mut Value) -> bool {
        match value {
            Value::String(s) => match self.redact(s) {
                Cow::Borrowed(_) => false,
                Cow::Owned(clean) => {
                    *s = clean;
                    true
                }
            },
            Value::Array(items) => items
                .iter_mut()
                .fold(false, |hit, v| self.redact_json(v) | hit),
            Value::Object(map) => map
                .values_mut()
                .fold(false, |hit, v| self.redact_json(v) | hit),
            Value::Null | Value::Bool(_) | Value::Number(_) => false,
        }
    }

    /// Byte ranges of `text` to replace, sorted, overlaps merged.
    fn spans(&self, text: &str) -> Vec<Range<usize>> {
        let mut spans: Vec<Range<usize>> = Vec::new();
        for secret in &self.secrets {
            spans.extend(pieces(text, secret));
        }
        spans.extend(
            TOKENS
                .find_iter(text)
                .filter(|m| keylike_sk(m.as_str()))
                .map(|m| m.range()),
        );
        spans.extend(
            ASSIGNMENTS
                .captures_iter(text)
                .filter_map(|c| c.get(1))
                .map(|m| m.range()),
        );
        merge(spans)
    }
}

/// `text` as the patterns see it: invisible characters removed, NFKC.
pub fn normalise(text: &str) -> String {
    text.chars().filter(|&c| !is_invisible(c)).nfkc().collect()
}

/// Sorted, overlapping or touching ranges merged.
fn merge(mut spans: Vec<Range<usize>>) -> Vec<Range<usize>> {
    if spans.len() < 2 {
        return spans;
    }
    spans.sort_by_key(|r| (r.start, r.end));
    let mut merged: Vec<Range<usize>> = Vec::with_capacity(spans.len());
    for span in spans {
        match merged.last_mut() {
            Some(last) if span.start <= last.end => last.end = last.end.max(span.end),
            _ => merged.push(span),
        }
    }
    merged
}

/// Where `secret` occurs in `text`, whole or as a piece of at least [`PIECE_CHARS`]
/// characters that starts it (cut at the end) or ends it (cut at the start).
fn pieces<'a>(text: &'a str, secret: &'a str) -> impl Iterator<Item = Range<usize>> + 'a {
    let whole = text.match_indices(secret).map(|(i, s)| i..i + s.len());
    let chars = secret.chars().count();
    let cut = (chars > PIECE_CHARS).then(|| {
        let head_end = secret
            .char_indices()
            .nth(PIECE_CHARS)
            .map_or(secret.len(), |(i, _)| i);
        let tail_start = secret
            .char_indices()
            .nth(chars - PIECE_CHARS)
            .map_or(0, |(i, _)| i);
        let (head, tail) = (&secret[..head_end], &secret[tail_start..]);
        // A head found: extend it as far as the text goes on matching the secret.
        let heads = text.match_indices(head).map(move |(i, _)| {
            let same = common_prefix(&text[i..], secret);
            i..i + same
        });
        // A tail found: extend it backwards likewise.
        let tails = text.match_indices(tail).map(move |(i, t)| {
            let end = i + t.len();
            let same = common_suffix(&text[..end], secret);
            end - same..end
        });
        heads.chain(tails)
    });
    whole.chain(cut.into_iter().flatten())
}

/// Bytes `a` and `b` share at their starts, on a char boundary.
fn common_prefix(a: &str, b: &str) -> usize {
    a.char_indices()
        .zip(b.chars())
        .find(|((_, x), y)| x != y)
        .map_or_else(|| a.len().min(b.len()), |((i, _), _)| i)
}

/// Bytes `a` and `b` share at their ends, on a char boundary.
fn common_suffix(a: &str, b: &str) -> usize {
    a.chars()
        .rev()
        .zip(b.chars().rev())
        .take_while(|(x, y)| x == y)
        .map(|(x, _)| x.len_utf8())
        .sum()
}

/// The text the patterns see: invisible characters skipped, the others NFKC-normalised,
/// with the way back to the original's byte ranges. Borrowed (and no map) when the text
/// is already in that form, which is the common case.
struct View<'a> {
    original: &'a str,
    text: Cow<'a, str>,
    /// For each byte of `text`, the original range of the character it came from.
    from: Vec<Range<usize>>,
}

impl<'a> View<'a> {
    fn of(original: &'a str) -> Self {
        let plain = original
            .chars()
            .all(|c| (c.is_ascii() || c.nfkc().eq(std::iter::once(c))) && !is_invisible(c));
        if plain {
            return Self {
                original,
                text: Cow::Borrowed(original),
                from: Vec::new(),
            };
        }
        let mut text = String::with_capacity(original.len());
        let mut from = Vec::with_capacity(original.len());
        for (i, c) in original.char_indices() {
            if is_invisible(c) {
                continue;
            }
            let before = text.len();
            text.extend(c.nfkc());
            from.extend(std::iter::repeat_n(
                i..i + c.len_utf8(),
                text.len() - before,
            ));
        }
        Self {
            original,
            text: Cow::Owned(text),
            from,
        }
    }

    fn text(&self) -> &str {
        &self.text
    }

    /// The original byte range behind `span` of the view: from its first character's
    /// start to its last character's end (so invisible characters inside go with it).
    fn original(&self, span: Range<usize>) -> Range<usize> {
        if self.from.is_empty() || span.is_empty() {
            return span;
        }
        let start = self
            .from
            .get(span.start)
            .map_or(self.original.len(), |r| r.start);
        let end = self
            .from
            .get(span.end - 1)
            .map_or(self.original.len(), |r| r.end);
        start..end
    }
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redactor")
            .field("secrets", &self.secrets.len())
            .finish()
    }
}

/// True unless `token` is a bare `sk-…` that does not look random: a bare `sk-` key must
/// contain a digit and an unbroken alphanumeric run of at least 12 (hyphenated words such
/// as `sk-learn-compatible-estimator` have neither). Other shapes pass unchanged.
fn keylike_sk(token: &str) -> bool {
    let Some(body) = token.strip_prefix("sk-") else {
        return true;
    };
    if SK_PREFIXES.iter().any(|p| token.starts_with(p)) {
        return true;
    }
    let has_digit = body.bytes().any(|b| b.is_ascii_digit());
    let longest_run = body.split(['-', '_']).map(str::len).max().unwrap_or(0);
    has_digit && longest_run >= 12
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    const ANTHROPIC: &str = "sk-ant-api03-Xk9fQ2mZ7vL1pR8sT4wY6bN3cD5eF0gH_jK-lM2nO4pQ6rS8tU0vW2xY4zA6bC8dE0fG2hI4jK6lM8nO0pQ2rS4tU6vW8xY0zA2bC4dE6fG8hI0jK-AA";
    const OPENAI_LEGACY: &str = "sk-Ab3dEf6hIj9lMn2pQr5tUv8xYz1BcDeFgHiJkLmNoPqRsTuV";
    const OPENAI_PROJECT: &str =
        "sk-proj-Ab3dEf6hIj9lMn2pQr5tUv8xYz1B_cDeFgHiJkLmNoPqRsTuVwXyZ-0123456789abcdefT3BlbkFJ";

    fn red(text: &str) -> String {
        Redactor::default().redact(text).into_owned()
    }

    #[test]
    fn built_in_shapes_are_redacted() {
        let cases = [
            ANTHROPIC,
            OPENAI_LEGACY,
            OPENAI_PROJECT,
            "ghp_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8",
            "gho_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8",
            "ghu_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8",
            "ghs_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8",
            "ghr_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8",
            "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123",
            "AKIAIOSFODNN7EXAMPLE",
            "ASIAY34FZKBOKMUTVV7A",
            "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
            "xoxp-123456789012-1234567890123-1234567890123-0123456789abcdef0123456789abcdef",
            "xapp-1-A0123456789-1234567890123-0123456789abcdef",
        ];
        for key in cases {
            let text = format!("key: {key} (do not share)");
            assert_eq!(red(&text), "key: [REDACTED] (do not share)", "{key}");
            assert_eq!(red(&format!("\"{key}\"")), "\"[REDACTED]\"", "{key}");
            assert_eq!(red(&format!("KEY={key}")), "KEY=[REDACTED]", "{key}");
        }
    }

    #[test]
    fn aws_secret_assignments_keep_the_name_and_lose_the_value() {
        let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
        assert_eq!(
            red(&format!(
                "aws_secret_access_key = {secret}\nregion = eu-west-1"
            )),
            "aws_secret_access_key = [REDACTED]\nregion = eu-west-1"
        );
        assert_eq!(
            red(&format!("export AWS_SECRET_ACCESS_KEY={secret}")),
            "export AWS_SECRET_ACCESS_KEY=[REDACTED]"
        );
        assert_eq!(
            red(&format!(r#"{{"SecretAccessKey": "{secret}"}}"#)),
            r#"{"SecretAccessKey": "[REDACTED]"}"#
        );
        // References to the variable are not values.
        let code = "aws_secret_access_key = os.environ[\"AWS_SECRET_ACCESS_KEY\"]";
        assert_eq!(red(code), code);
    }

    #[test]
    fn ordinary_text_is_borrowed_untouched() {
        let texts = [
            "Use sk-learn for the baseline; the sk- prefix marks OpenAI keys.",
            "pip install sk-learn-compatible-estimators-toolkit",
            "The task-runner-for-integration-tests passed; disk-image-builder too.",
            "Slack tokens start with xoxb- or xapp-; never commit them.",
            "GitHub tokens look like ghp_… and AKIA is the AWS id prefix.",
            "ASIAN markets and AKIAK village are words, not keys.",
            "fn main() { let sk = 3; println!(\"{sk}\"); }",
            "",
        ];
        let r = Redactor::default();
        for text in texts {
            assert!(
                matches!(r.redact(text), Cow::Borrowed(_)),
                "false positive in {text:?}: {}",
                r.redact(text)
            );
        }
    }

    #[test]
    fn configured_values_are_redacted_short_ones_ignored() {
        let r = Redactor::new([
            "my-local-proxy-token-42".to_string(),
            "  padded-secret-value\n".to_string(),
            "short".to_string(),
            String::new(),
            "my-local-proxy-token-42".to_string(),
        ]);
        assert_eq!(r.secret_count(), 2);
        assert_eq!(
            r.redact("auth my-local-proxy-token-42 and padded-secret-value, short"),
            "auth [REDACTED] and [REDACTED], short"
        );
        // Debug shows how many, never what.
        let debug = format!("{r:?}");
        assert!(!debug.contains("proxy"), "{debug}");
        assert!(debug.contains('2'), "{debug}");
    }

    #[test]
    fn overlapping_matches_become_one_marker() {
        // A configured value that is also a known shape, and a value inside a longer one.
        let r = Redactor::new([ANTHROPIC.to_string(), "abcdefgh12345".to_string()]);
        assert_eq!(r.redact(&format!("<{ANTHROPIC}>")), "<[REDACTED]>");
        let r = Redactor::new(["abcdefgh".to_string(), "xxabcdefghyy".to_string()]);
        assert_eq!(
            r.redact("1 xxabcdefghyy 2 abcdefgh"),
            "1 [REDACTED] 2 [REDACTED]"
        );
        assert_eq!(red(&format!("{ANTHROPIC}{OPENAI_LEGACY}")), "[REDACTED]");
    }

    #[test]
    fn redaction_is_idempotent_and_multibyte_safe() {
        let once = red(&format!("é {ANTHROPIC} ü {OPENAI_LEGACY} ß"));
        assert_eq!(once, "é [REDACTED] ü [REDACTED] ß");
        assert_eq!(red(&once), once);
    }

    #[test]
    fn json_strings_are_redacted_in_place() {
        let mut v = json!({
            "summary": format!("used {OPENAI_LEGACY}"),
            "items": [{"token": "ghp_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"}, 3, null],
            "ok": true
        });
        assert!(Redactor::default().redact_json(&mut v));
        assert_eq!(
            v,
            json!({"summary": "used [REDACTED]", "items": [{"token": "[REDACTED]"}, 3, null], "ok": true})
        );
        assert!(!Redactor::default().redact_json(&mut v));
    }

    #[test]
    fn invisible_characters_and_fullwidth_letters_do_not_hide_a_key() {
        let r = Redactor::new(["flotilla-test-secret-Q7x9Lm2Vp4Rt8Wz".to_string()]);
        for hidden in [
            format!("{}\u{200B}{}", &ANTHROPIC[..20], &ANTHROPIC[20..]),
            format!(
                "{}\u{2060}\u{FEFF}{}",
                &OPENAI_LEGACY[..5],
                &OPENAI_LEGACY[5..]
            ),
            "flotilla-test-\u{200D}secret-Q7x9\u{00AD}Lm2Vp4Rt8Wz".to_string(),
            "\u{FF46}lotilla-test-secret-Q7x9Lm2Vp4Rt8Wz".to_string(), // fullwidth f
        ] {
            let text = format!("é key={hidden} done");
            assert_eq!(r.redact(&text), "é key=[REDACTED] done", "{hidden:?}");
        }
        // Invisible characters elsewhere are kept.
        let text = "a\u{200B}b 👨\u{200D}👩 plain";
        assert!(matches!(r.redact(text), Cow::Borrowed(_)));
    }

    #[test]
    fn a_configured_key_cut_to_a_long_enough_piece_is_redacted() {
        let key = "flotilla-test-secret-Q7x9Lm2Vp4Rt8Wz-0123456789abcdef0123";
        let r = Redactor::new([key.to_string()]);
        for n in [PIECE_CHARS, 20, 45, key.len() - 1] {
            let head = &key[..n];
            assert_eq!(
                r.redact(&format!("echo {head}…")),
                "echo [REDACTED]…",
                "{n}"
            );
            let tail = &key[key.len() - n..];
            assert_eq!(r.redact(&format!("…{tail} |")), "…[REDACTED] |", "{n}");
        }
        // Shorter pieces are words, not keys.
        let short = &key[..PIECE_CHARS - 1];
        assert_eq!(r.redact(short), short);
        // A cut key with a zero-width character inside it.
        let hidden = format!("{}\u{200B}{}", &key[..10], &key[10..40]);
        assert_eq!(r.redact(&format!("run {hidden}")), "run [REDACTED]");
    }

    #[test]
    fn a_key_shape_cut_at_45_characters_is_still_redacted() {
        for key in [ANTHROPIC, OPENAI_PROJECT, OPENAI_LEGACY] {
            let line = format!("run_command: curl -H 'x-api-key: {}", &key[..45]);
            assert!(!red(&line).contains(&key[..20]), "{line}");
        }
    }
}
