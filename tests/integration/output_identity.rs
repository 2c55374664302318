//! Output identity: every distinct listener or namespace stays its own series in every agent,
//! and names reach the agent byte for byte where the format can carry them.
//!
//! - InfluxDB 1.x: a real `influxd` takes process and namespace names with `\` at the end, in
//!   the middle, before a comma and before a space, and `--tag` values; each is queried back.
//! - Namespaces: a real `ip netns add default`, a name ending in `\` and one that is not UTF-8,
//!   watched with `--all-netns`, in every format.
//! - collectd: a real collectd (unixsock and csv plugins) stores two listeners whose plugin
//!   instances a cut at 127 bytes would have made one.
//! - `--tag` in all four formats, and its validation.

use std::ffi::OsStr;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use crate::support::influxd::Influxd;
use crate::support::*;

tests![
    influxdb_keeps_every_process_name_apart_and_byte_for_byte_where_it_can,
    all_netns_names_a_named_default_and_odd_names_apart_in_every_format,
    a_namespace_given_by_path_keeps_its_path_and_never_meets_a_name,
    collectd_stores_listeners_apart_whose_instances_a_cut_would_merge,
    user_tags_go_on_every_row_in_every_format
];

// ---------------------------------------------------------------------------------------------
// Helpers

fn succeeded(out: Output, what: &str) -> Vec<u8> {
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The listeners of `named_listeners.py`: processes named `names`, one listener each.
struct NamedListeners {
    child: Child,
    ports: Vec<u16>,
}

impl NamedListeners {
    fn start(ns: &Netns, names: &[&[u8]]) -> NamedListeners {
        let script = repo().join("tests/support/named_listeners.py");
        let hex: Vec<String> = names
            .iter()
            .map(|n| n.iter().map(|b| format!("{b:02x}")).collect())
            .collect();
        let mut args = vec![script.to_str().unwrap()];
        args.extend(hex.iter().map(String::as_str));
        let mut child = ns
            .cmd("python3", &args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let ports: Vec<u16> = line
            .strip_prefix("ok ")
            .unwrap_or_else(|| panic!("named_listeners.py said {line:?}"))
            .split_whitespace()
            .map(|p| p.parse().unwrap())
            .collect();
        assert_eq!(ports.len(), names.len());
        NamedListeners { child, ports }
    }
}

impl Drop for NamedListeners {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        if wait_or_kill(&mut self.child, Duration::from_secs(10)).is_none() {
            note!("output_identity: named_listeners.py did not end on EOF");
        }
    }
}

/// Runs `promtool check metrics` on `text`; returns its complaints if it fails.
fn promtool_check(text: &[u8]) -> Result<(), String> {
    let dir = TempDir::new("identity-prom");
    let path = dir.0.join("acceptq.prom");
    fs::write(&path, text).unwrap();
    let out = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(fs::File::open(&path).unwrap())
        .output()
        .unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// InfluxDB: process names and --tag values, byte for byte

fn influxdb_keeps_every_process_name_apart_and_byte_for_byte_where_it_can() {
    let test =
        "output_identity::influxdb_keeps_every_process_name_apart_and_byte_for_byte_where_it_can";
    if !(netns_gate(test) && skip_unless(have("influxd"), test, "needs influxd (Debian influxdb)"))
    {
        return;
    }
    // (comm, what InfluxDB must store). Line protocol cannot end a tag value with `\`, nor carry
    // a newline, nor `\` before `=` (InfluxDB) or `"` (Telegraf): those take the escaped form,
    // which starts with `\`; a name that itself starts with `\` takes it too, so that the
    // literal name `\trail\x5c` cannot meet the escaped `trail\`.
    let cases: [(&[u8], &str); 11] = [
        (b"trail\\", "\\trail\\x5c"),
        (b"trail", "trail"),
        // The process name is already `\\trail\\x5cx5c` (a `\\` before `x5c` is escaped
        // so that it cannot read as an escaped byte), then takes the escaped form.
        (b"\\trail\\x5c", "\\\\x5ctrail\\x5cx5cx5c"),
        (b"mid\\dle", "mid\\dle"),
        (b"q\"uo\\te", "q\"uo\\te"),
        (b"a\\,b", "a\\,b"),
        (b"a\\ b", "a\\ b"),
        (b"a,b c=d", "a,b c=d"),
        (b"a\\=b", "\\a\\x5c\\x3db"),
        (b"nl\nx", "\\nl\\x0ax"),
        (b"\\\\", "\\\\x5c\\x5c"),
    ];
    let ns = Netns::new("influx-names");
    let names: Vec<&[u8]> = cases.iter().map(|(n, _)| *n).collect();
    let held = NamedListeners::start(&ns, &names);
    let influxd = Influxd::start("identity-influx");

    let lines = succeeded(ns.acceptq(&["--once"]), "acceptq --once");
    influxd.write(&lines);
    let mut stored = Vec::new();
    for ((name, want), port) in cases.iter().zip(&held.ports) {
        let got = influxd.column(
            &format!("SELECT queue_limit, process FROM acceptq_listener WHERE port = '{port}'"),
            "process",
        );
        assert_eq!(
            got,
            vec![want.to_string()],
            "process {:?} on port {port}",
            String::from_utf8_lossy(name)
        );
        stored.push(got[0].clone());
    }
    let mut distinct = stored.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        stored.len(),
        "two names share a series: {stored:?}"
    );

    // --tag values reach InfluxDB exactly too: a space, a comma, a quote, a backslash.
    let lines = succeeded(
        ns.acceptq(&["--once", "--tag", "host=web 1", "--tag", "dc=a,b\"c\\d e"]),
        "acceptq --once --tag",
    );
    influxd.write(&lines);
    let port = held.ports[0];
    for (key, want) in [("host", "web 1"), ("dc", "a,b\"c\\d e")] {
        let got = influxd.column(
            &format!("SELECT queue_limit, \"{key}\" FROM acceptq_listener WHERE port = '{port}' AND \"{key}\" != ''"),
            key,
        );
        assert_eq!(got, vec![want.to_string()], "--tag {key}");
    }
    note!(
        "output_identity: influxd stored {} process names apart",
        stored.len()
    );
}

// ---------------------------------------------------------------------------------------------
// Namespaces: a named `default`, a name ending in `\`, a name that is not UTF-8

/// A namespace made with `ip netns add` under a name of raw bytes; removed on drop unless it
/// was there before.
struct RawNetns {
    name: Vec<u8>,
    made: bool,
}

impl RawNetns {
    fn add(name: &[u8]) -> RawNetns {
        let path = Path::new("/run/netns").join(OsStr::from_bytes(name));
        let made = !path.exists();
        if made {
            run_ok(
                Command::new("ip")
                    .arg("netns")
                    .arg("add")
                    .arg(OsStr::from_bytes(name)),
            );
        }
        let ns = RawNetns {
            name: name.to_vec(),
            made,
        };
        run_ok(&mut ns.cmd("ip", &["link", "set", "lo", "up"]));
        ns
    }

    fn cmd(&self, program: &str, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec"])
            .arg(OsStr::from_bytes(&self.name))
            .arg(program)
            .args(args);
        c
    }

    fn driver(&self) -> Driver {
        Driver::start(self.cmd(
            "python3",
            &[repo().join("tests/support/driver.py").to_str().unwrap()],
        ))
    }
}

impl Drop for RawNetns {
    fn drop(&mut self) {
        if self.made {
            let _ = Command::new("ip")
                .args(["netns", "del"])
                .arg(OsStr::from_bytes(&self.name))
                .status();
        }
    }
}

fn all_netns_names_a_named_default_and_odd_names_apart_in_every_format() {
    let test =
        "output_identity::all_netns_names_a_named_default_and_odd_names_apart_in_every_format";
    if !(netns_gate(test)
        && skip_unless(have("influxd"), test, "needs influxd (Debian influxdb)")
        && skip_unless(have("promtool"), test, "needs promtool (Debian prometheus)"))
    {
        return;
    }
    let pid = std::process::id();
    let bs = format!("aq-bs-{pid}\\");
    let mut bad = format!("aq-bad-{pid}").into_bytes();
    bad.push(0xff);
    let spaces = [
        RawNetns::add(b"default"),
        RawNetns::add(bs.as_bytes()),
        RawNetns::add(&bad),
    ];
    // (tag acceptq must give, tag InfluxDB must store), in the order of `spaces`.
    let want = [
        (
            "/run/netns/default".to_string(),
            "/run/netns/default".to_string(),
        ),
        (bs.clone(), format!("\\aq-bs-{pid}\\x5c")),
        (
            format!("/run/netns/aq-bad-{pid}\\xff"),
            format!("/run/netns/aq-bad-{pid}\\xff"),
        ),
    ];
    let mut drivers = Vec::new();
    let mut ports = Vec::new();
    for ns in &spaces {
        let mut d = ns.driver();
        ports.push(d.listen("127.0.0.1", 0, 4, false).1);
        drivers.push(d);
    }
    let run = |format: &str| {
        let out = Command::new(acceptq())
            .args([
                "--once",
                "--all-netns",
                "--no-process",
                "--max-listeners",
                "100000",
            ])
            .args(["--format", format])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "--format {format}: {stderr}");
        // None of ours is skipped for its name.
        for name in ["default", "aq-bs-", "aq-bad-"] {
            assert!(!stderr.contains(name), "--format {format}: {stderr}");
        }
        out.stdout
    };

    // Other tests' namespaces are seen too, and may use the same port numbers: a row is ours
    // when both its port and its namespace match.
    // JSON: each namespace under its own name; no two rows with the same name and tags.
    let report = json_lines(&run("json"));
    for ((tag, _), port) in want.iter().zip(&ports) {
        assert!(
            report.iter().any(|m| m["name"] == "acceptq_listener"
                && port_of(m) == Some(*port)
                && m["tags"]["netns"] == tag.as_str()),
            "no row for {tag} on {port}"
        );
        assert!(
            report
                .iter()
                .any(|m| m["name"] == "acceptq_netns" && m["tags"]["netns"] == tag.as_str()),
            "no acceptq_netns row for {tag}"
        );
    }
    assert!(report
        .iter()
        .any(|m| m["name"] == "acceptq_netns" && m["tags"]["netns"] == "default"));
    let mut keys: Vec<String> = report
        .iter()
        .map(|m| format!("{} {}", m["name"], m["tags"]))
        .collect();
    let rows = keys.len();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), rows, "two rows share name and tags");

    // Influx: through a real influxd, each namespace its own series, names as documented.
    let influxd = Influxd::start("identity-influx");
    influxd.write(&run("influx"));
    for ((_, stored), port) in want.iter().zip(&ports) {
        let got = influxd.column(
            &format!("SELECT queue_limit, netns FROM acceptq_listener WHERE port = '{port}'"),
            "netns",
        );
        assert!(
            got.contains(stored),
            "port {port}: {stored:?} not in {got:?}"
        );
    }
    let own = influxd.column(
        "SELECT listeners, netns FROM acceptq_netns WHERE netns = 'default'",
        "netns",
    );
    assert_eq!(own.len(), 1, "our own namespace is one series: {own:?}");

    // Prometheus: valid for promtool, each namespace its own label value.
    let text = run("prometheus");
    promtool_check(&text).unwrap_or_else(|e| panic!("promtool: {e}"));
    let text = String::from_utf8(text).unwrap();
    for ((tag, _), port) in want.iter().zip(&ports) {
        let label = tag.replace('\\', "\\\\");
        assert!(
            text.contains(&format!("port=\"{port}\",netns=\"{label}\"}}")),
            "no series for {tag} on {port}"
        );
    }

    // collectd: each namespace its own plugin instance; names that had to be altered carry
    // the hash of the whole name.
    let text = String::from_utf8(run("collectd")).unwrap();
    let prefixes = [
        "_run_netns_default_".to_string(),
        format!("aq-bs-{pid}__"),
        format!("_run_netns_aq-bad-{pid}_xff_"),
    ];
    for (prefix, port) in prefixes.iter().zip(&ports) {
        let found = text.lines().any(|l| {
            let instance = l.split('/').nth(1).unwrap_or("");
            instance.starts_with(&format!("acceptq-{prefix}"))
                && instance.ends_with(&format!("-127.0.0.1-{port}"))
        });
        assert!(found, "no PUTVAL for {prefix}... on {port}");
    }
}

