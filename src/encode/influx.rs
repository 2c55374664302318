//! Influx line protocol (Telegraf `data_format = "influx"`, InfluxDB `/write?precision=ns`).
//!
//! Escaping follows what InfluxDB 1.x and Telegraf read back, not the line protocol's prose:
//! in a tag key or value only `,`, `=` and space are escaped with `\`, and a `\` before anything
//! else stays a literal byte (`\\` is *not* read as one backslash: it would be stored doubled).
//! Some values cannot be carried byte for byte at all (see [`carried_exactly`]); they are
//! written in an escaped form that starts with `\`, a start no value written as-is has.

use std::io::Write as _;

use super::{Encoder, NameMemo, UserTags};
#[cfg(test)]
use crate::metric::Metric;
use crate::metric::{whole_float, Decimal, MetricRef, Metrics, Value};

#[derive(Default)]
pub struct Influx {
    /// The `--tag`s as every line carries them: `,key=value` each, escaped once.
    user_tags: Vec<u8>,
    /// Whether a measurement, tag or field name needs no escaping.
    plain: NameMemo<bool>,
}

impl Influx {
    pub fn new(tags: UserTags) -> Self {
        let mut user_tags = Vec::new();
        for (k, v) in &tags {
            push_tag(k, v, &mut user_tags);
        }
        Influx {
            user_tags,
            plain: NameMemo::default(),
        }
    }
}

impl Encoder for Influx {
    fn encode(&mut self, metrics: &Metrics, out: &mut Vec<u8>) {
        // About what a listener's line takes: the buffer grows once, not line by line.
        out.reserve(metrics.len() * 160);
        let mut stamp = Stamp::default();
        for m in metrics.iter() {
            line(&m, self, &mut stamp, out);
        }
    }
}

/// Appends `,key=value`; nothing for an empty value, which is invalid line protocol (the tag is
/// absent instead).
fn push_tag(k: &str, v: &str, out: &mut Vec<u8>) {
    if v.is_empty() {
        return;
    }
    out.push(b',');
    push_escaped(k, b", =", out);
    out.push(b'=');
    push_tag_value(v, out);
}

/// Bytes a tag value may hold for it to be written as it is: not `,`, `=`, space or `\`, no
/// control character and ASCII (what [`carried_exactly`] asks of other text is not needed
/// then). Addresses, ports and most names are all such bytes.
const PLAIN: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0x21;
    while b < 0x7f {
        t[b] = !matches!(b as u8, b',' | b'=' | b'\\');
        b += 1;
    }
    t
};

/// Appends a name (measurement, tag or field key) escaped, looking up once whether it needs it.
fn push_name(name: &'static str, special: &[u8], memo: &mut NameMemo<bool>, out: &mut Vec<u8>) {
    if memo.get(name, |n| !n.bytes().any(|b| special.contains(&b))) {
        out.extend_from_slice(name.as_bytes());
    } else {
        push_escaped(name, special, out);
    }
}

/// Integers carry `i`: Telegraf clips `u` unless configured for it. A value past i64 cannot
/// occur for these counters in practice; it is left out rather than written wrong.
fn int(v: u64) -> Option<i64> {
    i64::try_from(v).ok()
}

/// Whether a tag value reaches InfluxDB 1.x and Telegraf unchanged when written with only `,`,
/// `=` and space escaped. Not so for:
/// - a control character: a newline ends the line, and Telegraf refuses tab, CR and form feed;
/// - a trailing `\`: it escapes the `,` or space that ends the value (`invalid tag format`);
/// - `\` before `=`: InfluxDB 1.x finds line ends by skipping `\` and the byte after it, so it
///   pairs the backslashes differently from its tag parser, and with a `"` further on the line
///   it reads past the newline and loses this line and the next;
/// - `\` before `"`: Telegraf's parser turns `\"` into `"`.
///
/// A value starting with `\` is carried exactly too, but that start marks the escaped form, so
/// such a value is escaped as well: two distinct values never share a series.
pub fn carried_exactly(v: &str) -> bool {
    // Most values have no `\`: one scan for it instead of four.
    let backslashes_ok = !v.contains('\\')
        || (!v.starts_with('\\')
            && !v.ends_with('\\')
            && !v.contains("\\=")
            && !v.contains("\\\""));
    // An ASCII value, the usual kind, has only ASCII's control characters.
    let control = if v.is_ascii() {
        v.bytes().any(|b| b.is_ascii_control())
    } else {
        v.chars().any(char::is_control)
    };
    backslashes_ok && !control
}

