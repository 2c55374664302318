//! Proven in the real agents (issue 5): the `conf/` snippets, run as the agents run them.
//!
//! - collectd: a real `collectd -f` runs acceptq through the exec plugin snippet of
//!   `conf/collectd.conf`, as `nobody`, and its csv plugin writes what it understood.
//! - InfluxDB 1.x: a real `influxd` takes acceptq's line protocol and keeps its field types.
//! - Telegraf: not installable here, so a harness does what `inputs.execd` does (DESIGN.md §2)
//!   with the command of `conf/telegraf.conf`, and what `inputs.exec` does with
//!   `conf/telegraf-exec.conf`.
//! - Prometheus: `promtool check metrics`, and a reader that must never see half a `.prom` file.
//!
//! The snippets are the single source: each test reads them and substitutes only paths.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use influxdb_line_protocol::{parse_lines, FieldValue};

use crate::common::*;

/// Where the snippets name the binary; tests put the one cargo built in its place.
const INSTALLED: &str = "/usr/bin/acceptq";
const TYPES_DB: &str = "/usr/share/collectd/types.db";

// ---------------------------------------------------------------------------------------------
// Helpers

fn conf(name: &str) -> String {
    let path = repo().join("conf").join(name);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The value of the first uncommented `key = value` line of a TOML snippet.
fn toml_setting(text: &str, key: &str) -> Option<String> {
    text.lines().map(str::trim).find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (!l.starts_with('#') && k.trim() == key).then(|| v.trim().to_string())
    })
}

/// The strings of a TOML array, nested or not: `["a", "b"]`, `[["a", "b"]]`. Only what the
/// snippets use: double-quoted strings without escapes.
fn toml_strings(value: &str) -> Vec<String> {
    assert!(
        !value.contains('\\') && !value.contains('\''),
        "keep the snippet's strings plain: {value}"
    );
    value
        .split('"')
        .skip(1)
        .step_by(2)
        .map(String::from)
        .collect()
}

/// A snippet's argv with the binary replaced by the one under test.
fn substitute(argv: &[String]) -> Vec<String> {
    assert_eq!(
        argv.first().map(String::as_str),
        Some(INSTALLED),
        "{argv:?}"
    );
    let mut out = argv.to_vec();
    out[0] = acceptq().to_string();
    out
}

/// A directory of our own under the system temp dir, removed on drop.
struct TempDir(PathBuf);

