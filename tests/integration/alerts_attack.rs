//! The dashboards, alert rules and collectd notifications against what real deployments
//! produce: SO_REUSEPORT groups reported per socket, listeners bound to a device, a single
//! namespace (no `netns` tag), collectd mode writing to a file.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::agents::collectd::exec_block;
use crate::alerts::{dashboard, panel_queries, substitute, variables, PromStack, DASHBOARDS};
use crate::support::influxd::{http, Influxd};
use crate::support::*;

tests![
    influx_dashboard_keeps_sockets_and_devices_apart_without_a_netns_tag,
    prometheus_dashboard_legends_name_the_socket_and_the_device,
    prometheus_dashboard_saturation_is_the_recording_rules,
    dashboard_tables_show_ratios_as_percent,
    collectd_format_to_a_file_says_warnings_on_stderr_not_in_the_file,
    collectd_logs_a_warning_with_quotes_backslashes_and_a_cut_multibyte_tail_whole,
    prometheus_says_the_textfile_is_stale_once_acceptq_stops_and_not_before,
];

/// Ten reports 10 s apart, as Telegraf stores acceptq's line protocol (its `host` tag added),
/// from one namespace (no `netns` tag): an SO_REUSEPORT group of two sockets with
/// `--per-socket` (socket 0 drops 1/s, socket 1 holds an old 5000), and `::` port 53 bound to
/// eth0 (dropping 10/s) and to eth1 (7, steady); and an SO_REUSEPORT group of four summed
/// into one row, full.
fn per_socket_and_per_device_reports() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let start = now - 300;
    let mut out = String::new();
    for i in 0..10u64 {
        let t = (start + i * 10) * 1_000_000_000;
        let rows = [
            (
                "address=0.0.0.0,port=80,process=nginx,socket=0",
                128,
                1000 + i * 10,
            ),
            ("address=0.0.0.0,port=80,process=nginx,socket=1", 2, 5000),
            ("address=::,port=53,interface=eth0,process=dns", 3, i * 100),
            ("address=::,port=53,interface=eth1,process=dns", 0, 7),
        ];
        for (tags, peak, drops) in rows {
            out.push_str(&format!(
                "acceptq_listener,{tags},host=h1 queue_depth=0i,queue_depth_max={peak}i,queue_limit=128i,\
                 queue_full_ratio=0.5,drops={drops}i,drops_delta=1i,syn_queue_depth=0i,queue_wait_max=0.01,sockets=1i {t}\n"
            ));
        }
        // Four sockets of backlog 511 summed into one row, full: 2044 + 4 queued.
        out.push_str(&format!(
            "acceptq_listener,address=::,port=443,process=nginx,host=h1 queue_depth=2048i,queue_depth_max=2048i,\
             queue_limit=2044i,queue_full_ratio=1,drops=0i,syn_queue_depth=0i,queue_wait_max=1.5,sockets=4i {t}\n"
        ));
        out.push_str(&format!(
            "acceptq_netns,host=h1 listen_overflows={}i,listen_drops={}i,reqq_full_drop=0i,\
             reqq_full_do_cookies=0i,syncookies_sent=0i,somaxconn=4096i,tcp_max_syn_backlog=512i,\
             tcp_syncookies=1i,tcp_abort_on_overflow=0i {t}\n",
            i * 110,
            i * 110
        ));
    }
    out
}