/// Appends `s` with `\` before each byte of `special`.
fn push_escaped(s: &str, special: &[u8], out: &mut Vec<u8>) {
    // Every byte escaped here is below 64: a bit set, one shift per byte to test.
    let set = special.iter().fold(0u64, |set, b| set | 1 << b);
    let is_special = |b: u8| b < 64 && set >> b & 1 == 1;
    // Names and most values have none: copied whole rather than byte by byte.
    if !s.bytes().any(is_special) {
        out.extend_from_slice(s.as_bytes());
        return;
    }
    for b in s.bytes() {
        if is_special(b) {
            out.push(b'\\');
        }
        out.push(b);
    }
}

/// Appends a tag value: as is with `,`, `=` and space escaped when [`carried_exactly`]; else
/// `\` followed by the value with `\`, `=`, `"` and control characters written `\xHH` (each
/// UTF-8 byte), e.g. `trail\` as `\trail\x5c`. The escaped form never ends in `\` and has no
/// `\` before `=` or `"`, and its leading `\` tells it from every value written as is.
pub fn push_tag_value(v: &str, out: &mut Vec<u8>) {
    if carried_exactly(v) {
        push_escaped(v, b", =", out);
        return;
    }
    out.push(b'\\');
    let mut utf8 = [0u8; 4];
    for c in v.chars() {
        if matches!(c, '\\' | '=' | '"') || c.is_control() {
            for b in c.encode_utf8(&mut utf8).bytes() {
                let _ = write!(out, "\\x{b:02x}");
            }
        } else {
            push_escaped(c.encode_utf8(&mut utf8), b", ", out);
        }
    }
}

/// A timestamp's digits, written once for the metrics that share it: every one of a report's.
#[derive(Default)]
struct Stamp {
    time: Option<i64>,
    text: Vec<u8>,
}

impl Stamp {
    fn text(&mut self, t: i64) -> &[u8] {
        if self.time != Some(t) {
            self.text.clear();
            push_timestamp(t, &mut self.text);
            self.time = Some(t);
        }
        &self.text
    }
}

fn line(m: &MetricRef, enc: &mut Influx, stamp: &mut Stamp, out: &mut Vec<u8>) {
    // Leave out what would make the line invalid (NaN, infinity, a value past i64) first: a
    // metric with no field left writes nothing.
    let mut fields = m.fields.iter().filter(|(_, v)| match v {
        Value::Int(i) => int(*i).is_some(),
        Value::Float(f) => f.is_finite(),
    });
    let Some(first) = fields.next() else {
        return;
    };
    let plain = &mut enc.plain;
    push_name(m.name, b", ", plain, out);
    for (k, v) in m.tags() {
        if !v.is_empty() && v.bytes().all(|b| PLAIN[usize::from(b)]) {
            out.push(b',');
            push_name(k, b", =", plain, out);
            out.push(b'=');
            out.extend_from_slice(v.as_bytes());
        } else {
            push_tag(k, v, out);
        }
    }
    out.extend_from_slice(&enc.user_tags);
    for (i, (k, v)) in std::iter::once(first).chain(fields).enumerate() {
        out.push(if i == 0 { b' ' } else { b',' });
        push_name(k, b", =", plain, out);
        out.push(b'=');
        match v {
            // Kept by the filter above, so within i64.
            Value::Int(n) => {
                out.extend_from_slice(Decimal::new(*n).as_bytes());
                out.push(b'i');
            }
            // Writing into a Vec cannot fail.
            Value::Float(f) => match whole_float(*f) {
                Some(d) => out.extend_from_slice(d.as_bytes()),
                None => drop(write!(out, "{f}")),
            },
        }
    }
    out.push(b' ');
    out.extend_from_slice(stamp.text(m.timestamp));
    out.push(b'\n');
}