static DIRS: AtomicUsize = AtomicUsize::new(0);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!(
            "acceptq-agents-{tag}-{}-{}",
            std::process::id(),
            DIRS.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        // Readable and searchable by `nobody`, who runs acceptq under collectd.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        TempDir(path)
    }

    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    fn file(&self, name: &str) -> fs::File {
        fs::File::create(self.join(name)).unwrap()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A daemon we started: SIGTERM, up to 10 s to exit, then SIGKILL.
struct Daemon {
    name: &'static str,
    child: Child,
}

impl Daemon {
    fn spawn(name: &'static str, cmd: &mut Command) -> Daemon {
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {cmd:?}: {e}"));
        Daemon { name, child }
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Stops it as its service manager would; returns whether it exited on SIGTERM in time.
    fn stop(&mut self) -> bool {
        if self.exited().is_some() {
            return true;
        }
        // SAFETY: kill has no memory preconditions; the pid is our own unreaped child.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let gone = wait_for(Duration::from_secs(10), || self.exited()).is_some();
        if !gone {
            eprintln!("{}: no exit 10 s after SIGTERM, killing", self.name);
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        gone
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Waits until the listener on `port` has a full queue (3 with backlog 2) and some drops.
fn settle(ns: &Netns, port: u16) {
    let ok = wait_for(Duration::from_secs(5), || {
        let text = output_ok(&mut ns.cmd("ss", &["-tlnH", &format!("sport = :{port}")]));
        let queued = text
            .split_whitespace()
            .nth(1)
            .and_then(|q| q.parse::<u32>().ok());
        (queued == Some(3) && ns.ss_drops(port) > 0).then_some(())
    });
    assert!(ok.is_some(), "listener on {port} never filled and dropped");
}

/// A namespace with one `listen(2)` listener that never accepts and 10 clients: depth 3,
/// limit 2, drops rising.
fn overflowing(tag: &str) -> (Netns, Driver, u16) {
    let ns = Netns::new(tag);
    let mut d = ns.driver();
    let (id, port) = d.listen("127.0.0.1", 0, 2, false);
    d.connect(id, 10);
    settle(&ns, port);
    (ns, d, port)
}

/// Waits for a child to exit; kills it and returns None if it takes longer than `limit`.
fn wait_exit(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let status = wait_for(limit, || child.try_wait().ok().flatten());
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    status
}

/// Checks every line with influxdb-line-protocol's parser (a port of InfluxDB's Go one) and
/// what Telegraf needs besides; returns one problem per bad line.
fn strict_influx(text: &str) -> Vec<String> {
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

// ---------------------------------------------------------------------------------------------
// collectd

/// The values collectd's csv plugin wrote for one identifier, across its dated files.
fn csv_values(dir: &Path, prefix: &str) -> Vec<f64> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix(prefix))
                .is_some_and(|date| date.starts_with(|c: char| c.is_ascii_digit()))
        })
        .collect();
    files.sort();
    files
        .iter()
        .filter_map(|f| fs::read_to_string(f).ok())
        .flat_map(|text| {
            text.lines()
                .filter(|l| !l.starts_with("epoch"))
                .filter_map(|l| l.split(',').nth(1)?.parse::<f64>().ok())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The acceptq processes in `ns`, with their real uid.
fn acceptq_pids(ns: &Netns) -> Vec<(u32, u32)> {
    let out = Command::new("ip")
        .args(["netns", "pids", &ns.name])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse::<u32>().ok())
        .filter(|p| {
            fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "acceptq")
        })
        .filter_map(|p| {
            let status = fs::read_to_string(format!("/proc/{p}/status")).ok()?;
            let uid = status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))?
                .split_whitespace()
                .next()?
                .parse()
                .ok()?;
            Some((p, uid))
        })
        .collect()
}

#[test]
fn collectd_exec_writes_accept_queue_values() {
    let test = "agents::collectd_exec_writes_accept_queue_values";
    if !(netns_gate(test)
        && skip_unless(
            have("collectd"),
            test,
            "needs collectd (Debian collectd-core)",
        )
        && skip_unless(
            Path::new(TYPES_DB).is_file(),
            test,
            "needs collectd's types.db",
        ))
    {
        return;
    }
    let dir = TempDir::new("collectd");
    // collectd runs acceptq as nobody, who must be able to reach the binary: a copy in our
    // world-readable directory (the build tree may be under a private home).
    let bin = dir.join("acceptq");
    fs::copy(acceptq(), &bin).unwrap();
    fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).unwrap();

    let snippet = conf("collectd.conf");
    assert!(snippet.contains(&format!("\"{INSTALLED}\"")), "{snippet}");
    let snippet = snippet.replace(INSTALLED, bin.to_str().unwrap());
    let d = dir.0.display();
    let config = format!(
        r#"Hostname "aqtest"
FQDNLookup false
BaseDir "{d}"
PIDFile "{d}/collectd.pid"
PluginDir "/usr/lib/collectd"
TypesDB "{TYPES_DB}"
Interval 1

LoadPlugin logfile
<Plugin logfile>
  LogLevel info
  File "{d}/collectd.log"
  Timestamp true
</Plugin>

LoadPlugin csv
<Plugin csv>
  DataDir "{d}/csv"
  StoreRates false
</Plugin>

{snippet}"#
    );
    fs::write(dir.join("collectd.conf"), &config).unwrap();

    let (ns, _driver, port) = overflowing("cd");
    // collectd runs inside the namespace, so the acceptq it forks watches it too.
    let mut collectd = Daemon::spawn(
        "collectd",
        ns.cmd(
            "collectd",
            &["-f", "-C", dir.join("collectd.conf").to_str().unwrap()],
        )
        .stdin(Stdio::null())
        .stdout(dir.file("collectd.stdout"))
        .stderr(dir.file("collectd.stderr")),
    );

    let host = dir.join("csv/aqtest");
    let listener_dir = host.join(format!("acceptq-127.0.0.1-{port}"));
    let netns_dir = host.join("acceptq-netns");
    let log = || fs::read_to_string(dir.join("collectd.log")).unwrap_or_default();
    let written = wait_for(Duration::from_secs(20), || {
        if let Some(status) = collectd.exited() {
            panic!("collectd exited early ({status}); log:\n{}", log());
        }
        let depth = csv_values(&listener_dir, "queue_length-depth-");
        let limit = csv_values(&listener_dir, "queue_length-limit-");
        let drops = csv_values(&listener_dir, "derive-drops-");
        let overflows = csv_values(&netns_dir, "derive-listen_overflows-");
        (!depth.is_empty() && !limit.is_empty() && !drops.is_empty() && !overflows.is_empty())
            .then_some((depth, limit, drops, overflows))
    });
    let Some(first) = written else {
        panic!(
            "collectd wrote no acceptq values in 20 s; csv files: {:?}\nlog:\n{}",
            walk(&dir.join("csv")),
            log()
        );
    };

    // collectd closed acceptq's stdin at start: acceptq must keep running (one process, as
    // nobody) and keep reporting, not exit and be restarted every interval.
    let pids = acceptq_pids(&ns);
    assert_eq!(pids.len(), 1, "one acceptq under collectd: {pids:?}");
    assert_eq!(
        pids[0].1, 65534,
        "collectd runs acceptq as nobody: {pids:?}"
    );
    let more = wait_for(Duration::from_secs(6), || {
        let n = csv_values(&listener_dir, "queue_length-depth-").len();
        (n >= first.0.len() + 2).then_some(n)
    });
    assert!(
        more.is_some(),
        "no new values after the first {}",
        first.0.len()
    );
    assert_eq!(acceptq_pids(&ns), pids, "acceptq was restarted");

    // What collectd understood, every value it wrote.
    let depth = csv_values(&listener_dir, "queue_length-depth-");
    let limit = csv_values(&listener_dir, "queue_length-limit-");
    let drops = csv_values(&listener_dir, "derive-drops-");
    let overflows = csv_values(&netns_dir, "derive-listen_overflows-");
    assert!(
        depth.iter().all(|v| *v == 3.0),
        "queue_length-depth: {depth:?}"
    );
    assert!(
        limit.iter().all(|v| *v == 2.0),
        "queue_length-limit: {limit:?}"
    );
    assert!(drops.iter().all(|v| *v > 0.0), "derive-drops: {drops:?}");
    assert!(
        drops.windows(2).all(|w| w[0] <= w[1]),
        "derive-drops: {drops:?}"
    );
    assert!(
        overflows.iter().all(|v| *v > 0.0),
        "listen_overflows: {overflows:?}"
    );
    for file in [
        "derive-listen_drops-",
        "gauge-somaxconn-",
        "count-listeners-",
    ] {
        assert!(!csv_values(&netns_dir, file).is_empty(), "no {file}");
    }

    assert!(collectd.stop(), "collectd did not stop on SIGTERM");
    let log = log();
    let stdout = fs::read_to_string(dir.join("collectd.stdout")).unwrap_or_default();
    // cmd_handle_putval reports a bad identifier or type on collectd's stdout ("-1 ..."); the
    // exec plugin logs lines it cannot parse.
    assert!(
        stdout.trim().is_empty(),
        "collectd rejected PUTVALs:\n{stdout}"
    );
    for bad in [
        "Unable to parse",
        "parse_value",
        "Cannot parse",
        "isn't defined",
        "Cowardly",
        "exec plugin: Failed",
        "exec plugin: No such",
    ] {
        assert!(!log.contains(bad), "collectd log has {bad:?}:\n{log}");
    }
    // acceptq's stderr, as collectd logs it: warnings are fine, errors are not.
    for line in log
        .lines()
        .filter(|l| l.contains("exec_read_one: error = "))
    {
        eprintln!("agents: collectd logged: {line}");
        let msg = line.split("error = ").nth(1).unwrap_or("");
        assert!(
            msg.starts_with("W! ") || msg.starts_with("I! "),
            "acceptq said under collectd: {line}"
        );
    }
    eprintln!(
        "agents: collectd suite ran ({} depth values, drops {:?}..{:?})",
        depth.len(),
        drops.first(),
        drops.last()
    );
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.filter_map(Result::ok) {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p.display().to_string());
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// InfluxDB 1.x

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
            Some(false) => eprintln!(
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

#[test]
fn influxdb_stores_line_protocol_with_integer_fields() {
    let test = "agents::influxdb_stores_line_protocol_with_integer_fields";
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
    eprintln!("agents: influxdb suite ran ({} fields typed)", types.len());
}

// ---------------------------------------------------------------------------------------------
// Telegraf inputs.execd / inputs.exec, by contract

/// A stderr line is logged at the level of its prefix; Telegraf logs any other as an error.
fn telegraf_level(line: &str) -> Option<&'static str> {
    [
        ("E! ", "error"),
        ("W! ", "warn"),
        ("I! ", "info"),
        ("D! ", "debug"),
    ]
    .iter()
    .find(|(p, _)| line.starts_with(p))
    .map(|(_, l)| *l)
}

#[test]
fn telegraf_execd_one_report_per_newline_and_exit_0_on_eof() {
    let text = conf("telegraf.conf");
    assert!(text.contains("[[inputs.execd]]"), "{text}");
    assert_eq!(toml_setting(&text, "signal").as_deref(), Some("\"STDIN\""));
    assert_eq!(
        toml_setting(&text, "data_format").as_deref(),
        Some("\"influx\"")
    );
    let argv = substitute(&toml_strings(
        &toml_setting(&text, "command").expect("command in conf/telegraf.conf"),
    ));

    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();

    // Telegraf's side: a writer with a 1 s deadline per newline, a line reader on stdout, and
    // a logger on stderr.
    let (tick_tx, tick_rx) = mpsc::channel::<bool>();
    let (wrote_tx, wrote_rx) = mpsc::channel::<std::io::Result<()>>();
    let writer = std::thread::spawn(move || {
        let mut stdin = stdin;
        // `false` closes stdin, as Telegraf does to stop the process.
        while let Ok(true) = tick_rx.recv() {
            let r = stdin.write_all(b"\n").and_then(|_| stdin.flush());
            if wrote_tx.send(r).is_err() {
                return;
            }
        }
    });
    let (line_tx, line_rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line_tx.send(line).is_err() {
                break;
            }
        }
    });
    let logger = std::thread::spawn(move || {
        let mut unprefixed = Vec::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            match telegraf_level(&line) {
                Some(level) => eprintln!("agents: telegraf would log at {level}: {line}"),
                None => unprefixed.push(line),
            }
        }
        unprefixed
    });

    let interval = Duration::from_millis(300);
    let ticks = 6;
    let mut lines: Vec<String> = Vec::new();
    let mut reports = 0;
    let is_report_end =
        |l: &String| l.starts_with("acceptq_netns ") || l.starts_with("acceptq_netns,");
    let mut next = Instant::now();
    for tick in 1..=ticks {
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        next += interval;
        tick_tx.send(true).unwrap();
        match wrote_rx.recv_timeout(Duration::from_secs(1)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("writing the newline failed: {e}"),
            Err(_) => {
                let _ = child.kill();
                panic!("the newline write missed Telegraf's 1 s deadline");
            }
        }
        // Exactly one report answers each newline.
        let end = Instant::now() + Duration::from_secs(2);
        while reports < tick {
            let left = end.saturating_duration_since(Instant::now());
            match line_rx.recv_timeout(left) {
                Ok(l) => {
                    if is_report_end(&l) {
                        reports += 1;
                    }
                    lines.push(l);
                }
                Err(_) => {
                    let _ = child.kill();
                    panic!("no report 2 s after newline {tick}; got {reports}: {lines:#?}");
                }
            }
        }
    }
    // Nothing unasked-for arrives.
    std::thread::sleep(interval);
    lines.extend(line_rx.try_iter());
    let netns_lines = lines.iter().filter(|l| is_report_end(l)).count();
    assert_eq!(
        netns_lines, ticks,
        "one acceptq_netns per newline: {lines:#?}"
    );

    // Stop as Telegraf does: close stdin, then 5 s before SIGTERM.
    let closed_at = Instant::now();
    tick_tx.send(false).unwrap();
    let status = wait_exit(&mut child, Duration::from_secs(5));
    let status =
        status.expect("acceptq still running 5 s after stdin closed: Telegraf would SIGTERM it");
    assert!(status.success(), "exit status on EOF: {status}");
    eprintln!("agents: execd exit {:?} after EOF", closed_at.elapsed());
    writer.join().unwrap();
    reader.join().unwrap();
    lines.extend(line_rx.try_iter());
    let unprefixed = logger.join().unwrap();
    let netns_lines = lines.iter().filter(|l| is_report_end(l)).count();
    assert_eq!(netns_lines, ticks, "reports after stdin closed: {lines:#?}");
    assert!(
        unprefixed.is_empty(),
        "stderr lines without a level prefix: {unprefixed:#?}"
    );

    let text = lines.join("\n") + "\n";
    let problems = strict_influx(&text);
    assert!(problems.is_empty(), "{problems:#?}");
    eprintln!(
        "agents: telegraf execd suite ran ({ticks} newlines, {} lines)",
        lines.len()
    );
}

