//! Seeing it and being told: the Prometheus rules (`promtool check` and `promtool test rules`,
//! then a real node_exporter + Prometheus firing the drop alert on an overflowing listener),
//! the Grafana dashboards (their shape, and every query answered by a real Prometheus and a
//! real InfluxDB for that listener), and collectd's thresholds and acceptq's notifications.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::agents::collectd::exec_block;
use crate::agents::overflowing;
use crate::support::influxd::{free_port, http, urlencode, Influxd};
use crate::support::*;

tests![
    promtool_checks_the_rules_and_passes_their_unit_tests,
    dashboards_are_importable_grafana_json,
    prometheus_fires_the_drop_alert_and_answers_every_dashboard_query,
    influxdb_answers_every_dashboard_query_for_the_overflowing_listener,
    collectd_notifies_the_overflow_and_acceptqs_own_warning_as_a_warning,
];

const RULES: &str = "prometheus/acceptq.rules.yml";
const RULE_TESTS: &str = "prometheus/acceptq.rules.test.yml";

fn promtool(args: &[&str], dir: &Path) -> (bool, String) {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("promtool {args:?}: {e}"));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

fn promtool_checks_the_rules_and_passes_their_unit_tests() {
    let test = "alerts::promtool_checks_the_rules_and_passes_their_unit_tests";
    if !skip_unless(have("promtool"), test, "needs promtool (Debian prometheus)") {
        return;
    }
    let dir = repo().join("conf");
    let (ok, said) = promtool(&["check", "rules", RULES], &dir);
    assert!(ok, "promtool check rules {RULES}:\n{said}");
    note!("alerts: {}", said.trim());
    // Every alert of the rule file has unit tests, and the tests run the file itself.
    let rules = conf(RULES);
    let tests = conf(RULE_TESTS);
    assert!(tests.contains("  - acceptq.rules.yml\n"), "{RULE_TESTS}");
    for line in rules.lines() {
        let Some(name) = line.trim().strip_prefix("- alert: ") else {
            continue;
        };
        assert!(
            tests.contains(&format!("alertname: {name}\n")),
            "{RULE_TESTS} has no test for alert {name}"
        );
    }
    let (ok, said) = promtool(&["test", "rules", RULE_TESTS], &dir);
    assert!(ok, "promtool test rules {RULE_TESTS}:\n{said}");
    note!("alerts: {}", said.trim());
}

pub(crate) const DASHBOARDS: [(&str, &str); 2] = [
    ("grafana/acceptq-prometheus.json", "prometheus"),
    ("grafana/acceptq-influxdb.json", "influxdb"),
];

pub(crate) fn dashboard(name: &str) -> Json {
    serde_json::from_str(&conf(name)).unwrap_or_else(|e| panic!("conf/{name}: {e}"))
}

/// The query variables of a dashboard: name and query, in order.
pub(crate) fn variables(d: &Json) -> Vec<(String, String)> {
    d["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["type"] == "query")
        .map(|v| {
            let q = match &v["query"] {
                Json::String(q) => q.clone(),
                q => q["query"].as_str().unwrap_or_default().to_string(),
            };
            (v["name"].as_str().unwrap().to_string(), q)
        })
        .collect()
}

/// Every panel's queries: panel title and query text (PromQL `expr`, InfluxQL `query`).
pub(crate) fn panel_queries(d: &Json) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            let q = t["expr"]
                .as_str()
                .or(t["query"].as_str())
                .unwrap_or_default();
            out.push((
                p["title"].as_str().unwrap_or_default().to_string(),
                q.into(),
            ));
        }
    }
    out
}