/// A metric's timestamp in ns: its digits (a time before 1970 has a sign).
pub(crate) fn push_timestamp(t: i64, out: &mut Vec<u8>) {
    if t < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(Decimal::new(t.unsigned_abs()).as_bytes());
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use influxdb_line_protocol::{parse_lines, FieldValue};
    use std::collections::HashMap;

    fn encode(m: &Metric) -> String {
        let mut out = Vec::new();
        Influx::default().encode_all(std::slice::from_ref(m), &mut out);
        String::from_utf8(out).unwrap()
    }

    fn metric(tags: Vec<(&'static str, String)>, fields: Vec<(&'static str, Value)>) -> Metric {
        Metric {
            name: "acceptq_listener",
            tags,
            fields,
            timestamp: 1_700_000_000_123_456_789,
        }
    }

    /// InfluxDB 1.x's reading of one request body (models/points.go): where `scanLine` ends
    /// each line, then the tag values of each as `scanTagsValue` cuts them and `unescapeTag`
    /// unescapes them. `Err` where InfluxDB rejects a line.
    pub fn influxdb1_tag_values(body: &[u8]) -> Vec<Result<Vec<Vec<u8>>, String>> {
        let mut lines = Vec::new();
        let mut i = 0;
        while i < body.len() {
            let start = i;
            let (mut quoted, mut fields, mut equals, mut commas) = (false, false, 0, 0);
            while i < body.len() {
                if body[i] == b'\\' && i + 2 < body.len() {
                    i += 2;
                    continue;
                }
                if body[i] == b' ' {
                    fields = true;
                }
                if fields {
                    if !quoted && body[i] == b'=' {
                        i += 1;
                        equals += 1;
                        continue;
                    } else if !quoted && body[i] == b',' {
                        i += 1;
                        commas += 1;
                        continue;
                    } else if body[i] == b'"' && equals > commas {
                        i += 1;
                        quoted = !quoted;
                        continue;
                    }
                }
                if body[i] == b'\n' && !quoted {
                    break;
                }
                i += 1;
            }
            lines.push(tag_values_of(&body[start..i]));
            i += 1;
        }
        lines
    }

    fn tag_values_of(line: &[u8]) -> Result<Vec<Vec<u8>>, String> {
        let unescaped = |i: usize| i == 0 || line[i - 1] != b'\\';
        let mut i = 0;
        while i < line.len() && !(matches!(line[i], b',' | b' ') && unescaped(i)) {
            i += 1;
        }
        let mut values = Vec::new();
        while i < line.len() && line[i] == b',' {
            i += 1;
            while i < line.len() && !(line[i] == b'=' && unescaped(i)) {
                if matches!(line[i], b',' | b' ') && unescaped(i) {
                    return Err(format!("missing tag value at {i}"));
                }
                i += 1;
            }
            i += 1;
            let start = i;
            if i >= line.len() || matches!(line[i], b',' | b' ') {
                return Err(format!("missing tag value at {i}"));
            }
            loop {
                i += 1;
                if i >= line.len() {
                    return Err("missing fields".into());
                }
                if line[i] == b'=' && unescaped(i) {
                    return Err(format!("invalid tag format at {i}"));
                }
                if matches!(line[i], b',' | b' ') && unescaped(i) {
                    break;
                }
            }
            let mut v = line[start..i].to_vec();
            for c in [b',', b' ', b'='] {
                v = replace(&v, &[b'\\', c], &[c]);
            }
            values.push(v);
        }
        if i >= line.len() || line[i] != b' ' {
            return Err("no fields".into());
        }
        Ok(values)
    }

    fn replace(s: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < s.len() {
            if s[i..].starts_with(from) {
                out.extend_from_slice(to);
                i += from.len();
            } else {
                out.push(s[i]);
                i += 1;
            }
        }
        out
    }

    /// Telegraf's tag value unescaping (plugins/parsers/influx/escape.go): one left-to-right
    /// pass replacing `\,`, `\"`, `\ ` and `\=`.
    fn telegraf_unescape(v: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < v.len() {
            if v[i] == b'\\' && i + 1 < v.len() && matches!(v[i + 1], b',' | b'"' | b' ' | b'=') {
                out.push(v[i + 1]);
                i += 2;
            } else {
                out.push(v[i]);
                i += 1;
            }
        }
        out
    }

    /// Every string of up to `len` characters over an alphabet of the troublemakers.
    fn hostile(len: usize) -> Vec<String> {
        const ALPHABET: [&str; 8] = ["a", "\\", ",", " ", "=", "\"", "\n", "\t"];
        let mut all = vec![String::new()];
        let mut last = vec![String::new()];
        for _ in 0..len {
            last = last
                .iter()
                .flat_map(|s| ALPHABET.iter().map(move |c| format!("{s}{c}")))
                .collect();
            all.extend(last.iter().cloned());
        }
        all.retain(|s| !s.is_empty());
        all
    }

    #[test]
    fn hostile_tag_values_stay_one_line_and_never_share_a_series() {
        let values = hostile(4);
        let mut influxdb: HashMap<Vec<u8>, &str> = HashMap::new();
        let mut telegraf: HashMap<Vec<u8>, &str> = HashMap::new();
        let mut body = Vec::new();
        for v in &values {
            let m = metric(
                vec![("process", v.clone()), ("netns", "n".into())],
                vec![("queue_depth", Value::Int(1))],
            );
            body.clear();
            Influx::default().encode_all(&[m.clone(), m], &mut body);
            let read = influxdb1_tag_values(&body);
            assert_eq!(read.len(), 2, "{v:?} made {body:?} into {read:?}");
            let tags = read[0]
                .clone()
                .unwrap_or_else(|e| panic!("{v:?}: {e}: {}", String::from_utf8_lossy(&body)));
            assert_eq!(read[1].as_ref(), Ok(&tags));
            assert_eq!(tags[1], b"n", "{v:?} spilled into the next tag");
            if carried_exactly(v) {
                assert_eq!(tags[0], v.as_bytes(), "{v:?} not carried byte for byte");
            }
            if let Some(other) = influxdb.insert(tags[0].clone(), v) {
                panic!("{other:?} and {v:?} share a series in InfluxDB");
            }
            // Telegraf cuts values as InfluxDB does; only its unescaping differs.
            let mut written = Vec::new();
            push_tag_value(v, &mut written);
            let t = telegraf_unescape(&written);
            if carried_exactly(v) {
                assert_eq!(t, v.as_bytes(), "{v:?} changed by Telegraf");
            }
            if let Some(other) = telegraf.insert(t, v) {
                panic!("{other:?} and {v:?} share a series in Telegraf");
            }
        }
        assert!(values.len() > 4000);
    }

    #[test]
    fn three_hostile_values_on_one_line_do_not_swallow_the_next() {
        // A `\ ` in one value makes InfluxDB's line splitter think the fields began; a `\=`
        // in another and a `"` in a third would then open a quote across the newline.
        // The model reproduces what influxd 1.6 did with the same value written as is: it
        // rejected this line together with the next ("point is invalid").
        let naive = b"m,v=a\\\\ b\\\\=\"c,w=x f=1i 1\nm f=2i 1\n";
        assert_eq!(influxdb1_tag_values(naive).len(), 1);
        let values = hostile(3);
        let mut body = Vec::new();
        for a in values.iter().filter(|v| v.contains("\\ ")) {
            for b in values.iter().filter(|v| v.contains('=')) {
                for c in ["\"", "x\"y", "\\\""] {
                    let m = metric(
                        vec![
                            ("process", a.clone()),
                            ("unit", b.clone()),
                            ("netns", c.into()),
                        ],
                        vec![("queue_depth", Value::Int(1))],
                    );
                    body.clear();
                    Influx::default().encode_all(&[m.clone(), m], &mut body);
                    let read = influxdb1_tag_values(&body);
                    assert_eq!(read.len(), 2, "{}", String::from_utf8_lossy(&body));
                    assert!(read.iter().all(|r| r.as_ref().is_ok_and(|t| t.len() == 3)));
                }
            }
        }
    }

    #[test]
    fn the_issues_examples_are_written_as_influxdb_reads_them() {
        let mut out = Vec::new();
        for (v, written) in [
            ("q\"uo\\te", "q\"uo\\te"),
            ("a\\,b", "a\\\\,b"),
            ("a\\ b", "a\\\\ b"),
            ("trail\\", "\\trail\\x5c"),
            ("bs\\", "\\bs\\x5c"),
            ("\\lead", "\\\\x5clead"),
            ("a\nb", "\\a\\x0ab"),
            ("a\\=b", "\\a\\x5c\\x3db"),
            ("sp ace,c=1", "sp\\ ace\\,c\\=1"),
        ] {
            out.clear();
            push_tag_value(v, &mut out);
            assert_eq!(String::from_utf8_lossy(&out), written, "{v:?}");
        }
    }

    #[test]
    fn round_trips_through_the_crates_parser() {
        let m = metric(
            vec![
                ("address", "::1".into()),
                ("port", "8080".into()),
                ("process", "my proc,x=1".into()),
            ],
            vec![
                ("queue_depth", Value::Int(3)),
                ("queue_full_ratio", Value::Float(0.25)),
            ],
        );
        let text = encode(&m);
        assert!(text.ends_with(" 1700000000123456789\n"), "{text}");
        let parsed: Vec<_> = parse_lines(&text).collect::<Result<_, _>>().unwrap();
        assert_eq!(parsed.len(), 1);
        let p = &parsed[0];
        assert_eq!(p.series.measurement.to_string(), "acceptq_listener");
        let tags: Vec<(String, String)> = p
            .series
            .tag_set
            .as_ref()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(tags[0], ("address".into(), "::1".into()));
        assert_eq!(tags[2], ("process".into(), "my proc,x=1".into()));
        assert_eq!(p.field_set[0].1, FieldValue::I64(3));
        assert_eq!(p.field_set[1].1, FieldValue::F64(0.25));
        assert_eq!(p.timestamp, Some(1_700_000_000_123_456_789));
    }

    #[test]
    fn empty_tags_and_nan_are_left_out_and_user_tags_follow_ours() {
        let m = metric(
            vec![("process", String::new()), ("netns", "ab".into())],
            vec![
                ("queue_full_ratio", Value::Float(f64::NAN)),
                ("drops", Value::Int(1)),
                ("queue_full_ratio", Value::Float(1.0)),
            ],
        );
        let mut out = Vec::new();
        Influx::new(vec![("host".into(), "web 1".into())]).encode_all(&[m], &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "acceptq_listener,netns=ab,host=web\\ 1 drops=1i,queue_full_ratio=1 1700000000123456789\n"
        );
    }

    #[test]
    fn a_metric_without_any_valid_field_writes_nothing() {
        let m = metric(
            vec![],
            vec![("queue_full_ratio", Value::Float(f64::INFINITY))],
        );
        assert_eq!(encode(&m), "");
    }
}

