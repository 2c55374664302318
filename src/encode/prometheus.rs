//! Prometheus text exposition format 0.0.4, for node_exporter's textfile collector: one family
//! per field (`acceptq_listener_queue_depth`), `_total` on counters, HELP and TYPE lines, and no
//! timestamps (the textfile collector rejects them). Deltas are left out: `rate()` does that.

use std::io::Write as _;

use super::{Encoder, UserTags};
#[cfg(test)]
use crate::metric::Metric;
use crate::metric::{whole_float, Decimal, FieldSpec, Kind, MetricRef, Metrics, Value, SCHEMA};

/// `--tag` pairs become labels on every series, after acceptq's own.
#[derive(Default)]
pub struct Prometheus {
    /// The `--tag`s as every series carries them: `,key="value"` each, escaped once.
    user_labels: Vec<u8>,
    /// Each metric's labels, `{...}` or nothing, written once for all its families' lines.
    labels: Vec<u8>,
}

impl Prometheus {
    pub fn new(tags: UserTags) -> Self {
        let mut user_labels = Vec::new();
        for (k, v) in tags.iter().filter(|(_, v)| !v.is_empty()) {
            push_label(k, v, &mut user_labels);
        }
        Prometheus {
            user_labels,
            labels: Vec::new(),
        }
    }
}

/// Appends `,key="value"`.
fn push_label(k: &str, v: &str, out: &mut Vec<u8>) {
    out.push(b',');
    out.extend_from_slice(k.as_bytes());
    out.extend_from_slice(b"=\"");
    escape_label(v, out);
    out.push(b'"');
}

/// Appends a metric's labels: `{`, its tags' and the `--tag`s, `}`; nothing when it has none.
fn push_labels(metric: &MetricRef, user_labels: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    for (k, v) in metric.tags().filter(|(_, v)| !v.is_empty()) {
        push_label(k, v, out);
    }
    out.extend_from_slice(user_labels);
    if out.len() > start {
        // The first label's `,` opens the braces instead.
        out[start] = b'{';
        out.push(b'}');
    }
}

/// The family name of a field: `<measurement>_<field>`, then the base unit as Prometheus names
/// want it (`_seconds`), then `_total` for counters.
pub fn family(measurement: &str, field: &FieldSpec) -> String {
    let mut name = Vec::new();
    push_family(measurement, field, &mut name);
    String::from_utf8(name).unwrap_or_default()
}

/// [`family`], appended to `out`.
fn push_family(measurement: &str, field: &FieldSpec, out: &mut Vec<u8>) {
    out.extend_from_slice(measurement.as_bytes());
    out.push(b'_');
    out.extend_from_slice(field.name.as_bytes());
    if field.unit == "seconds" {
        out.extend_from_slice(b"_seconds");
    }
    if field.kind == Kind::Counter {
        out.extend_from_slice(b"_total");
    }
}

/// A label value may hold any UTF-8 text with `\`, `"` and newline escaped (`\\`, `\"`,
/// `\n`): every value goes out exactly, so two distinct values never share a series.
fn escape_label(v: &str, out: &mut Vec<u8>) {
    if !v.bytes().any(|b| matches!(b, b'\\' | b'"' | b'\n')) {
        out.extend_from_slice(v.as_bytes());
        return;
    }
    for b in v.bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'"' => out.extend_from_slice(b"\\\""),
            b'\n' => out.extend_from_slice(b"\\n"),
            b => out.push(b),
        }
    }
}

fn push_help(v: &str, out: &mut Vec<u8>) {
    for b in v.bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b => out.push(b),
        }
    }
}

/// A metric's field `name`, looked for from `next` on and `next` moved past it: fields are in
/// schema order, as families are written, so the search mostly meets it first. A field
/// before `next` is still found.
fn field_from(metric: &MetricRef, name: &str, next: &mut usize) -> Option<Value> {
    let after = metric.fields.get(*next..).unwrap_or_default();
    // The schema's own text, most often: the same address, no bytes to compare.
    let same = |k: &str| std::ptr::eq(k, name) || k == name;
    match after.iter().position(|(k, _)| same(k)) {
        Some(i) => {
            *next += i + 1;
            Some(after[i].1)
        }
        None => metric.field(name),
    }
}

