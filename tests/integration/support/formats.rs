//! Checkers of acceptq's output formats, as strict as the agents that read them.

use std::collections::BTreeMap;

use influxdb_line_protocol::{parse_lines, FieldValue};

/// Checks every line with influxdb-line-protocol's parser (a port of InfluxDB's Go one) and
/// what Telegraf needs besides; returns one problem per bad line.
pub fn strict_influx(text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    for (line, parsed) in text.lines().zip(parse_lines(text)) {
        match parsed {
            Err(e) => problems.push(format!("rejected: {line}: {e}")),
            Ok(p) => {
                if !matches!(p.timestamp, Some(t) if t >= 1_000_000_000_000_000_000) {
                    problems.push(format!("no nanosecond timestamp: {line}"));
                }
                if p.tag_value("host").is_some() {
                    problems.push(format!("host tag (the agent adds it): {line}"));
                }
                for (k, v) in &p.field_set {
                    if matches!(v, FieldValue::U64(_)) {
                        problems.push(format!("field {k} is u64 (Telegraf clips it): {line}"));
                    }
                }
            }
        }
    }
    assert_eq!(
        text.lines().filter(|l| !l.trim().is_empty()).count(),
        parse_lines(text).count(),
        "line splitting disagrees with the parser"
    );
    problems
}

/// Checks a sample line of the text format: `name{label="value",...} value`.
fn prom_sample(line: &str) -> Result<(&str, f64), String> {
    let name_end = line
        .find(['{', ' '])
        .ok_or_else(|| format!("no value: {line}"))?;
    let name = &line[..name_end];
    let valid = name.chars().enumerate().all(|(i, c)| {
        c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
    });
    if name.is_empty() || !valid {
        return Err(format!("bad metric name {name:?}: {line}"));
    }
    let mut rest = &line[name_end..];
    if let Some(labels) = rest.strip_prefix('{') {
        let mut chars = labels.char_indices();
        let mut in_quotes = false;
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' if in_quotes => {
                    chars.next();
                }
                '"' => in_quotes = !in_quotes,
                '}' if !in_quotes => {
                    end = Some(i);
                    break;
                }
                _ => {}
            }
        }
        let end = end.ok_or_else(|| format!("unclosed labels: {line}"))?;
        rest = &labels[end + 1..];
    }
    let value = rest
        .strip_prefix(' ')
        .ok_or_else(|| format!("no space before the value: {line}"))?;
    let value: f64 = match value {
        "NaN" => f64::NAN,
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().map_err(|_| format!("bad value {v:?}: {line}"))?,
    };
    Ok((name, value))
}

/// A whole Prometheus exposition: ends with a newline; every line a comment or a valid sample;
/// each family declared once by `# TYPE` (counter or gauge) before its samples and never split;
/// acceptq's namespace family present. Returns the number of samples.
pub fn check_exposition(text: &str) -> Result<usize, String> {
    if !text.ends_with('\n') {
        return Err(format!(
            "does not end with a newline ({} bytes)",
            text.len()
        ));
    }
    let mut declared: Vec<&str> = Vec::new();
    let mut current: Option<&str> = None;
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest
                .split_once(' ')
                .ok_or_else(|| format!("bad TYPE: {line}"))?;
            if !["counter", "gauge"].contains(&kind) || declared.contains(&name) {
                return Err(format!("bad or repeated TYPE: {line}"));
            }
            declared.push(name);
            current = Some(name);
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let (name, _) = prom_sample(line)?;
        if current != Some(name) {
            return Err(format!("sample outside its family: {line}"));
        }
        *samples.entry(name).or_insert(0) += 1;
    }
    if !samples.keys().any(|n| n.starts_with("acceptq_netns_")) {
        return Err(format!("no acceptq_netns family: {text}"));
    }
    Ok(samples.values().sum())
}
