//! InfluxDB 1.x: a real `influxd` takes acceptq's line protocol and keeps its field types.

use std::collections::HashMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::overflowing;
use crate::support::formats::strict_influx;
use crate::support::*;

tests![influxdb_stores_line_protocol_with_integer_fields];

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// One HTTP/1.0 exchange (no chunked replies to decode); returns status and body.
fn http(port: u16, method: &str, target: &str, body: &[u8]) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    let head = format!(
        "{method} {target} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    let mut reply = Vec::new();
    s.read_to_end(&mut reply)?;
    let reply = String::from_utf8_lossy(&reply).into_owned();
    let (head, body) = reply.split_once("\r\n\r\n").unwrap_or((&reply, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok((status, body.to_string()))
}

/// The series of the first result of an InfluxQL query.
fn influx_query(port: u16, db: &str, q: &str) -> Vec<Json> {
    let target = format!("/query?db={db}&q={}", urlencode(q));
    let (status, body) = http(port, "GET", &target, b"").unwrap();
    assert_eq!(status, 200, "{q}: {body}");
    let v: Json = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{q}: {e}: {body}"));
    assert!(v["results"][0].get("error").is_none(), "{q}: {body}");
    v["results"][0]["series"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Starts influxd on free loopback ports, retrying if a port was taken meanwhile.
fn start_influxd(dir: &TempDir) -> (Daemon, u16) {
    let d = dir.0.display();
    for attempt in 0..3 {
        let (http_port, rpc_port) = (free_port(), free_port());
        if http_port == rpc_port {
            continue;
        }
        let config = format!(
            r#"reporting-disabled = true
bind-address = "127.0.0.1:{rpc_port}"

[meta]
  dir = "{d}/meta"
  logging-enabled = false

[data]
  dir = "{d}/data"
  wal-dir = "{d}/wal"
  index-version = "inmem"
  query-log-enabled = false

[monitor]
  store-enabled = false

[subscriber]
  enabled = false

[continuous_queries]
  enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:{http_port}"
  log-enabled = false
  pprof-enabled = false
"#
        );
        let path = dir.join("influxdb.conf");
        fs::write(&path, config).unwrap();
        let log = format!("influxd-{attempt}.log");
        let log_file = dir.file(&log);
        let mut influxd = Daemon::spawn(
            "influxd",
            Command::new("influxd")
                .args(["-config", path.to_str().unwrap()])
                .stdin(Stdio::null())
                .stdout(log_file.try_clone().unwrap())
                .stderr(log_file),
        );
        let up = wait_for(Duration::from_secs(20), || {
            if influxd.exited().is_some() {
                return Some(false);
            }
            matches!(http(http_port, "GET", "/ping", b""), Ok((204, _))).then_some(true)
        });
        match up {
            Some(true) => return (influxd, http_port),
            Some(false) => note!(
                "influxd exited at start (attempt {attempt}):\n{}",
                fs::read_to_string(dir.join(&log)).unwrap_or_default()
            ),
            None => panic!(
                "influxd did not answer /ping in 20 s:\n{}",
                fs::read_to_string(dir.join(&log)).unwrap_or_default()
            ),
        }
    }
    panic!("influxd would not start");
}

fn influxdb_stores_line_protocol_with_integer_fields() {
    let test = "agents::influxdb::influxdb_stores_line_protocol_with_integer_fields";
    if !(netns_gate(test) && skip_unless(have("influxd"), test, "needs influxd (Debian influxdb)"))
    {
        return;
    }
    let dir = TempDir::new("influx");
    let (_influxd, port) = start_influxd(&dir);

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

    let db = "acceptq_e2e";
    let (status, body) = http(
        port,
        "POST",
        &format!("/query?q={}", urlencode(&format!("CREATE DATABASE {db}"))),
        b"",
    )
    .unwrap();
    assert_eq!(status, 200, "CREATE DATABASE: {body}");
    let (status, body) = http(
        port,
        "POST",
        &format!("/write?db={db}&precision=ns"),
        text.as_bytes(),
    )
    .unwrap();
    assert_eq!(
        status, 204,
        "/write refused acceptq's output: {body}\n{text}"
    );

    let series = influx_query(port, db, "SELECT * FROM acceptq_listener");
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

    let tags: Vec<Json> = influx_query(port, db, "SHOW TAG KEYS FROM acceptq_listener")
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
    for s in influx_query(port, db, "SHOW FIELD KEYS") {
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