impl Encoder for Prometheus {
    fn encode(&mut self, metrics: &Metrics, out: &mut Vec<u8>) {
        // About what a listener's lines take: the buffer grows once, not line by line.
        out.reserve(metrics.len() * 560);
        let Self {
            user_labels,
            labels,
        } = self;
        labels.clear();
        // Families are written in schema order, each with all its samples together, as the
        // format requires. Written straight into `out`: a family with no sample is taken back.
        for m in &SCHEMA {
            // Each metric of the measurement, with where its labels are in `labels` and where
            // its next field is looked for.
            let mut of_measurement: Vec<(MetricRef, std::ops::Range<usize>, usize)> = metrics
                .iter()
                .filter(|x| x.name == m.name)
                .map(|x| {
                    let start = labels.len();
                    push_labels(&x, user_labels, labels);
                    (x, start..labels.len(), 0)
                })
                .collect();
            for f in m.fields.iter().filter(|f| f.kind != Kind::Delta) {
                let start = out.len();
                out.extend_from_slice(b"# HELP ");
                push_family(m.name, f, out);
                let name = start + b"# HELP ".len()..out.len();
                out.push(b' ');
                push_help(f.help, out);
                if !f.unit.is_empty() {
                    let _ = write!(out, " [{}]", f.unit);
                }
                out.extend_from_slice(b"\n# TYPE ");
                out.extend_from_within(name.clone());
                let kind = if f.kind == Kind::Counter {
                    "counter"
                } else {
                    "gauge"
                };
                let _ = writeln!(out, " {kind}");
                let header = out.len();
                for (metric, own, next) in &mut of_measurement {
                    let Some(v) = field_from(metric, f.name, next) else {
                        continue;
                    };
                    if matches!(v, Value::Float(x) if !x.is_finite()) {
                        continue;
                    }
                    out.extend_from_within(name.clone());
                    out.extend_from_slice(&labels[own.clone()]);
                    out.push(b' ');
                    match v {
                        Value::Int(i) => out.extend_from_slice(Decimal::new(i).as_bytes()),
                        // Writing into a Vec cannot fail.
                        Value::Float(x) => match whole_float(x) {
                            Some(d) => out.extend_from_slice(d.as_bytes()),
                            None => drop(write!(out, "{x}")),
                        },
                    }
                    out.push(b'\n');
                }
                if out.len() == header {
                    out.truncate(start);
                }
            }
        }
    }
}

// The end-to-end tests' checker, so the encoder is held to the same rules there and here.
#[cfg(test)]
#[path = "../../tests/integration/support/exposition.rs"]
mod exposition;

#[cfg(test)]
mod tests {
    use super::exposition;
    use super::*;
    use crate::metric::{LISTENER, NETNS};

    fn report() -> Vec<Metric> {
        vec![
            Metric {
                name: LISTENER,
                tags: vec![
                    ("address", "::1".into()),
                    ("port", "80".into()),
                    ("process", "we\"ird\\name".into()),
                ],
                fields: vec![
                    ("queue_depth", Value::Int(3)),
                    ("queue_full_ratio", Value::Float(0.5)),
                    ("drops", Value::Int(14)),
                    ("drops_delta", Value::Int(2)),
                ],
                timestamp: 1,
            },
            Metric {
                name: NETNS,
                tags: vec![],
                fields: vec![("listen_overflows", Value::Int(9))],
                timestamp: 1,
            },
        ]
    }

    /// A label value as the text format's parser reads it back: `\\`, `\"` and `\n` unescaped,
    /// an unescaped `"` ends it, a raw newline or any other escape is an error.
    fn read_label_value(written: &str) -> Result<String, String> {
        let mut out = String::new();
        let mut chars = written.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('\\') => out.push('\\'),
                    Some('"') => out.push('"'),
                    Some('n') => out.push('\n'),
                    other => return Err(format!("invalid escape {other:?}")),
                },
                '"' | '\n' => return Err(format!("raw {c:?} in {written:?}")),
                c => out.push(c),
            }
        }
        Ok(out)
    }

    #[test]
    fn label_values_are_carried_exactly() {
        for v in [
            "trail\\",
            "bs\\",
            "q\"uo\\te",
            "a\nb",
            "a\\nb",
            "\\\"",
            "tab\there\r\u{1}",
            "a,b=c d",
        ] {
            let mut bytes = Vec::new();
            escape_label(v, &mut bytes);
            let written = String::from_utf8(bytes).unwrap();
            assert_eq!(read_label_value(&written).as_deref(), Ok(v), "{written}");
        }
        let m = Metric {
            name: LISTENER,
            tags: vec![("process", "a\nb".into())],
            fields: vec![("queue_depth", Value::Int(1))],
            timestamp: 1,
        };
        let mut out = Vec::new();
        Prometheus::new(vec![("host".into(), "h\\".into())]).encode_all(&[m], &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("acceptq_listener_queue_depth{process=\"a\\nb\",host=\"h\\\\\"} 1\n"),
            "{text}"
        );
    }

    #[test]
    fn exposition_is_well_formed() {
        let mut out = Vec::new();
        Prometheus::default().encode_all(&report(), &mut out);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(exposition::check_exposition(&text), Ok(4), "{text}");
        assert!(text.contains("# TYPE acceptq_listener_drops_total counter\n"));
        assert!(text.contains("acceptq_listener_queue_depth{address=\"::1\",port=\"80\",process=\"we\\\"ird\\\\name\"} 3\n"), "{text}");
        assert!(text.contains("acceptq_netns_listen_overflows_total 9\n"));
        assert!(!text.contains("delta"));
    }
}