/// Rows of two sockets of one group, or of one address and port on two devices, are two
/// listeners: a dashboard that groups them by address and port alone shows the larger
/// counter's rate (socket 1's steady 5000 hides socket 0's drops) and mixes the devices.
fn influx_dashboard_keeps_sockets_and_devices_apart_without_a_netns_tag() {
    let test =
        "alerts_attack::influx_dashboard_keeps_sockets_and_devices_apart_without_a_netns_tag";
    if !skip_unless(have("influxd"), test, "needs influxd (Debian influxdb)") {
        return;
    }
    let influxd = Influxd::start("alerts-attack-influx");
    influxd.write(per_socket_and_per_device_reports().as_bytes());
    let d = dashboard(DASHBOARDS[1].0);

    // Grafana's default: every variable at All, whose allValue goes in raw. With one
    // namespace the netns variable has nothing to offer, and All must still match.
    let all: Vec<(&str, String)> = ["host", "netns", "port"]
        .into_iter()
        .map(|n| (n, ".*".to_string()))
        .collect();
    for (name, query) in variables(&d) {
        let got: BTreeSet<String> = influxd
            .column(&substitute(&query, &all), "value")
            .into_iter()
            .collect();
        let want: BTreeSet<String> = match name.as_str() {
            "host" => ["h1"].map(String::from).into(),
            "netns" => BTreeSet::new(),
            _ => ["443", "53", "80"].map(String::from).into(),
        };
        assert_eq!(got, want, "variable {name}: {query}");
    }
    let mut values = all;
    values.push(("timeFilter", "time > now() - 1h".into()));
    values.push(("__interval", "10s".into()));

    let listeners: BTreeSet<(String, String, String)> = [
        ("80", "", "0"),
        ("80", "", "1"),
        ("53", "eth0", ""),
        ("53", "eth1", ""),
        ("443", "", ""),
    ]
    .map(|(p, i, s)| (p.into(), i.into(), s.into()))
    .into();
    for (title, query) in panel_queries(&d) {
        let q = substitute(&query, &values);
        let series = influxd.query(&q);
        assert!(
            !series.is_empty(),
            "{title}: no rows without a netns tag: {q}"
        );
        if !q.contains("\"acceptq_listener\"") {
            continue;
        }
        let mut seen = BTreeMap::new();
        for s in &series {
            let tag = |k: &str| s["tags"][k].as_str().unwrap_or_default().to_string();
            let key = (tag("port"), tag("interface"), tag("socket"));
            let rows = s["values"].as_array().cloned().unwrap_or_default();
            assert!(
                seen.insert(key.clone(), rows).is_none(),
                "{title}: {key:?} twice"
            );
        }
        let keys: BTreeSet<_> = seen.keys().cloned().collect();
        assert_eq!(
            keys, listeners,
            "{title}: each socket and each device is its own series: {q}"
        );
        if title == "Saturation per listener" {
            // A full group is 100%, not more: it holds its limit plus one per socket.
            let group = ("443".to_string(), String::new(), String::new());
            let got: Vec<f64> = seen[&group]
                .iter()
                .map(|r| r[1].as_f64().unwrap())
                .collect();
            assert!(
                !got.is_empty() && got.iter().all(|v| (v - 1.0).abs() < 1e-9),
                "{title}: a full SO_REUSEPORT group of 4 at {got:?}"
            );
        }
        if title == "Drops per second per listener" {
            for (key, want) in [
                (("80", "", "0"), 1.0),
                (("80", "", "1"), 0.0),
                (("53", "eth0", ""), 10.0),
                (("53", "eth1", ""), 0.0),
            ] {
                let key = (key.0.to_string(), key.1.to_string(), key.2.to_string());
                let rates: Vec<f64> = seen[&key].iter().map(|r| r[1].as_f64().unwrap()).collect();
                assert!(
                    !rates.is_empty() && rates.iter().all(|r| (r - want).abs() < 1e-9),
                    "{title}: {key:?} drops {rates:?} per second, not {want}"
                );
            }
        }
    }
}

/// Prometheus keeps every label apart by itself, but a legend without `socket` and
/// `interface` draws two sockets of one group, or one port on two devices, as two lines of
/// the same name.
fn prometheus_dashboard_legends_name_the_socket_and_the_device() {
    let d = dashboard(DASHBOARDS[0].0);
    for p in d["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().unwrap_or_default();
            let Some(legend) = t["legendFormat"].as_str() else {
                continue;
            };
            if expr.contains("acceptq_listener") {
                for label in ["{{address}}", "{{port}}", "{{interface}}", "{{socket}}"] {
                    assert!(
                        legend.contains(label),
                        "{}: legend {legend:?} has no {label}",
                        p["title"]
                    );
                }
            }
        }
    }
}