#[test]
fn telegraf_exec_fallback_once_parses_strictly() {
    let text = conf("telegraf-exec.conf");
    assert!(text.contains("[[inputs.exec]]"), "{text}");
    assert_eq!(
        toml_setting(&text, "data_format").as_deref(),
        Some("\"influx\""),
        "inputs.exec defaults to json"
    );
    // A command may be one string that Telegraf splits at spaces (the snippet quotes nothing).
    let words: Vec<String> = toml_strings(
        &toml_setting(&text, "commands").expect("commands in conf/telegraf-exec.conf"),
    )
    .iter()
    .flat_map(|c| c.split_whitespace().map(String::from))
    .collect();
    let argv = substitute(&words);
    assert!(argv.iter().any(|a| a == "--once"), "{argv:?}");

    let dir = TempDir::new("exec");
    // Files, not pipes: nothing can block while we wait with inputs.exec's 5 s timeout.
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(dir.file("stdout"))
        .stderr(dir.file("stderr"))
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = wait_exit(&mut child, Duration::from_secs(5))
        .expect("acceptq --once outran inputs.exec's 5 s timeout");
    let stdout = fs::read_to_string(dir.join("stdout")).unwrap();
    let stderr = fs::read_to_string(dir.join("stderr")).unwrap();
    assert!(status.success(), "{status}: {stderr}");
    for line in stderr.lines() {
        assert!(
            telegraf_level(line).is_some(),
            "stderr without level: {line}"
        );
    }
    let problems = strict_influx(&stdout);
    assert!(problems.is_empty(), "{problems:#?}\n{stdout}");
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.starts_with("acceptq_netns"))
            .count(),
        1,
        "{stdout}"
    );
    eprintln!(
        "agents: telegraf exec suite ran ({:?}, {} lines)",
        started.elapsed(),
        stdout.lines().count()
    );
}