fn a_namespace_given_by_path_keeps_its_path_and_never_meets_a_name() {
    let test = "output_identity::a_namespace_given_by_path_keeps_its_path_and_never_meets_a_name";
    if !netns_gate(test) {
        return;
    }
    let a = Netns::new("path-a");
    let mut da = a.driver();
    let pa = da.listen("127.0.0.1", 0, 4, false).1;
    let path = format!("/proc/{}/ns/net", da.pid());
    // A named namespace spelt as the old naming wrote that path.
    let spelt = path.trim_matches('/').replace('/', "_");
    let b = RawNetns::add(spelt.as_bytes());
    let mut db = b.driver();
    let pb = db.listen("127.0.0.1", 0, 4, false).1;
    let report = json_report(Command::new(acceptq()).args([
        "--once",
        "--format",
        "json",
        "--no-process",
        "--netns",
        &path,
        "--netns",
        &spelt,
    ]));
    assert_eq!(listener(&report, pa)["tags"]["netns"], path.as_str());
    assert_eq!(listener(&report, pb)["tags"]["netns"], spelt.as_str());
}

// ---------------------------------------------------------------------------------------------
// collectd: instances a cut would merge

fn collectd_stores_listeners_apart_whose_instances_a_cut_would_merge() {
    let test = "output_identity::collectd_stores_listeners_apart_whose_instances_a_cut_would_merge";
    if !(netns_gate(test)
        && collectd_gate(test)
        && skip_unless(
            Path::new("/usr/lib/collectd/unixsock.so").is_file(),
            test,
            "needs collectd's unixsock plugin",
        ))
    {
        return;
    }
    let long = format!("aq-long-{}-{}", std::process::id(), "x".repeat(130));
    let ns = RawNetns::add(long.as_bytes());
    let other = Netns::new("cd-other");
    let mut d = ns.driver();
    let p1 = d.listen("127.0.0.1", 0, 4, false).1;
    let p2 = d.listen("127.0.0.1", 0, 4, false).1;
    // What the old encoding wrote: the whole instance cut to 127 bytes, ports lost.
    let cut = |p: u16| format!("{long}-127.0.0.1-{p}")[..127].to_string();
    assert_eq!(cut(p1), cut(p2));

    let dir = TempDir::new("identity-collectd");
    let d = dir.0.display();
    let sock = dir.0.join("collectd.sock");
    let plugins = format!(
        "LoadPlugin unixsock\n<Plugin unixsock>\n  SocketFile \"{}\"\n</Plugin>\n\
         LoadPlugin csv\n<Plugin csv>\n  DataDir \"{d}/csv\"\n  StoreRates false\n</Plugin>\n",
        sock.display()
    );
    let _collectd = start_collectd(&dir, None, "aqtest", &plugins);
    let mut conn = wait_for(Duration::from_secs(20), || UnixStream::connect(&sock).ok())
        .expect("collectd's unixsock never appeared");
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let text = String::from_utf8(succeeded(
        Command::new(acceptq())
            .args([
                "--once",
                "--format",
                "collectd",
                "--hostname",
                "aqtest",
                "--no-process",
            ])
            .args(["--netns", &long, "--netns", &other.name])
            .output()
            .unwrap(),
        "acceptq --format collectd",
    ))
    .unwrap();
    let mut replies = BufReader::new(conn.try_clone().unwrap());
    for line in text.lines() {
        conn.write_all(format!("{line}\n").as_bytes()).unwrap();
        let mut reply = String::new();
        replies.read_line(&mut reply).unwrap();
        assert!(reply.starts_with("0 "), "collectd refused {line}: {reply}");
    }
    // Each listener gets its own folder (one csv file per type-instance and day).
    let host = dir.0.join("csv/aqtest");
    let folders = wait_for(Duration::from_secs(20), || {
        let names: Vec<String> = fs::read_dir(&host)
            .ok()?
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| {
                n.contains(&format!("-127.0.0.1-{p1}")) || n.contains(&format!("-127.0.0.1-{p2}"))
            })
            .collect();
        let limits = names
            .iter()
            .filter(|n| {
                fs::read_dir(host.join(n)).is_ok_and(|mut files| {
                    files.any(|f| {
                        f.is_ok_and(|f| {
                            f.file_name()
                                .to_string_lossy()
                                .starts_with("queue_length-limit-")
                        })
                    })
                })
            })
            .count();
        (limits == 2).then_some(names)
    })
    .unwrap_or_else(|| {
        panic!(
            "collectd did not store both listeners: {:?}",
            fs::read_dir(&host).map(|r| r
                .filter_map(Result::ok)
                .map(|e| e.file_name())
                .collect::<Vec<_>>())
        )
    });
    for name in &folders {
        assert!(name.len() <= "acceptq-".len() + 127, "{name}");
        assert!(name.starts_with("acceptq-aq-long-"), "{name}");
    }
    assert_ne!(folders[0], folders[1]);
}