/// The saturation panels compute inline what `acceptq_listener:saturation:ratio` records (the
/// dashboard works without the rules): the same expression, selectors aside, so a group
/// summed into one row reads 100% when full on both.
fn prometheus_dashboard_saturation_is_the_recording_rules() {
    let rules = conf("prometheus/acceptq.rules.yml");
    let rule = rules
        .split("- record: acceptq_listener:saturation:ratio")
        .nth(1)
        .and_then(|r| r.lines().find_map(|l| l.trim().strip_prefix("expr: ")))
        .expect("the saturation recording rule");
    assert!(rule.contains("acceptq_listener_sockets"), "{rule}");
    let d = dashboard(DASHBOARDS[0].0);
    let mut seen = 0;
    for (title, expr) in panel_queries(&d) {
        if !expr.starts_with("acceptq_listener_queue_depth_max{") || !expr.contains(" / ") {
            continue;
        }
        let mut bare = String::new();
        let mut depth = 0;
        for c in expr.chars() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                c if depth == 0 => bare.push(c),
                _ => {}
            }
        }
        assert_eq!(bare, rule, "{title}: {expr}");
        seen += 1;
    }
    assert_eq!(
        seen, 2,
        "the saturation panel and the worst-listeners table"
    );
}

/// A ratio column of the worst-listeners tables (0..1) reads as a percentage, as the
/// saturation and time-full panels do: a bare 0.993 next to a drops count reads as nothing.
fn dashboard_tables_show_ratios_as_percent() {
    for (name, _) in DASHBOARDS {
        let d = dashboard(name);
        for p in d["panels"].as_array().unwrap() {
            if p["type"] != "table" {
                continue;
            }
            // Column names: Prometheus' renamed values, InfluxQL's AS aliases.
            let mut columns: Vec<String> = Vec::new();
            for t in p["transformations"].as_array().into_iter().flatten() {
                if let Some(r) = t["options"]["renameByName"].as_object() {
                    columns.extend(r.values().filter_map(|v| v.as_str()).map(String::from));
                }
            }
            for t in p["targets"].as_array().into_iter().flatten() {
                let q = t["query"].as_str().unwrap_or_default();
                columns.extend(
                    q.split(" AS \"")
                        .skip(1)
                        .filter_map(|a| a.split_once('"').map(|(alias, _)| alias.to_string())),
                );
            }
            let ratios: Vec<&String> = columns
                .iter()
                .filter(|c| c.contains("saturation") || c.contains("time full"))
                .collect();
            assert!(!ratios.is_empty(), "{name}: {}: {columns:?}", p["title"]);
            for column in ratios {
                let percent = p["fieldConfig"]["overrides"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|o| {
                        o["matcher"]["id"] == "byName"
                            && o["matcher"]["options"] == column.as_str()
                            && o["properties"].as_array().is_some_and(|ps| {
                                ps.iter()
                                    .any(|x| x["id"] == "unit" && x["value"] == "percentunit")
                            })
                    });
                assert!(
                    percent,
                    "{name}: {}: column {column:?} is a ratio with no percent unit",
                    p["title"]
                );
            }
        }
    }
}

