//! Influx line protocol (Telegraf `data_format = "influx"`, InfluxDB `/write?precision=ns`),
//! written with `influxdb-line-protocol`'s builder, which escapes names, tags and fields.

use influxdb_line_protocol::builder::{AfterMeasurement, LineProtocolBuilder};

use super::{clean, Encoder};
use crate::metric::{Metric, Value};

pub struct Influx;

impl Encoder for Influx {
    fn encode(&mut self, metrics: &[Metric], out: &mut Vec<u8>) {
        for m in metrics {
            line(m, out);
        }
    }
}

/// Integers carry `i`: Telegraf clips `u` unless configured for it. A value past i64 cannot
/// occur for these counters in practice; it is left out rather than written wrong.
fn int(v: u64) -> Option<i64> {
    i64::try_from(v).ok()
}

fn line(m: &Metric, out: &mut Vec<u8>) {
    // The builder writes what it is given: leave out what would make the line invalid (an empty
    // tag value, NaN or infinity) before building.
    let fields: Vec<(&str, Value)> = m
        .fields
        .iter()
        .filter(|(_, v)| match v {
            Value::Int(i) => int(*i).is_some(),
            Value::Float(f) => f.is_finite(),
        })
        .map(|(k, v)| (*k, *v))
        .collect();
    let Some(((first_key, first), rest)) = fields.split_first() else {
        return;
    };
    let mut b: LineProtocolBuilder<&mut Vec<u8>, AfterMeasurement> =
        LineProtocolBuilder::new_with(out).measurement(m.name);
    for (k, v) in &m.tags {
        let v = clean(v);
        if !v.is_empty() {
            b = b.tag(k, &v);
        }
    }
    let mut b = match first {
        Value::Int(i) => b.field(first_key, int(*i).unwrap_or_default()),
        Value::Float(f) => b.field(first_key, *f),
    };
    for (k, v) in rest {
        b = match v {
            Value::Int(i) => b.field(k, int(*i).unwrap_or_default()),
            Value::Float(f) => b.field(k, *f),
        };
    }
    b.timestamp(m.timestamp).close_line();
}

#[cfg(test)]
mod tests {
    use super::*;
    use influxdb_line_protocol::{parse_lines, FieldValue};

    fn encode(m: &Metric) -> String {
        let mut out = Vec::new();
        Influx.encode(std::slice::from_ref(m), &mut out);
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
    fn empty_tags_control_characters_and_nan_are_left_out() {
        let m = metric(
            vec![("process", String::new()), ("netns", "a\nb".into())],
            vec![
                ("queue_full_ratio", Value::Float(f64::NAN)),
                ("drops", Value::Int(1)),
            ],
        );
        let text = encode(&m);
        assert_eq!(
            text,
            "acceptq_listener,netns=ab drops=1i 1700000000123456789\n"
        );
        assert!(parse_lines(&text).all(|l| l.is_ok()));
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
