//! The Prometheus text format's rules, checked strictly. Shared with the encoder's unit tests in
//! src/encode/prometheus.rs (included there by path), so both hold acceptq to the same rules.

use std::collections::BTreeMap;

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
