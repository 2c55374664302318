//! JSON lines: one `{"name","tags","fields","timestamp"}` object per metric per line, the
//! shape Telegraf's JSON serializer writes: easy for jq and scripts. (Telegraf's own JSON parser
//! would need `json_name_key`, `tag_keys` and `json_time_key` to read it; use influx there.)

use super::{Encoder, UserTags};
#[cfg(test)]
use crate::metric::Metric;
use crate::metric::{Metrics, Value};

/// Tag values go out exactly: JSON strings carry any text (serde_json escapes quotes,
/// backslashes and control characters).
#[derive(Default)]
pub struct JsonLines {
    tags: UserTags,
    /// The order of the last `fields` object's entries, and of the last `tags` object's.
    fields_order: Order,
    tags_order: Order,
}

impl JsonLines {
    pub fn new(tags: UserTags) -> Self {
        JsonLines {
            tags,
            ..JsonLines::default()
        }
    }
}

/// The order an object's entries are written in, kept for the next object: most rows have
/// the same keys as the row before, and are not sorted again.
#[derive(Default)]
struct Order {
    /// Where each key's text is: keys are the schema's names and the `--tag`s, which stay put,
    /// so the same places hold the same text.
    keys: Vec<(usize, usize)>,
    /// Entry indexes by key, each with whether a later entry has its key (and wins), and
    /// whether its key is written as it is.
    sorted: Vec<(usize, bool, bool)>,
    /// Room for sorting.
    scratch: Vec<usize>,
}

impl Order {
    fn of<'k>(&mut self, n: usize, key: impl Fn(usize) -> &'k str) -> &[(usize, bool, bool)] {
        let place = |i: usize| (key(i).as_ptr() as usize, key(i).len());
        let same = self.keys.len() == n && (0..n).all(|i| self.keys[i] == place(i));
        if !same {
            self.keys.clear();
            self.keys.extend((0..n).map(place));
            let order = &mut self.scratch;
            order.clear();
            order.extend(0..n);
            // Stable: of equal keys the later stays later.
            order.sort_by(|a, b| key(*a).cmp(key(*b)));
            self.sorted.clear();
            for (at, &i) in order.iter().enumerate() {
                let shadowed = order.get(at + 1).is_some_and(|&j| key(j) == key(i));
                self.sorted.push((i, shadowed, verbatim(key(i))));
            }
        }
        &self.sorted
    }
}

/// Bytes serde_json writes as they are inside a string: not `"`, `\\` or a control character
/// below space.
const VERBATIM: [bool; 256] = {
    let mut t = [true; 256];
    let mut b = 0;
    while b < 0x20 {
        t[b] = false;
        b += 1;
    }
    t[b'"' as usize] = false;
    t[b'\\' as usize] = false;
    t
};

fn verbatim(s: &str) -> bool {
    s.bytes().all(|b| VERBATIM[usize::from(b)])
}