// ---------------------------------------------------------------------------------------------
// Prometheus

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

/// A whole exposition: ends with a newline, every line a comment or a valid sample.
fn check_exposition(text: &str) -> Result<usize, String> {
    if !text.ends_with('\n') {
        return Err(format!(
            "does not end with a newline ({} bytes)",
            text.len()
        ));
    }
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let (name, _) = prom_sample(line)?;
        *samples.entry(name).or_insert(0) += 1;
    }
    if !samples.keys().any(|n| n.starts_with("acceptq_netns_")) {
        return Err(format!("no acceptq_netns family: {text}"));
    }
    Ok(samples.values().sum())
}

#[test]
fn promtool_check_metrics_passes() {
    let test = "agents::promtool_check_metrics_passes";
    if !(netns_gate(test)
        && skip_unless(have("promtool"), test, "needs promtool (Debian prometheus)"))
    {
        return;
    }
    let (ns, _driver, port) = overflowing("prom");
    let out = ns.acceptq(&["--format", "prometheus", "--once"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    check_exposition(&text).unwrap();
    assert!(
        text.contains(&format!(
            "acceptq_listener_queue_depth{{address=\"127.0.0.1\",port=\"{port}\""
        )),
        "{text}"
    );

    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = promtool.stdin.take().unwrap();
    let feeder = {
        let text = text.clone();
        std::thread::spawn(move || stdin.write_all(text.as_bytes()))
    };
    let mut so = promtool.stdout.take().unwrap();
    let mut se = promtool.stderr.take().unwrap();
    let out_thread = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = so.read_to_string(&mut s);
        s
    });
    let err_thread = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = se.read_to_string(&mut s);
        s
    });
    let status = wait_exit(&mut promtool, Duration::from_secs(20)).expect("promtool hung");
    feeder.join().unwrap().unwrap();
    let (pout, perr) = (out_thread.join().unwrap(), err_thread.join().unwrap());
    for line in pout.lines().chain(perr.lines()) {
        eprintln!("agents: promtool said: {line}");
    }
    assert!(
        status.success(),
        "promtool check metrics: {status}\n{pout}{perr}\n{text}"
    );
    eprintln!("agents: prometheus promtool suite ran");
}