/// With `--output FILE` no collectd reads the reports as they come: a notification written
/// into the file is replaced by the next report and seen by nobody. Warnings go to stderr, as
/// in every other mode, and the file holds PUTVAL lines only.
fn collectd_format_to_a_file_says_warnings_on_stderr_not_in_the_file() {
    let dir = TempDir::new("alerts-attack-collectd-file");
    let file = dir.join("acceptq.collectd");
    let out = Command::new(acceptq())
        .args(["--format", "collectd", "--once", "--output"])
        .arg(&file)
        .env("COLLECTD_HOSTNAME", "bad host/name")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let written = fs::read_to_string(&file).unwrap();
    assert!(
        !written.is_empty() && written.lines().all(|l| l.starts_with("PUTVAL ")),
        "the file holds reports only:\n{written}"
    );
    assert!(
        stderr.contains("W! [acceptq] COLLECTD_HOSTNAME \"bad host/name\""),
        "the warning is said on stderr: {stderr:?}"
    );
    assert!(out.stdout.is_empty(), "{:?}", out.stdout);
    // On stdout, collectd reads them: the same warning is a notification there.
    let out = Command::new(acceptq())
        .args(["--format", "collectd", "--once"])
        .env("COLLECTD_HOSTNAME", "bad host/name")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.stderr.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout
            .lines()
            .filter(
                |l| l.starts_with("PUTNOTIF severity=warning ") && l.contains("COLLECTD_HOSTNAME")
            )
            .count(),
        1,
        "{stdout}"
    );
}

/// A real collectd whose `Hostname` is no folder name (quotes, a backslash, 120 two-byte
/// characters): acceptq says so in a notification whose message holds `"` and `\\` (escaped in
/// the PUTNOTIF line) and is longer than collectd keeps, so acceptq cuts it, with a character
/// straddling the cut. collectd must take the line (no error) and
/// log the message as acceptq meant it: valid UTF-8, within 255 bytes, ending in `...`.
fn collectd_logs_a_warning_with_quotes_backslashes_and_a_cut_multibyte_tail_whole() {
    let test = "alerts_attack::collectd_logs_a_warning_with_quotes_backslashes_and_a_cut_multibyte_tail_whole";
    if !(netns_gate(test) && collectd_gate(test)) {
        return;
    }
    let dir = TempDir::new("alerts-attack-collectd-notif");
    // In the message the two-byte characters start at an odd byte and run past the cut at 252:
    // acceptq must cut before the character that straddles it.
    let host = format!("web \"\u{fc}\"\\{}", "\u{e9}".repeat(120));
    let ns = Netns::new("cd-quotes");
    let mut collectd = start_collectd(&dir, Some(&ns), &host, &exec_block(&dir));
    let log = || fs::read(dir.join("collectd.log")).unwrap_or_default();
    let marker = "plugin = acceptq, message = COLLECTD_HOSTNAME ";
    let seen = wait_for(Duration::from_secs(20), || {
        if let Some(status) = collectd.exited() {
            panic!(
                "collectd exited ({status}):\n{}",
                String::from_utf8_lossy(&log())
            );
        }
        String::from_utf8_lossy(&log())
            .contains(marker)
            .then_some(())
    });
    assert!(collectd.stop(), "collectd did not stop on SIGTERM");
    let log = log();
    let text = String::from_utf8(log.clone())
        .unwrap_or_else(|e| panic!("collectd logged a split character: {e}: {log:?}"));
    assert!(seen.is_some(), "no notification in 20 s:\n{text}");
    let line = text.lines().find(|l| l.contains(marker)).unwrap();
    assert!(
        line.contains("Notification: severity = WARNING, "),
        "{line}"
    );
    let message = &line[line.find("message = ").unwrap() + "message = ".len()..];
    // What acceptq says: the variable as Rust's {:?} shows it.
    let want_start = format!("COLLECTD_HOSTNAME {host:?}: ");
    assert!(
        !want_start.is_char_boundary(252),
        "the cut falls inside a character"
    );
    assert!(message.len() <= 255, "{} bytes: {message}", message.len());
    assert!(message.ends_with("..."), "cut and marked: {message}");
    let kept = message.trim_end_matches("...");
    assert!(
        want_start.starts_with(kept) || kept.starts_with(&want_start),
        "collectd logged {message:?}, acceptq said {want_start:?}..."
    );
    assert_eq!(kept.len(), 251, "cut on the character before byte 252");
    assert_collectd_took_every_line(&dir, &text);
}

