//! Checkers of acceptq's output formats, as strict as the agents that read them.

use influxdb_line_protocol::{parse_lines, FieldValue};

pub use super::exposition::check_exposition;

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