/// `q` with Grafana's variables replaced by `values`, the longest names first (`$__interval`
/// is not `$__int...` of another).
pub(crate) fn substitute(q: &str, values: &[(&str, String)]) -> String {
    let mut sorted: Vec<&(&str, String)> = values.iter().collect();
    sorted.sort_by_key(|(name, _)| std::cmp::Reverse(name.len()));
    let mut q = q.to_string();
    for (name, value) in sorted {
        q = q.replace(&format!("${name}"), value);
    }
    // `$` before `/` or `)` is a regex's end anchor, not a variable.
    let left = q.match_indices('$').any(|(i, _)| {
        q[i + 1..].starts_with(|c: char| c.is_alphanumeric() || c == '_' || c == '{')
    });
    assert!(!left, "a variable left unsubstituted: {q}");
    q
}

fn dashboards_are_importable_grafana_json() {
    for (name, kind) in DASHBOARDS {
        let d = dashboard(name);
        let at = |what: &str| format!("conf/{name}: {what}");
        assert!(
            d["schemaVersion"].as_u64().is_some_and(|v| v >= 30),
            "{}",
            at("schemaVersion")
        );
        assert!(
            d["uid"]
                .as_str()
                .is_some_and(|u| !u.is_empty() && u.len() <= 40),
            "{}",
            at("uid")
        );
        assert!(
            d["title"].as_str().is_some_and(|t| !t.is_empty()),
            "{}",
            at("title")
        );
        assert!(
            d.get("id").map_or(true, Json::is_null),
            "{}",
            at("an id ties it to one Grafana")
        );

        // The data source is chosen on import: a variable, used by every panel and query.
        let vars = d["templating"]["list"].as_array().unwrap();
        let ds = vars
            .iter()
            .find(|v| v["type"] == "datasource")
            .unwrap_or_else(|| panic!("{}", at("no datasource variable")));
        assert_eq!(ds["query"], kind, "{}", at("datasource variable's plugin"));
        let ds_ref = format!("${{{}}}", ds["name"].as_str().unwrap());
        let host = if kind == "prometheus" {
            "instance"
        } else {
            "host"
        };
        let names: Vec<String> = variables(&d).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, [host, "netns", "port"], "{}", at("query variables"));
        for v in vars.iter().filter(|v| v["type"] == "query") {
            assert_eq!(
                v["datasource"]["uid"],
                ds_ref.as_str(),
                "{}",
                at("variable datasource")
            );
            assert!(
                v["refresh"].as_u64().is_some_and(|r| r >= 1),
                "{}",
                at("variable refresh")
            );
        }

        let panels = d["panels"].as_array().unwrap();
        let mut cells = BTreeSet::new();
        let mut ids = BTreeSet::new();
        for p in panels {
            let title = p["title"].as_str().unwrap_or_default();
            let g = &p["gridPos"];
            let [x, y, w, h] = ["x", "y", "w", "h"].map(|k| {
                g[k].as_u64()
                    .unwrap_or_else(|| panic!("{}", at(&format!("{title}: gridPos.{k}"))))
            });
            assert!(
                w > 0 && h > 0 && x + w <= 24,
                "{}",
                at(&format!("{title}: gridPos {g}"))
            );
            for cx in x..x + w {
                for cy in y..y + h {
                    assert!(
                        cells.insert((cx, cy)),
                        "{}",
                        at(&format!("{title} overlaps a panel"))
                    );
                }
            }
            assert!(
                ids.insert(p["id"].as_u64().unwrap()),
                "{}",
                at("panel ids repeat")
            );
            if p["type"] == "row" {
                continue;
            }
            assert_eq!(p["datasource"]["uid"], ds_ref.as_str(), "{}", at(title));
            let targets = p["targets"].as_array().filter(|t| !t.is_empty());
            let targets =
                targets.unwrap_or_else(|| panic!("{}", at(&format!("{title}: no targets"))));
            for t in targets {
                assert!(t["refId"].is_string(), "{}", at(title));
                assert_eq!(t["datasource"]["uid"], ds_ref.as_str(), "{}", at(title));
            }
        }
        let titles: Vec<&str> = panels.iter().filter_map(|p| p["title"].as_str()).collect();
        for want in [
            "Saturation per listener",
            "Depth and peak against the limit",
            "Time full",
            "Drops per second per listener",
            "Oldest wait in the queue",
            "SYN queue per listener",
            "Worst listeners over the time range",
            "Namespace: overflows, drops, SYN-queue drops and syncookies per second",
            "net.core.somaxconn",
            "net.ipv4.tcp_max_syn_backlog",
            "net.ipv4.tcp_syncookies",
            "net.ipv4.tcp_abort_on_overflow",
        ] {
            assert!(
                titles.contains(&want),
                "{}",
                at(&format!("no panel {want:?}"))
            );
        }
        note!(
            "alerts: {name}: {} panels, {} queries",
            panels.len(),
            panel_queries(&d).len()
        );
    }
}

