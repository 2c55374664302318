//! JSON lines: one `{"name","tags","fields","timestamp"}` object per metric per line, the
//! shape Telegraf's JSON serializer writes: easy for jq and scripts. (Telegraf's own JSON parser
//! would need `json_name_key`, `tag_keys` and `json_time_key` to read it; use influx there.)

use serde_json::{Map, Number, Value as Json};

use super::{Encoder, UserTags};
use crate::metric::{Metric, Value};

/// Tag values go out exactly: JSON strings carry any text (serde_json escapes quotes,
/// backslashes and control characters).
#[derive(Default)]
pub struct JsonLines {
    tags: UserTags,
}

impl JsonLines {
    pub fn new(tags: UserTags) -> Self {
        JsonLines { tags }
    }
}

impl Encoder for JsonLines {
    fn encode(&mut self, metrics: &[Metric], out: &mut Vec<u8>) {
        for m in metrics {
            let tags: Map<String, Json> = m
                .tags
                .iter()
                .map(|(k, v)| (*k, v))
                .chain(self.tags.iter().map(|(k, v)| (k.as_str(), v)))
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| (k.to_string(), Json::String(v.clone())))
                .collect();
            let fields: Map<String, Json> = m
                .fields
                .iter()
                .filter_map(|(k, v)| {
                    let n = match v {
                        Value::Int(i) => Number::from(*i),
                        Value::Float(f) => Number::from_f64(*f)?,
                    };
                    Some((k.to_string(), Json::Number(n)))
                })
                .collect();
            let mut obj = Map::new();
            obj.insert("name".into(), Json::String(m.name.into()));
            obj.insert("tags".into(), Json::Object(tags));
            obj.insert("fields".into(), Json::Object(fields));
            obj.insert("timestamp".into(), Json::Number(m.timestamp.into()));
            // Serialising a Value tree into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *out, &Json::Object(obj));
            out.push(b'\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        JsonLines::new(vec![("host".into(), "h \\\"1".into())]).encode(&[m.clone(), m], &mut out);
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
            JsonLines::new(vec![("site".into(), user.clone())]).encode(&[m], &mut out);
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