// ---------------------------------------------------------------------------------------------
// --tag

fn user_tags_go_on_every_row_in_every_format() {
    let test = "output_identity::user_tags_go_on_every_row_in_every_format";
    if !(netns_gate(test)
        && skip_unless(have("promtool"), test, "needs promtool (Debian prometheus)"))
    {
        return;
    }
    let ns = Netns::new("tags");
    let mut d = ns.driver();
    let port = d.listen("127.0.0.1", 0, 4, false).1;
    let value = "a b,c\"d\\e=f";
    let tags = ["--tag", "host=web-1", "--tag", &format!("dc={value}")];
    let with = |format: &str, extra: &[&str]| {
        let mut args = vec!["--once", "--no-process", "--format", format];
        args.extend_from_slice(extra);
        succeeded(ns.acceptq(&args), format)
    };

    let report = json_lines(&with("json", &tags));
    assert!(report.len() >= 2);
    for row in &report {
        assert_eq!(row["tags"]["host"], "web-1", "{row}");
        assert_eq!(row["tags"]["dc"], value, "{row}");
    }

    let text = String::from_utf8(with("influx", &tags)).unwrap();
    assert!(text.lines().count() >= 2);
    for line in text.lines() {
        assert!(
            line.contains(",host=web-1,dc=a\\ b\\,c\"d\\e\\=f "),
            "{line}"
        );
    }

    let text = with("prometheus", &tags);
    promtool_check(&text).unwrap_or_else(|e| panic!("promtool: {e}"));
    let text = String::from_utf8(text).unwrap();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        assert!(
            line.contains("host=\"web-1\",dc=\"a b,c\\\"d\\\\e=f\"}"),
            "{line}"
        );
    }
    assert!(text.contains(&format!("port=\"{port}\"")));

    let text = String::from_utf8(with("collectd", &["--tag", "host=web-1"])).unwrap();
    assert!(text.lines().count() >= 2);
    assert!(
        text.lines()
            .all(|l| l.starts_with("PUTVAL \"web-1/acceptq-")),
        "{text}"
    );

    // Refused, with status 2 and the flag named.
    for bad in [
        &["--tag", "dc=x", "--format", "collectd"][..],
        &["--tag", "host=a", "--hostname", "b", "--format", "collectd"],
        &["--tag", "dc=x", "--tag", "dc=y"],
        &["--tag", "port=80"],
        &["--tag", "netns=x"],
        &["--tag", "dc="],
        &["--tag", "=x"],
        &["--tag", "1dc=x"],
        &["--tag", "dc=trail\\"],
        &["--tag", "dc=a\nb"],
        &["--tag", "time=x"],
        &["--tag", "host=web 1", "--format", "collectd"],
    ] {
        let mut args = vec!["--once", "--no-process"];
        args.extend_from_slice(bad);
        let out = ns.acceptq(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {err}");
        assert!(err.contains("tag"), "{bad:?}: {err}");
        assert!(out.stdout.is_empty(), "{bad:?}");
    }
}