/// The stale-textfile alert against a real node_exporter (which names the file by its full
/// path; older ones by its name) and Prometheus: silent while acceptq rewrites its file every
/// second, firing once acceptq has stopped. Thresholds shortened from minutes to seconds.
fn prometheus_says_the_textfile_is_stale_once_acceptq_stops_and_not_before() {
    let test =
        "alerts_attack::prometheus_says_the_textfile_is_stale_once_acceptq_stops_and_not_before";
    if !PromStack::gate(test) {
        return;
    }
    let dir = TempDir::new("alerts-attack-stale");
    let rules = conf("prometheus/acceptq.rules.yml");
    let stale = rules
        .split("- alert: ")
        .find(|r| r.starts_with("AcceptqMetricsStale"))
        .expect("the stale alert");
    let expr = stale
        .lines()
        .find_map(|l| l.trim().strip_prefix("expr: "))
        .unwrap();
    let short = expr.replace("> 300", "> 4");
    assert_ne!(short, expr, "the threshold is 300 s: {expr}");
    let rules = format!(
        "groups:\n  - name: stale\n    rules:\n      - alert: AcceptqMetricsStale\n        expr: '{}'\n        for: 1s\n",
        short.replace('\'', "''")
    );
    let mut stack = PromStack::start(&dir, &[], &rules);
    let prom_port = stack.port;
    let said = |f: &str| fs::read_to_string(dir.join(f)).unwrap_or_default();
    let get = |target: &str| -> Option<Json> {
        let (status, body) = http(prom_port, "GET", target, b"").ok()?;
        (status == 200).then(|| serde_json::from_str(&body).ok())?
    };
    // The rule's series is there (the file matched by name), and young.
    let ages = wait_for(Duration::from_secs(30), || {
        if let Some(status) = stack.prometheus.exited() {
            panic!("prometheus exited ({status}):\n{}", said("prometheus.log"));
        }
        let v = get(&format!(
            "/api/v1/query?query={}",
            crate::support::influxd::urlencode(
                r#"time() - node_textfile_mtime_seconds{file=~"(.*/)?acceptq[^/]*[.]prom"}"#
            )
        ))?;
        let r = v["data"]["result"].as_array()?.clone();
        (!r.is_empty()).then_some(r)
    })
    .unwrap_or_else(|| {
        panic!(
            "node_textfile_mtime_seconds of acceptq.prom never scraped:\n{}\n{}",
            said("prometheus.log"),
            said("node_exporter.stderr")
        )
    });
    note!("alerts_attack: textfile ages while acceptq runs: {ages:?}");
    let firing = |v: &Json| {
        v["data"]["alerts"].as_array().is_some_and(|a| {
            a.iter()
                .any(|a| a["labels"]["alertname"] == "AcceptqMetricsStale")
        })
    };
    // Fresh for a while: never pending, never firing.
    for _ in 0..6 {
        std::thread::sleep(Duration::from_secs(1));
        let v = get("/api/v1/alerts").expect("alerts");
        assert!(!firing(&v), "stale while acceptq rewrites its file: {v}");
    }
    assert!(stack.acceptq.stop(), "acceptq did not stop on SIGTERM");
    let fired = wait_for(Duration::from_secs(30), || {
        let v = get("/api/v1/alerts")?;
        v["data"]["alerts"].as_array()?.iter().find_map(|a| {
            (a["labels"]["alertname"] == "AcceptqMetricsStale" && a["state"] == "firing")
                .then(|| a.clone())
        })
    });
    let alert = fired.unwrap_or_else(|| panic!("not stale 30 s after acceptq stopped"));
    let file = alert["labels"]["file"].as_str().unwrap_or_default();
    assert!(
        file.ends_with("/acceptq.prom") || file == "acceptq.prom",
        "{alert}"
    );
}
