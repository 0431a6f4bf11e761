//! Reading report.json's fields (a missing or malformed one is an error naming its key)
//! and formatting figures and markdown tables.

use anyhow::{Context as _, Result};
use serde_json::Value;

/// Markdown table; `|` in cells escaped.
pub(super) fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let esc = |s: &str| s.replace('|', "\\|");
    let mut out = String::new();
    out.push_str(&format!(
        "| {} |\n",
        header
            .iter()
            .map(|h| esc(h))
            .collect::<Vec<_>>()
            .join(" | ")
    ));
    out.push_str(&format!("|{}\n", "---|".repeat(header.len())));
    for row in rows {
        out.push_str(&format!(
            "| {} |\n",
            row.iter().map(|c| esc(c)).collect::<Vec<_>>().join(" | ")
        ));
    }
    out
}

pub(super) fn pass_fail(pass: bool) -> &'static str {
    if pass {
        "PASS"
    } else {
        "**FAIL**"
    }
}

pub(super) fn num(v: &Value, key: &str) -> Result<f64> {
    v.get(key)
        .and_then(Value::as_f64)
        .with_context(|| format!("no number `{key}` in {}", short(v)))
}

pub(super) fn opt_num(v: &Value, key: &str) -> Result<Option<f64>> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(x) => x
            .as_f64()
            .map(Some)
            .with_context(|| format!("`{key}` is {x}, not a number")),
    }
}

pub(super) fn text<'a>(v: &'a Value, key: &str) -> Result<&'a str> {
    v.get(key)
        .and_then(Value::as_str)
        .with_context(|| format!("no text `{key}` in {}", short(v)))
}

pub(super) fn flag(v: &Value, key: &str) -> Result<bool> {
    v.get(key)
        .and_then(Value::as_bool)
        .with_context(|| format!("no true/false `{key}` in {}", short(v)))
}

pub(super) fn list<'a>(v: &'a Value, key: &str) -> Result<&'a Vec<Value>> {
    v.get(key)
        .and_then(Value::as_array)
        .with_context(|| format!("no list `{key}` in {}", short(v)))
}

/// A value, cut short for an error message.
pub(super) fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 160 {
        format!("{}...", s.chars().take(160).collect::<String>())
    } else {
        s
    }
}

/// A list of milliseconds where `null` is a missed run.
pub fn ms_runs(v: &Value, key: &str) -> Result<Vec<Option<f64>>> {
    list(v, key)?
        .iter()
        .map(|x| match x {
            Value::Null => Ok(None),
            x => x
                .as_f64()
                .map(Some)
                .with_context(|| format!("`{key}` holds {x}, not milliseconds")),
        })
        .collect()
}

/// A figure with two decimals below 10, one above: small phases stay visible.
pub(super) fn precise(m: f64) -> String {
    if m.abs() < 10.0 {
        format!("{m:.2}")
    } else {
        format!("{m:.1}")
    }
}

/// `1234567` as `1,234,567` (integral figures only).
pub(super) fn thousands(n: f64) -> String {
    if n.fract() != 0.0 || !n.is_finite() {
        return format!("{n}");
    }
    let digits = format!("{}", n.abs() as u64);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0.0 {
        format!("-{out}")
    } else {
        out
    }
}
