//! `--compare FILE`: this run's figures beside a saved `--json` of an earlier run, with
//! the ratio now ÷ then, so a regression shows at a glance. Not a gate: it prints.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

/// Every number in `v`, keyed by its path (`scale.1000.wall_over_ideal`); arrays by index.
fn figures(v: &Value, at: &str, out: &mut BTreeMap<String, f64>) {
    match v {
        Value::Number(n) => {
            if let Some(x) = n.as_f64() {
                out.insert(at.to_string(), x);
            }
        }
        Value::Object(m) => {
            for (k, child) in m {
                figures(child, &join(at, k), out);
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                figures(child, &join(at, &i.to_string()), out);
            }
        }
        _ => {}
    }
}

fn join(at: &str, k: &str) -> String {
    if at.is_empty() {
        k.to_string()
    } else {
        format!("{at}.{k}")
    }
}

/// What describes the run rather than measures it.
fn is_context(path: &str) -> bool {
    ["machine.", "server.", "load_start", "load_end"]
        .iter()
        .any(|p| path.starts_with(p))
}

/// Print each figure of `now` beside the one in the saved file, with the ratio.
pub fn print(now: &Value, saved: &Path) {
    let then: Value = match std::fs::read_to_string(saved)
        .map_err(|e| e.to_string())
        .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
    {
        Ok(v) => v,
        Err(e) => {
            eprintln!("--compare: cannot read {}: {e}", saved.display());
            return;
        }
    };
    let (mut a, mut b) = (BTreeMap::new(), BTreeMap::new());
    figures(now, "", &mut a);
    figures(&then, "", &mut b);
    println!("\ncompared with {} (ratio = now / then):", saved.display());
    println!(
        "{:<60} {:>14} {:>14} {:>8}",
        "figure", "then", "now", "ratio"
    );
    let (mut shown, mut only_now) = (0, 0);
    for (path, now) in a.iter().filter(|(p, _)| !is_context(p)) {
        match b.get(path) {
            Some(then) => {
                let ratio = if *then == 0.0 {
                    "–".to_string()
                } else {
                    format!("{:.2}", now / then)
                };
                println!("{path:<60} {then:>14.4} {now:>14.4} {ratio:>8}");
                shown += 1;
            }
            None => only_now += 1,
        }
    }
    let only_then = b
        .keys()
        .filter(|p| !is_context(p) && !a.contains_key(*p))
        .count();
    println!(
        "{shown} figures compared; {only_now} only in this run, {only_then} only in the saved one"
    );
}