/// A JSON string as serde_json writes it; one that needs no escape copied whole.
fn push_str(s: &str, out: &mut Vec<u8>) {
    if verbatim(s) {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        // Serialising a string into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

/// A JSON string or number, as serde_json writes it.
// Serialising a string or a finite number into a Vec cannot fail.
macro_rules! string_or_number {
    ($v:expr, $out:expr) => {{
        let _ = serde_json::to_writer(&mut *$out, $v);
    }};
}

// Written directly rather than through a `serde_json::Value` tree, which costs an allocation
// per key and value; the bytes are the same: keys in sorted order (serde_json's default map is
// a BTreeMap), strings and numbers written by serde_json itself.
impl Encoder for JsonLines {
    fn encode(&mut self, metrics: &Metrics, out: &mut Vec<u8>) {
        let Self {
            tags: user,
            fields_order,
            tags_order,
        } = self;
        // About what a listener's lines take: the buffer grows once, not line by line.
        out.reserve(metrics.len() * 250);
        // A metric's tags and the user's, in one list for the sort.
        let mut tags: Vec<(&str, &str)> = Vec::with_capacity(16);
        for m in metrics.iter() {
            tags.clear();
            tags.extend(m.tags().map(|(k, v)| (k as &str, v)));
            tags.extend(user.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            let tag = |i: usize| tags[i];
            out.extend_from_slice(b"{\"fields\":");
            let field = |i: usize| m.fields[i].0;
            write_sorted(m.fields.len(), field, fields_order, out, |i, out| {
                match m.fields[i].1 {
                    Value::Int(n) => string_or_number!(&n, out),
                    Value::Float(f) if f.is_finite() => string_or_number!(&f, out),
                    Value::Float(_) => return false,
                }
                true
            });
            out.extend_from_slice(b",\"name\":");
            push_str(m.name, out);
            out.extend_from_slice(b",\"tags\":");
            let n_tags = tags.len();
            write_sorted(
                n_tags,
                |i| tag(i).0,
                tags_order,
                out,
                |i, out| {
                    let v = tag(i).1;
                    // An empty tag is left out, as by the other formats.
                    if v.is_empty() {
                        return false;
                    }
                    push_str(v, out);
                    true
                },
            );
            out.extend_from_slice(b",\"timestamp\":");
            string_or_number!(&m.timestamp, out);
            out.extend_from_slice(b"}\n");
        }
    }
}

/// Writes an object of `n` entries in the byte order of their keys; `order` remembers the
/// last object's. `value` writes entry `i`'s value, or returns `false` to leave the entry out.
/// Of two entries with one key the later wins, as in a map.
fn write_sorted<'k>(
    n: usize,
    key: impl Fn(usize) -> &'k str,
    order: &mut Order,
    out: &mut Vec<u8>,
    mut value: impl FnMut(usize, &mut Vec<u8>) -> bool,
) {
    out.push(b'{');
    let mut first = true;
    for &(i, shadowed, plain) in order.of(n, &key) {
        if shadowed {
            continue;
        }
        let mark = out.len();
        if !first {
            out.push(b',');
        }
        if plain {
            out.push(b'"');
            out.extend_from_slice(key(i).as_bytes());
            out.extend_from_slice(b"\":");
        } else {
            push_str(key(i), out);
            out.push(b':');
        }
        if value(i, out) {
            first = false;
        } else {
            out.truncate(mark);
        }
    }
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value as Json;

    #[test]
    fn round_trips_through_serde() {
        let m = Metric {
            name: "acceptq_listener",
            tags: vec![
                ("address", "::1".into()),
                ("process", "a \"b\",c=d".into()),
                ("netns", "bs\\\n\u{1}end\\".into()),
            ],
            fields: vec![
                ("queue_depth", Value::Int(3)),
                ("queue_full_ratio", Value::Float(f64::NAN)),
                ("x", Value::Float(0.5)),
            ],
            timestamp: 1_700_000_000_000_000_001,
        };
        let mut out = Vec::new();
        JsonLines::new(vec![("host".into(), "h \\\"1".into())])
            .encode_all(&[m.clone(), m], &mut out);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.lines().count(), 2);
        let v: Json = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(v["name"], "acceptq_listener");
        assert_eq!(v["tags"]["process"], "a \"b\",c=d");
        assert_eq!(v["tags"]["netns"], "bs\\\n\u{1}end\\", "carried exactly");
        assert_eq!(v["tags"]["host"], "h \\\"1");
        assert_eq!(v["fields"]["queue_depth"], 3);
        assert_eq!(v["fields"]["x"], 0.5);
        assert!(
            v["fields"].get("queue_full_ratio").is_none(),
            "NaN left out"
        );
        assert_eq!(v["timestamp"], 1_700_000_000_000_000_001i64);
    }
}

#[cfg(test)]
mod prop {
    use proptest::prelude::*;
    use serde_json::Value as Json;

    use super::*;

    /// The text of field `name`'s number in a JSON line whose fields are numbers, read with
    /// Rust's own (exact) float parser: serde_json's default one may be a unit off in the last
    /// place, which is the reader's doing, not the writer's.
    fn number_text<'a>(line: &'a str, name: &str) -> Option<&'a str> {
        let fields = &line[line.find("\"fields\":{")?..];
        let key = format!("\"{name}\":");
        let start = fields.find(&key)? + key.len();
        let rest = &fields[start..];
        Some(&rest[..rest.find([',', '}'])?])
    }

    proptest! {
        #![proptest_config(crate::prop_config(512))]

        #[test]
        fn any_tag_and_field_round_trips(process in any::<String>(), user in any::<String>(), depth in any::<u64>(), ratio in any::<f64>()) {
            let m = Metric {
                name: "acceptq_listener",
                tags: vec![("process", process.clone())],
                fields: vec![("queue_depth", Value::Int(depth)), ("queue_full_ratio", Value::Float(ratio))],
                timestamp: -5,
            };
            let mut out = Vec::new();
            JsonLines::new(vec![("site".into(), user.clone())]).encode_all(&[m], &mut out);
            let text = String::from_utf8(out).unwrap();
            prop_assert!(text.ends_with('\n') && text.matches('\n').count() == 1, "{:?}", text);
            let v: Json = serde_json::from_str(&text).unwrap();
            // An empty value is left out, as in every format.
            let tag = |k: &str| v["tags"].get(k).and_then(Json::as_str).map(String::from);
            prop_assert_eq!(tag("process"), (!process.is_empty()).then_some(process));
            prop_assert_eq!(tag("site"), (!user.is_empty()).then_some(user));
            prop_assert_eq!(v["fields"]["queue_depth"].as_u64(), Some(depth));
            if ratio.is_finite() {
                let t = number_text(&text, "queue_full_ratio").unwrap();
                prop_assert_eq!(t.parse::<f64>().ok(), Some(ratio), "{}", t);
            } else {
                prop_assert!(v["fields"].get("queue_full_ratio").is_none());
            }
            prop_assert_eq!(v["timestamp"].as_i64(), Some(-5));
        }
    }
}
