//! Text helpers shared across layers: cutting a string to a length for labels,
//! summaries and messages. Counting is in characters, never bytes.

/// `s` cut to at most `max` chars, ending with `…` when cut.
pub fn truncate_chars(s: &str, max: usize) -> String {
    match s.char_indices().nth(max.saturating_sub(1)) {
        Some((cut, _)) if s[cut..].chars().nth(1).is_some() => format!("{}…", &s[..cut]),
        _ => s.to_string(),
    }
}

/// What JSON a value is, in words, for messages: `a string`, `an object`, …
pub fn json_kind(value: &serde_json::Value) -> &'static str {
    use serde_json::Value;
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The first line of `s`, cut to `max` chars (with `…` when cut).
pub fn short(s: &str, max: usize) -> String {
    truncate_chars(s.lines().next().unwrap_or(""), max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_by_chars_with_an_ellipsis() {
        assert_eq!(truncate_chars("héllo", 5), "héllo");
        assert_eq!(truncate_chars("héllo!", 5), "héll…");
        assert_eq!(truncate_chars("", 3), "");
        assert_eq!(short("first line\nsecond", 20), "first line");
        assert_eq!(short("abcdef\nx", 4), "abc…");
    }
}