/// GET `target` from a loopback HTTP server; the body as JSON, which must say success.
fn get_json(port: u16, target: &str) -> Json {
    let (status, body) =
        http(port, "GET", target, b"").unwrap_or_else(|e| panic!("GET {target}: {e}"));
    assert_eq!(status, 200, "GET {target}: {body}");
    let v: Json = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{target}: {e}: {body}"));
    assert_eq!(v["status"], "success", "GET {target}: {body}");
    v
}

/// `label_values(SELECTOR, LABEL)` as Grafana's Prometheus variable runs it.
fn label_values(port: u16, query: &str) -> Vec<String> {
    let inner = query
        .strip_prefix("label_values(")
        .and_then(|q| q.strip_suffix(')'))
        .unwrap_or_else(|| panic!("not label_values(...): {query}"));
    let (selector, label) = inner.rsplit_once(',').unwrap();
    let label = label.trim();
    let v = get_json(
        port,
        &format!("/api/v1/series?match[]={}", urlencode(selector.trim())),
    );
    let set: BTreeSet<String> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s[label].as_str().map(String::from))
        .collect();
    set.into_iter().collect()
}

fn prometheus_fires_the_drop_alert_and_answers_every_dashboard_query() {
    let test = "alerts::prometheus_fires_the_drop_alert_and_answers_every_dashboard_query";
    if !(netns_gate(test) && PromStack::gate(test)) {
        return;
    }
    let dir = TempDir::new("alerts-prom");
    let (ns, _driver, lport) = overflowing("prom-alert");
    // A second, quiet namespace: with two watched, rows carry the netns label the dashboard's
    // netns variable is filled from.
    let quiet = Netns::new("prom-quiet");
    // The rules as shipped, but for the `for:` durations: those are minutes, for production;
    // here a few seconds, so the test waits for the alert a bounded, short time.
    let rules = conf(RULES);
    let mut shortened = String::new();
    for line in rules.lines() {
        match line.split_once("for: ") {
            Some((indent, _)) if indent.trim().is_empty() => {
                shortened.push_str(&format!("{indent}for: 3s\n"))
            }
            _ => shortened.push_str(&format!("{line}\n")),
        }
    }
    assert!(shortened.contains("for: 3s") && !shortened.contains("        for: 10m"));
    let mut stack = PromStack::start(
        &dir,
        &["--netns", &ns.name, "--netns", &quiet.name],
        &shortened,
    );
    let (exporter_addr, prom_port) = (stack.exporter_addr.clone(), stack.port);
    let said = |f: &str| fs::read_to_string(dir.join(f)).unwrap_or_default();

    let lport = lport.to_string();
    let ours =
        |labels: &Json| labels["port"] == lport.as_str() && labels["netns"] == ns.name.as_str();
    let firing = wait_for(Duration::from_secs(60), || {
        if let Some(status) = stack.prometheus.exited() {
            panic!("prometheus exited ({status}):\n{}", said("prometheus.log"));
        }
        let (status, body) = http(prom_port, "GET", "/api/v1/alerts", b"").ok()?;
        let v: Json = (status == 200).then(|| serde_json::from_str(&body).ok())??;
        let alerts = v["data"]["alerts"].as_array()?.clone();
        alerts
            .iter()
            .any(|a| {
                a["labels"]["alertname"] == "AcceptqListenerDropping"
                    && a["state"] == "firing"
                    && ours(&a["labels"])
            })
            .then_some(alerts)
    });
    let Some(alerts) = firing else {
        panic!(
            "AcceptqListenerDropping not firing in 60 s for port {lport}; alerts: {}\n\
             prometheus:\n{}\nnode_exporter:\n{}\nacceptq:\n{}",
            http(prom_port, "GET", "/api/v1/alerts", b"")
                .map(|r| r.1)
                .unwrap_or_default(),
            said("prometheus.log"),
            said("node_exporter.stderr"),
            said("acceptq.stderr"),
        );
    };
    for a in &alerts {
        note!(
            "alerts: {} {} {}",
            a["labels"]["alertname"],
            a["state"],
            a["labels"]
        );
        assert!(
            a["annotations"]["summary"]
                .as_str()
                .is_some_and(|s| !s.contains("<no value>")),
            "{a}"
        );
    }
    assert!(
        alerts
            .iter()
            .all(|a| a["labels"]["alertname"] != "AcceptqSynQueueOverflow"),
        "an accept-queue overflow is no SYN flood: {alerts:?}"
    );
    let instance = exporter_addr.clone();

    // The variables, filled by their own queries, must offer our instance, namespace and port.
    let d = dashboard(DASHBOARDS[0].0);
    let wants = [
        ("instance", instance.as_str()),
        ("netns", ns.name.as_str()),
        ("port", lport.as_str()),
    ];
    // In a PromQL string the regex's backslashes are escaped again.
    let mut values = fill_variables(
        &d,
        &wants,
        |q| label_values(prom_port, q),
        |want| regex_escape(want).replace('\\', "\\\\"),
    );
    values.push(("__rate_interval", "1m".into()));
    values.push(("__range", "1m".into()));

    let queries = panel_queries(&d);
    for (title, query) in &queries {
        let q = substitute(query, &values);
        let v = get_json(prom_port, &format!("/api/v1/query?query={}", urlencode(&q)));
        let result = v["data"]["result"].as_array().unwrap();
        let found = if q.contains("acceptq_listener") {
            result.iter().any(|r| ours(&r["metric"]))
        } else {
            result
                .iter()
                .any(|r| r["metric"]["netns"] == ns.name.as_str())
        };
        assert!(
            found,
            "{title}: {q} answered no series for {lport} in {}: {v}",
            ns.name
        );
    }
    note!(
        "alerts: prometheus: drop alert firing; {} dashboard queries answered for port {lport}",
        queries.len()
    );
}

