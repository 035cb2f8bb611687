//! Text helpers shared by the tools: capping output for the model (always with a note
//! saying how much was cut), binary detection and thousands-separated numbers.

/// How many leading bytes are checked for a NUL to decide a file is binary (as git does).
pub const BINARY_PROBE_BYTES: usize = 8192;

/// True when the first bytes contain a NUL: treated as a binary file.
pub fn looks_binary(bytes: &[u8]) -> bool {
    bytes.iter().take(BINARY_PROBE_BYTES).any(|&b| b == 0)
}

pub use crate::text::truncate_chars;

/// A line cut to at most `max` chars, with a note of how many were cut.
pub fn cut_line(line: &str, max: usize) -> String {
    let total = line.chars().count();
    if total <= max {
        return line.to_string();
    }
    let head: String = line.chars().take(max).collect();
    format!("{head}… [line cut: {} more chars]", thousands(total - max))
}

/// `s` capped at about `max` chars: keeps the head and the tail, and says in the middle
/// how many chars were cut.
pub fn cap_middle(s: &str, max: usize) -> String {
    let total = s.chars().count();
    if total <= max {
        return s.to_string();
    }
    let keep = max.saturating_sub(100);
    let head_len = keep / 2;
    let tail_len = keep - head_len;
    let cut = total - head_len - tail_len;
    let head: String = s.chars().take(head_len).collect();
    let tail: String = s.chars().skip(total - tail_len).collect();
    format!(
        "{head}\n\n[... {} chars cut from the middle of this output ({} total) ...]\n\n{tail}",
        thousands(cut),
        thousands(total)
    )
}

/// `12345` → `12,345`.
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `1 line` / `3 lines`.
pub fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{} {word}s", thousands(n))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn cap_middle_keeps_head_and_tail_and_says_how_much() {
        let s: String = (0..10_000)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        let capped = cap_middle(&s, 1000);
        assert!(capped.chars().count() <= 1000, "{}", capped.len());
        assert!(capped.starts_with("abcdef"));
        assert!(capped.ends_with(&s[s.len() - 50..]));
        assert!(capped.contains("9,100 chars cut"), "{capped}");
        assert_eq!(cap_middle("short", 1000), "short");
    }

    #[test]
    fn truncation_counts_chars_not_bytes() {
        assert_eq!(truncate_chars("ééééé", 3), "éé…");
        assert_eq!(truncate_chars("abc", 3), "abc");
        assert_eq!(cut_line("abcdef", 4), "abcd… [line cut: 2 more chars]");
    }

    #[test]
    fn numbers() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(plural(1, "line"), "1 line");
        assert_eq!(plural(2, "line"), "2 lines");
        assert!(looks_binary(b"ab\0c"));
        assert!(!looks_binary(b"abc"));
    }
}