#[cfg(test)]
mod prop {
    use proptest::prelude::*;

    use super::*;
    use crate::metric::{field_spec, LISTENER};

    type Sample = (String, Vec<(String, String)>, f64);

    /// A strict reader of the text format 0.0.4: `# HELP`/`# TYPE` comments, and samples
    /// `name{label="value",...} value` with only `\\`, `\"` and `\n` escaped in a value, one
    /// space before the number, nothing after it.
    fn parse_exposition(text: &str) -> Result<Vec<Sample>, String> {
        let name_ok = |n: &str, colon: bool| {
            !n.is_empty()
                && n.chars().enumerate().all(|(i, c)| {
                    c.is_ascii_alphabetic()
                        || c == '_'
                        || (colon && c == ':')
                        || (i > 0 && c.is_ascii_digit())
                })
        };
        let body = text.strip_suffix('\n').ok_or("no final newline")?;
        let mut samples = Vec::new();
        for line in body.split('\n') {
            if let Some(comment) = line.strip_prefix("# ") {
                let mut words = comment.splitn(3, ' ');
                match (words.next(), words.next(), words.next()) {
                    (Some("HELP"), Some(n), Some(_)) if name_ok(n, true) => {}
                    (Some("TYPE"), Some(n), Some("counter" | "gauge")) if name_ok(n, true) => {}
                    _ => return Err(format!("bad comment {line:?}")),
                }
                continue;
            }
            let end = line.find(['{', ' ']).ok_or(format!("no value: {line:?}"))?;
            let (name, mut rest) = line.split_at(end);
            if !name_ok(name, true) {
                return Err(format!("bad name {name:?}"));
            }
            let mut labels = Vec::new();
            if let Some(mut r) = rest.strip_prefix('{') {
                loop {
                    let eq = r.find('=').ok_or("label without =")?;
                    let key = &r[..eq];
                    if !name_ok(key, false) {
                        return Err(format!("bad label name {key:?}"));
                    }
                    let mut chars = r[eq + 1..]
                        .strip_prefix('"')
                        .ok_or("unquoted label")?
                        .chars();
                    let mut value = String::new();
                    loop {
                        match chars.next().ok_or("unterminated label value")? {
                            '"' => break,
                            '\\' => match chars.next() {
                                Some('\\') => value.push('\\'),
                                Some('"') => value.push('"'),
                                Some('n') => value.push('\n'),
                                other => return Err(format!("bad escape {other:?}")),
                            },
                            c => value.push(c),
                        }
                    }
                    labels.push((key.to_string(), value));
                    r = chars.as_str();
                    if let Some(more) = r.strip_prefix(',') {
                        r = more;
                    } else {
                        rest = r.strip_prefix('}').ok_or("labels not closed")?;
                        break;
                    }
                }
            }
            let value = rest.strip_prefix(' ').ok_or("no space before the value")?;
            let value: f64 = value.parse().map_err(|_| format!("bad value {value:?}"))?;
            samples.push((name.to_string(), labels, value));
        }
        Ok(samples)
    }

    fn finite() -> impl Strategy<Value = f64> {
        any::<f64>().prop_filter("finite", |f| f.is_finite())
    }

    proptest! {
        #![proptest_config(crate::prop_config(512))]

        /// Any label text and value comes back through a strict reader of the format.
        #[test]
        fn any_label_and_value_round_trips(process in any::<String>(), netns in "[a\\\\\"\n{},= é]{0,10}", user in "[a-z\\\\\"\n}]{1,6}", depth in any::<u64>(), ratio in finite()) {
            let m = Metric {
                name: LISTENER,
                tags: vec![("process", process.clone()), ("netns", netns.clone())],
                fields: vec![("queue_depth", Value::Int(depth)), ("queue_full_ratio", Value::Float(ratio))],
                timestamp: 1,
            };
            let mut out = Vec::new();
            Prometheus::new(vec![("site".into(), user.clone())]).encode_all(&[m], &mut out);
            let text = String::from_utf8(out).unwrap();
            let samples = parse_exposition(&text).map_err(|e| TestCaseError::fail(format!("{e}: {text}")))?;
            let mut labels: Vec<(String, String)> = [("process", process), ("netns", netns), ("site", user)]
                .into_iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| (k.to_string(), v))
                .collect();
            labels.sort();
            let want: Vec<Sample> = vec![
                (family(LISTENER, field_spec(LISTENER, "queue_depth").unwrap()), labels.clone(), depth as f64),
                (family(LISTENER, field_spec(LISTENER, "queue_full_ratio").unwrap()), labels, ratio),
            ];
            let mut got = samples;
            for s in &mut got {
                s.1.sort();
            }
            got.sort_by(|a, b| a.0.cmp(&b.0));
            let mut want = want;
            want.sort_by(|a, b| a.0.cmp(&b.0));
            prop_assert_eq!(got, want);
        }
    }
}