/// acceptq writing `--format prometheus` every second (with `args`) into a textfile directory,
/// node_exporter's textfile collector serving it, and a Prometheus scraping that every second
/// and evaluating `rules`; all in `dir`, their logs beside it (`acceptq.stderr`,
/// `node_exporter.stderr`, `prometheus.log`).
pub(crate) struct PromStack {
    // Stopped in this order: the reader before what it reads.
    pub prometheus: Daemon,
    pub port: u16,
    pub exporter_addr: String,
    _exporter: Daemon,
    pub acceptq: Daemon,
}

impl PromStack {
    /// Gate: prometheus and node_exporter. Returns true or ends the test as ignored.
    #[track_caller]
    pub fn gate(test: &str) -> bool {
        skip_unless(
            have("prometheus"),
            test,
            "needs prometheus (Debian prometheus)",
        ) && skip_unless(
            have("prometheus-node-exporter"),
            test,
            "needs prometheus-node-exporter (Debian)",
        )
    }

    pub fn start(dir: &TempDir, args: &[&str], rules: &str) -> PromStack {
        let textfiles = dir.join("textfile");
        fs::create_dir(&textfiles).unwrap();
        let acceptq = Daemon::spawn(
            "acceptq",
            Command::new(acceptq())
                .args(["--format", "prometheus", "--interval", "1s", "--output"])
                .arg(textfiles.join("acceptq.prom"))
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(dir.file("acceptq.stderr")),
        );
        let exporter_addr = format!("127.0.0.1:{}", free_port());
        let exporter = Daemon::spawn(
            "node_exporter",
            Command::new("prometheus-node-exporter")
                .args(["--collector.disable-defaults", "--collector.textfile"])
                .arg(format!(
                    "--collector.textfile.directory={}",
                    textfiles.display()
                ))
                .arg(format!("--web.listen-address={exporter_addr}"))
                .stdin(Stdio::null())
                .stdout(dir.file("node_exporter.log"))
                .stderr(dir.file("node_exporter.stderr")),
        );
        fs::write(dir.join("rules.yml"), rules).unwrap();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {}\n\
             scrape_configs:\n  - job_name: node\n    static_configs:\n      - targets: ['{exporter_addr}']\n",
            dir.join("rules.yml").display()
        );
        fs::write(dir.join("prometheus.yml"), config).unwrap();
        let port = free_port();
        let prometheus = Daemon::spawn(
            "prometheus",
            Command::new("prometheus")
                .arg(format!(
                    "--config.file={}",
                    dir.join("prometheus.yml").display()
                ))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.join("data").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .stdin(Stdio::null())
                .stdout(dir.file("prometheus.stdout"))
                .stderr(dir.file("prometheus.log")),
        );
        PromStack {
            prometheus,
            port,
            exporter_addr,
            _exporter: exporter,
            acceptq,
        }
    }
}

