//! Finding the JSON value in a final answer: the whole answer (trimmed), else the one
//! fenced block tagged `json`, else a single untagged fenced block whose content parses.
//! Parse errors are reported only where JSON was clearly meant (a `json` block, or text
//! starting with `{` or `[`), so prose without JSON reads as "no JSON found".

use serde_json::Value;

/// What [`extract_json`] found.
#[derive(Debug)]
pub(super) enum FoundIn {
    Value(Value),
    Nothing,
    SeveralBlocks(usize),
    /// `in_block`: the error's line and column count from the fenced block's first line.
    ParseError {
        error: serde_json::Error,
        in_block: bool,
    },
}

/// A fenced code block: its info string (`json`, `rust`, empty) and its content.
#[derive(Debug, PartialEq, Eq)]
struct Fence<'a> {
    info: &'a str,
    body: &'a str,
}

impl Fence<'_> {
    fn is_json(&self) -> bool {
        self.info
            .split_whitespace()
            .next()
            .is_some_and(|lang| lang.eq_ignore_ascii_case("json"))
    }
}

pub(super) fn extract_json(answer: &str) -> FoundIn {
    if let Ok(value) = serde_json::from_str::<Value>(answer) {
        return FoundIn::Value(value);
    }
    let fences = fences(answer);
    let json: Vec<&Fence> = fences.iter().filter(|f| f.is_json()).collect();
    match json.as_slice() {
        [one] => return parse(one.body, true),
        [] => {}
        many => return FoundIn::SeveralBlocks(many.len()),
    }
    let plain: Vec<&Fence> = fences.iter().filter(|f| f.info.is_empty()).collect();
    if let [one] = plain.as_slice() {
        match parse(one.body, true) {
            FoundIn::Value(value) => return FoundIn::Value(value),
            error if looks_like_json(one.body) => return error,
            _ => {}
        }
    }
    if looks_like_json(answer) {
        return parse(answer, false);
    }
    FoundIn::Nothing
}

fn parse(text: &str, in_block: bool) -> FoundIn {
    match serde_json::from_str(text) {
        Ok(value) => FoundIn::Value(value),
        Err(error) => FoundIn::ParseError { error, in_block },
    }
}

fn looks_like_json(text: &str) -> bool {
    text.trim_start().starts_with(['{', '['])
}

/// The fenced code blocks of `text` (CommonMark-ish: an opening line of 3+ backticks and
/// an info string without backticks, closed by a line of at least as many backticks; an
/// unclosed block runs to the end).
fn fences(text: &str) -> Vec<Fence<'_>> {
    let mut out = Vec::new();
    // (backticks, info, byte where the body starts)
    let mut open: Option<(usize, &str, usize)> = None;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let start = offset;
        offset += line.len();
        let stripped = line.trim();
        let ticks = stripped.bytes().take_while(|&b| b == b'`').count();
        if ticks < 3 {
            continue;
        }
        let rest = stripped[ticks..].trim();
        match open {
            None if !rest.contains('`') => open = Some((ticks, rest, offset)),
            None => {}
            Some((need, info, body_start)) if ticks >= need && rest.is_empty() => {
                out.push(Fence {
                    info,
                    body: &text[body_start..start],
                });
                open = None;
            }
            Some(_) => {}
        }
    }
    if let Some((_, info, body_start)) = open {
        out.push(Fence {
            info,
            body: &text[body_start..],
        });
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn value(answer: &str) -> Value {
        match extract_json(answer) {
            FoundIn::Value(v) => v,
            other => panic!("{other:?} for {answer:?}"),
        }
    }

    #[test]
    fn fences_are_found_with_their_info_and_body() {
        let text = "a\n```json\n{\"x\": 1}\n```\nb\n  ````rust extra\nlet s = \"```\";\n```\n````\n```\nopen";
        assert_eq!(
            fences(text),
            [
                Fence {
                    info: "json",
                    body: "{\"x\": 1}\n"
                },
                Fence {
                    info: "rust extra",
                    body: "let s = \"```\";\n```\n"
                },
                Fence {
                    info: "",
                    body: "open"
                },
            ]
        );
        assert!(fences("no fences, only `code`").is_empty());
    }

    #[test]
    fn bare_json_wins_then_json_blocks_then_one_plain_block() {
        assert_eq!(value("  {\"a\": 1}\n"), json!({"a": 1}));
        assert_eq!(value("[1, 2]"), json!([1, 2]));
        assert_eq!(value("42"), json!(42));
        assert_eq!(
            value("Here:\n```JSON\n{\"a\": 1}\n```\n```sh\nls\n```"),
            json!({"a": 1})
        );
        assert_eq!(value("Here:\n```\n{\"a\": 2}\n```\nDone."), json!({"a": 2}));
        // A json block beats a plain one.
        assert_eq!(value("```\n[0]\n```\n```json\n[1]\n```"), json!([1]));
    }

    #[test]
    fn prose_and_ambiguity_are_told_apart_from_broken_json() {
        assert!(matches!(extract_json("All done."), FoundIn::Nothing));
        assert!(matches!(
            extract_json("Run:\n```\ncargo test\n```"),
            FoundIn::Nothing
        ));
        assert!(matches!(
            extract_json("```\n[1]\n```\n```\n[2]\n```"),
            FoundIn::Nothing
        ));
        assert!(matches!(
            extract_json("```json\n[1]\n```\n```json\n[2]\n```"),
            FoundIn::SeveralBlocks(2)
        ));
        let FoundIn::ParseError { error, in_block } =
            extract_json("ok\n```json\n{\n  \"a\": 1,\n}\n```")
        else {
            panic!("expected a parse error");
        };
        assert!(in_block);
        assert_eq!((error.line(), error.column()), (3, 1));
        let FoundIn::ParseError { error, in_block } = extract_json("{\"a\": tru}") else {
            panic!("expected a parse error");
        };
        assert!(!in_block);
        assert_eq!(error.line(), 1);
    }
}