#[test]
fn prometheus_output_file_is_never_partial() {
    // No root, no daemon: acceptq watches our own namespace.
    let dir = TempDir::new("prom");
    let target = dir.join("acceptq.prom");
    let mut child = Command::new(acceptq())
        .args([
            "--format",
            "prometheus",
            "--interval",
            "100ms",
            "--output",
            target.to_str().unwrap(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(dir.file("stderr"))
        .spawn()
        .unwrap();

    let reader = {
        let target = target.clone();
        std::thread::spawn(move || {
            let end = Instant::now() + Duration::from_secs(3);
            let (mut reads, mut files) = (0usize, std::collections::BTreeSet::new());
            let mut seen_file = false;
            while Instant::now() < end {
                // Read through one open file and stat that same file: inode and mtime tell one
                // replacement from the next (the content alone may not change, and a freed
                // inode number is soon reused).
                let read = fs::File::open(&target).and_then(|mut f| {
                    let mut text = String::new();
                    f.read_to_string(&mut text)?;
                    let m = f.metadata()?;
                    Ok((text, (m.ino(), m.mtime(), m.mtime_nsec())))
                });
                match read {
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound && !seen_file => {}
                    Err(e) => return Err(format!("read {} failed: {e}", target.display())),
                    Ok((text, id)) => {
                        seen_file = true;
                        reads += 1;
                        check_exposition(&text)
                            .map_err(|e| format!("read {reads}: partial or bad: {e}"))?;
                        files.insert(id);
                    }
                }
            }
            let distinct = files.len();
            Ok((reads, distinct))
        })
    };
    let result = reader.join().unwrap();
    let still_running = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    let _ = child.wait();
    let stderr = fs::read_to_string(dir.join("stderr")).unwrap_or_default();
    assert!(still_running, "acceptq --output exited: {stderr}");
    let (reads, distinct) = result.unwrap_or_else(|e| panic!("{e}\nstderr: {stderr}"));
    assert!(reads > 100, "only {reads} reads");
    assert!(
        distinct >= 10,
        "the file was replaced only {distinct} times in 3 s at --interval 100ms ({reads} reads)"
    );
    eprintln!("agents: prometheus textfile suite ran ({reads} reads, {distinct} distinct files)");
}

// ---------------------------------------------------------------------------------------------
// README

/// The bodies of the README's fenced blocks.
fn fenced_blocks(text: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            match current.take() {
                Some(body) => blocks.push(body),
                None => current = Some(String::new()),
            }
        } else if let Some(body) = &mut current {
            body.push_str(line);
            body.push('\n');
        }
    }
    blocks
}

#[test]
fn readme_quotes_every_conf_snippet_verbatim() {
    let readme = fs::read_to_string(repo().join("README.md")).expect("README.md");
    let has_quick_start = readme.lines().any(|l| {
        l.starts_with('#')
            && l.trim_start_matches('#')
                .trim()
                .eq_ignore_ascii_case("quick start")
    });
    assert!(has_quick_start, "README.md has no \"Quick start\" heading");
    let blocks = fenced_blocks(&readme);
    for name in ["telegraf.conf", "telegraf-exec.conf", "collectd.conf"] {
        let content = conf(name);
        assert!(
            blocks.contains(&content),
            "README.md must quote conf/{name} whole, as the body of a fenced block:\n{content}"
        );
    }
}