/// The dashboard's variables filled in order as Grafana fills them, each from its own query
/// (answered by `offered`) with the values before it: each must offer what `wants` names for
/// it, and then stands in the later queries as `escape` writes it.
fn fill_variables(
    d: &Json,
    wants: &[(&'static str, &str)],
    offered: impl Fn(&str) -> Vec<String>,
    escape: impl Fn(&str) -> String,
) -> Vec<(&'static str, String)> {
    let mut values = Vec::new();
    for (name, query) in variables(d) {
        let q = substitute(&query, &values);
        let got = offered(&q);
        let &(name, want) = wants
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("unexpected variable {name}"));
        assert!(
            got.iter().any(|g| g == want),
            "variable {name} ({q}) offers {got:?}, not {want}"
        );
        values.push((name, escape(want)));
    }
    values
}

/// A value as Grafana writes it into a regex matcher.
pub(crate) fn regex_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            let special = "\\^$.|?*+()[]{}".contains(c);
            special.then_some('\\').into_iter().chain([c])
        })
        .collect()
}

fn influxdb_answers_every_dashboard_query_for_the_overflowing_listener() {
    let test = "alerts::influxdb_answers_every_dashboard_query_for_the_overflowing_listener";
    if !(netns_gate(test) && skip_unless(have("influxd"), test, "needs influxd (Debian influxdb)"))
    {
        return;
    }
    let influxd = Influxd::start("alerts-influx");
    let dir = TempDir::new("alerts-influx-out");
    let (ns, _driver, lport) = overflowing("influx-dash");
    let quiet = Netns::new("influx-quiet");
    // Telegraf adds the host tag to what it reads from acceptq; --tag host= does the same here.
    let mut acceptq = Daemon::spawn(
        "acceptq",
        Command::new(acceptq())
            .args(["--interval", "1s", "--tag", "host=aqtest"])
            .args(["--netns", &ns.name, "--netns", &quiet.name])
            .stdin(Stdio::null())
            .stdout(dir.file("acceptq.out"))
            .stderr(dir.file("acceptq.stderr")),
    );
    // Rates need reports in distinct seconds.
    let reports = wait_for(Duration::from_secs(15), || {
        let text = fs::read_to_string(dir.join("acceptq.out")).ok()?;
        let whole = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
        let tag = format!("netns={}", ns.name);
        let netns_rows = whole
            .lines()
            .filter(|l| l.starts_with("acceptq_netns,") && l.contains(&tag))
            .count();
        (netns_rows >= 4).then(|| whole.to_string())
    });
    assert!(acceptq.stop());
    let text = reports.unwrap_or_else(|| {
        panic!(
            "no 4 reports in 15 s: {}",
            fs::read_to_string(dir.join("acceptq.stderr")).unwrap_or_default()
        )
    });
    influxd.write(text.as_bytes());

    let d = dashboard(DASHBOARDS[1].0);
    let lport = lport.to_string();
    let wants = [
        ("host", "aqtest"),
        ("netns", ns.name.as_str()),
        ("port", lport.as_str()),
    ];
    let mut values = fill_variables(&d, &wants, |q| influxd.column(q, "value"), regex_escape);
    values.push(("timeFilter", "time > now() - 1h".into()));
    values.push(("__interval", "1s".into()));

    let queries = panel_queries(&d);
    for (title, query) in &queries {
        let q = substitute(query, &values);
        let series = influxd.query(&q);
        let found = series.iter().any(|s| {
            let tags = &s["tags"];
            let rows = s["values"].as_array().is_some_and(|v| !v.is_empty());
            rows && tags["netns"] == ns.name.as_str()
                && (!q.contains("\"acceptq_listener\"") || tags["port"] == lport.as_str())
        });
        assert!(
            found,
            "{title}: {q} returned no rows for {lport} in {}: {series:?}",
            ns.name
        );
    }
    note!(
        "alerts: influxdb: {} dashboard queries answered for port {lport}",
        queries.len()
    );
}