#[cfg(test)]
mod prop {
    use influxdb_line_protocol::{parse_lines, FieldValue};
    use proptest::prelude::*;

    use super::tests::influxdb1_tag_values;
    use super::*;

    /// The escaped form read back: the leading `\` dropped and each `\xHH` the byte HH. `None`
    /// when `t` is not in that form.
    fn from_escaped_form(t: &[u8]) -> Option<Vec<u8>> {
        let t = t.strip_prefix(b"\\")?;
        let mut out = Vec::new();
        let mut i = 0;
        while i < t.len() {
            let hex = t
                .get(i + 2..i + 4)
                .and_then(|h| std::str::from_utf8(h).ok());
            match hex.filter(|_| t[i] == b'\\' && t[i + 1] == b'x') {
                Some(h) => {
                    out.push(u8::from_str_radix(h, 16).ok()?);
                    i += 4;
                }
                None => {
                    out.push(t[i]);
                    i += 1;
                }
            }
        }
        Some(out)
    }

    /// Text rich in what line protocol treats specially, and any other character.
    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a\\\\, =\"\n\t\r\u{0}x0-9é]{1,12}",
            any::<String>().prop_filter("empty", |s| !s.is_empty()),
        ]
    }

    fn finite() -> impl Strategy<Value = f64> {
        any::<f64>().prop_filter("finite", |f| f.is_finite())
    }

    proptest! {
        #![proptest_config(crate::prop_config(512))]

        /// Any tag text reaches InfluxDB 1.x as itself, or in the escaped form that reads back
        /// as itself; fields and the timestamp come back through the crate's parser.
        #[test]
        fn any_tag_and_field_round_trips(process in text(), netns in text(), user in text(), depth in any::<u64>(), ratio in finite()) {
            let user = if carried_exactly(&user) { user } else { "u".into() };
            let m = Metric {
                name: "acceptq_listener",
                tags: vec![("process", process.clone()), ("netns", netns.clone())],
                fields: vec![("queue_depth", Value::Int(depth)), ("queue_full_ratio", Value::Float(ratio))],
                timestamp: 1_700_000_000_123_456_789,
            };
            let mut body = Vec::new();
            Influx::new(vec![("site".into(), user.clone())]).encode_all(&[m], &mut body);
            let read = influxdb1_tag_values(&body);
            prop_assert_eq!(read.len(), 1, "{}", String::from_utf8_lossy(&body));
            let tags = read[0].clone().map_err(|e| TestCaseError::fail(format!("{e}: {}", String::from_utf8_lossy(&body))))?;
            prop_assert_eq!(tags.len(), 3);
            for (got, want) in tags.iter().zip([&process, &netns, &user]) {
                if carried_exactly(want) {
                    prop_assert_eq!(got, want.as_bytes());
                } else {
                    prop_assert_eq!(from_escaped_form(got), Some(want.as_bytes().to_vec()), "{:?}", String::from_utf8_lossy(got));
                }
            }

            // The crate reads `\\` as one backslash (InfluxDB 2.x's reading; 1.x and Telegraf
            // keep both, see the module's note), so it reads the fields of a line whose tags
            // hold no backslash, and so need no escaped form.
            let no_backslash = |v: &str| -> String {
                v.chars().map(|c| if c == '\\' || c.is_control() { '/' } else { c }).collect()
            };
            let plain = Metric {
                name: "acceptq_listener",
                tags: vec![("process", no_backslash(&process)), ("netns", no_backslash(&netns))],
                fields: vec![("queue_depth", Value::Int(depth)), ("queue_full_ratio", Value::Float(ratio))],
                timestamp: 1_700_000_000_123_456_789,
            };
            body.clear();
            Influx::new(vec![("site".into(), no_backslash(&user))]).encode_all(&[plain], &mut body);
            let text = String::from_utf8(body).unwrap();
            let lines: Vec<_> = parse_lines(&text).collect::<Result<_, _>>().map_err(|e| TestCaseError::fail(format!("{e}: {text}")))?;
            prop_assert_eq!(lines.len(), 1);
            let fields: Vec<(String, FieldValue)> = lines[0].field_set.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
            let mut want = Vec::new();
            if let Ok(d) = i64::try_from(depth) {
                want.push(("queue_depth".to_string(), FieldValue::I64(d)));
            }
            want.push(("queue_full_ratio".to_string(), FieldValue::F64(ratio)));
            prop_assert_eq!(fields, want);
            prop_assert_eq!(lines[0].timestamp, Some(1_700_000_000_123_456_789));
        }
    }
}
