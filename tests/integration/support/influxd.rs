//! A throwaway InfluxDB 1.x (`influxd`, Debian's `influxdb`) on loopback ports, spoken to over
//! plain HTTP/1.0, with one database `db`.

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::harness::note;
use super::process::wait_for;
use super::process::Daemon;
use super::report::Json;
use super::tempdir::TempDir;

pub struct Influxd {
    _daemon: Daemon,
    port: u16,
    _dir: TempDir,
}

impl Influxd {
    /// Starts influxd on free loopback ports (retrying if a port was taken meanwhile) and
    /// creates the database `db`.
    pub fn start(tag: &str) -> Influxd {
        let dir = TempDir::new(tag);
        let d = dir.0.display();
        for attempt in 0..3 {
            let (port, rpc) = (free_port(), free_port());
            if port == rpc {
                continue;
            }
            let config = format!(
                "reporting-disabled = true\nbind-address = \"127.0.0.1:{rpc}\"\n\
                 [meta]\n  dir = \"{d}/meta\"\n  logging-enabled = false\n\
                 [data]\n  dir = \"{d}/data\"\n  wal-dir = \"{d}/wal\"\n  index-version = \"inmem\"\n  query-log-enabled = false\n\
                 [monitor]\n  store-enabled = false\n[subscriber]\n  enabled = false\n\
                 [continuous_queries]\n  enabled = false\n\
                 [http]\n  enabled = true\n  bind-address = \"127.0.0.1:{port}\"\n  log-enabled = false\n  pprof-enabled = false\n"
            );
            let conf = dir.join("influxdb.conf");
            fs::write(&conf, config).unwrap();
            let log = format!("influxd-{attempt}.log");
            let log_file = dir.file(&log);
            let mut daemon = Daemon::spawn(
                "influxd",
                Command::new("influxd")
                    .args(["-config", conf.to_str().unwrap()])
                    .stdin(Stdio::null())
                    .stdout(log_file.try_clone().unwrap())
                    .stderr(log_file),
            );
            let up = wait_for(Duration::from_secs(20), || {
                if daemon.exited().is_some() {
                    return Some(false);
                }
                matches!(http(port, "GET", "/ping", b""), Ok((204, _))).then_some(true)
            });
            let said = || fs::read_to_string(dir.join(&log)).unwrap_or_default();
            match up {
                Some(true) => {
                    let influxd = Influxd {
                        _daemon: daemon,
                        port,
                        _dir: dir,
                    };
                    influxd.post_query("CREATE DATABASE db");
                    return influxd;
                }
                Some(false) => note!("influxd exited at start (attempt {attempt}):\n{}", said()),
                None => panic!("influxd did not answer /ping in 20 s:\n{}", said()),
            }
        }
        panic!("influxd would not start");
    }

    /// A query that changes something (`CREATE DATABASE ...`), which must succeed.
    pub fn post_query(&self, q: &str) {
        let target = format!("/query?q={}", urlencode(q));
        let (status, body) = http(self.port, "POST", &target, b"").unwrap();
        assert_eq!(status, 200, "{q}: {body}");
    }

    /// Writes line protocol into `db` as `curl --data-binary @- /write?db=db&precision=ns`
    /// does; InfluxDB must take all of it.
    pub fn write(&self, lines: &[u8]) {
        let (status, body) = http(self.port, "POST", "/write?db=db&precision=ns", lines).unwrap();
        assert_eq!(
            status,
            204,
            "/write refused acceptq's output: {body}\n{}",
            String::from_utf8_lossy(lines)
        );
    }

    /// The series of the first result of an InfluxQL query on `db`.
    pub fn query(&self, q: &str) -> Vec<Json> {
        let target = format!("/query?db=db&q={}", urlencode(q));
        let (status, body) = http(self.port, "GET", &target, b"").unwrap();
        assert_eq!(status, 200, "{q}: {body}");
        let v: Json = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{q}: {e}: {body}"));
        assert!(v["results"][0].get("error").is_none(), "{q}: {body}");
        v["results"][0]["series"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The values of column `key` of the rows an InfluxQL SELECT returns, one per row.
    pub fn column(&self, q: &str, key: &str) -> Vec<String> {
        let mut out = Vec::new();
        for s in self.query(q) {
            let columns = s["columns"].as_array().unwrap();
            let i = columns.iter().position(|c| c == key).unwrap();
            for row in s["values"].as_array().unwrap() {
                out.push(row[i].as_str().unwrap_or_default().to_string());
            }
        }
        out
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn urlencode(s: &str) -> String {
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
pub fn http(port: u16, method: &str, target: &str, body: &[u8]) -> std::io::Result<(u16, String)> {
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