fn collectd_notifies_the_overflow_and_acceptqs_own_warning_as_a_warning() {
    let test = "alerts::collectd_notifies_the_overflow_and_acceptqs_own_warning_as_a_warning";
    if !(netns_gate(test) && collectd_gate(test)) {
        return;
    }
    let dir = TempDir::new("alerts-collectd");
    let plugins = format!("{}\n{}", conf("collectd-threshold.conf"), exec_block(&dir));

    // The listener's owner is root: acceptq, as nobody, cannot name it and warns once.
    let (ns, mut driver, id, port) = queued_listener("cd-notify", 2, 10, true);
    let mut collectd = start_collectd(&dir, Some(&ns), "aqtest", &plugins);
    let log = || collectd_log(&dir);
    let drops = format!(
        "Notification: severity = WARNING, host = aqtest, plugin = acceptq, \
         plugin_instance = 127.0.0.1-{port}, type = derive, type_instance = drops, message = "
    );
    let warning = "Notification: severity = WARNING, host = aqtest, plugin = acceptq, \
                   message = cannot read /proc/<pid>/fd of ";
    // Retransmitted SYNs come ever further apart: new clients keep the drops rising in every
    // report, as Hits 3 asks.
    let mut polls = 0u32;
    let seen = wait_for(Duration::from_secs(30), || {
        if let Some(status) = collectd.exited() {
            panic!("collectd exited ({status}):\n{}", log());
        }
        polls += 1;
        if polls % 10 == 0 {
            driver.connect(id, 1);
        }
        let log = log();
        (log.contains(&drops) && log.contains(warning)).then_some(log)
    });
    assert!(collectd.stop(), "collectd did not stop on SIGTERM");
    assert!(
        seen.is_some(),
        "no drop notification and acceptq warning in 30 s; log:\n{}",
        log()
    );
    let log = log();
    for line in log.lines().filter(|l| l.contains("Notification:")) {
        note!("alerts: collectd logged: {line}");
    }
    // The warning is a notification, never an error line of the exec plugin.
    assert_collectd_took_every_line(&dir, &log);
    assert_eq!(
        log.matches(warning).count(),
        1,
        "the warning is said once:\n{log}"
    );
}
