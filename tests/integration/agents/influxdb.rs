//! InfluxDB 1.x: a real `influxd` takes acceptq's line protocol and keeps its field types.

use std::collections::HashMap;

use super::overflowing;
use crate::support::formats::strict_influx;
use crate::support::influxd::Influxd;
use crate::support::*;

tests![influxdb_stores_line_protocol_with_integer_fields];

fn influxdb_stores_line_protocol_with_integer_fields() {
    let test = "agents::influxdb::influxdb_stores_line_protocol_with_integer_fields";
    if !(netns_gate(test) && skip_unless(have("influxd"), test, "needs influxd (Debian influxdb)"))
    {
        return;
    }
    let influxd = Influxd::start("influx");

    let (ns, _driver, lport) = overflowing("influx");
    let out = ns.acceptq(&["--once"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let problems = strict_influx(&text);
    assert!(problems.is_empty(), "{problems:#?}\n{text}");

    influxd.write(text.as_bytes());

    let series = influxd.query("SELECT * FROM acceptq_listener");
    let s = series
        .first()
        .unwrap_or_else(|| panic!("no acceptq_listener in InfluxDB"));
    assert_eq!(s["name"], "acceptq_listener");
    let columns: Vec<&str> = s["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    let rows = s["values"].as_array().unwrap();
    let port_col = columns.iter().position(|c| *c == "port").unwrap();
    let lport = lport.to_string();
    let row = rows
        .iter()
        .find(|r| r[port_col].as_str() == Some(lport.as_str()))
        .unwrap_or_else(|| panic!("no row for port {lport}: {s}"));
    let col = |name: &str| {
        let i = columns
            .iter()
            .position(|c| *c == name)
            .unwrap_or_else(|| panic!("no column {name}: {columns:?}"));
        &row[i]
    };
    assert_eq!(col("address"), "127.0.0.1");
    assert_eq!(col("queue_depth"), 3);
    assert_eq!(col("queue_limit"), 2);
    assert!(col("drops").as_u64().is_some_and(|d| d > 0), "{row}");

    let tags: Vec<Json> = influxd
        .query("SHOW TAG KEYS FROM acceptq_listener")
        .first()
        .and_then(|s| s["values"].as_array().cloned())
        .unwrap_or_default();
    for tag in ["address", "port"] {
        assert!(
            tags.iter().any(|t| t[0] == tag),
            "tag {tag} missing: {tags:?}"
        );
    }

    let mut types: HashMap<(String, String), String> = HashMap::new();
    for s in influxd.query("SHOW FIELD KEYS") {
        let m = s["name"].as_str().unwrap().to_string();
        for v in s["values"].as_array().unwrap() {
            types.insert(
                (m.clone(), v[0].as_str().unwrap().into()),
                v[1].as_str().unwrap().into(),
            );
        }
    }
    let ty = |m: &str, f: &str| types.get(&(m.into(), f.into())).map(String::as_str);
    for f in [
        "queue_depth",
        "queue_depth_max",
        "queue_limit",
        "drops",
        "syn_queue_depth",
        "sockets",
    ] {
        assert_eq!(ty("acceptq_listener", f), Some("integer"), "{f}: {types:?}");
    }
    assert_eq!(ty("acceptq_listener", "queue_full_ratio"), Some("float"));
    for f in ["listen_overflows", "listen_drops", "somaxconn"] {
        assert_eq!(ty("acceptq_netns", f), Some("integer"), "{f}: {types:?}");
    }
    note!("agents: influxdb suite ran ({} fields typed)", types.len());
}
