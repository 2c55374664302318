//! Golden output: the README's example scenario, read at a fixed time from the 6.18 netstat
//! fixture, through the report and every encoder, compared byte for byte with
//! tests/golden/example.*. `ACCEPTQ_UPDATE_GOLDEN=1 cargo test golden` rewrites the files; the
//! README's "Example output" blocks must be lines of those files, in order.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use acceptq::encode::{
    collectd::Collectd, influx::Influx, json::JsonLines, prometheus::Prometheus, Encoder,
};
use acceptq::filter::Filter;
use acceptq::metric::Metric;
use acceptq::report::{self, Context, NsReading, ReportOptions};
use acceptq::snapshot::{NetnsSnapshot, Socket};
use acceptq::source::netstat::{self, COUNTERS};
use acceptq::source::owners::{Owner, OwnerCache, Scan};
use acceptq::source::sysctl::Sysctls;
use acceptq::state::{Peaks, Previous};

use crate::support::{repo, tests};

tests![
    every_format_matches_its_golden_file,
    readme_example_output_is_the_golden_output
];

const TIMESTAMP: i64 = 1_795_590_619_535_865_398;
const PID: i32 = 9995;

fn socket(addr: &str, port: u16, inode: u32, depth: u32, limit: u32, drops: u32) -> Socket {
    Socket {
        addr: addr.parse::<IpAddr>().unwrap(),
        port,
        ifindex: 0,
        inode,
        depth,
        limit: Some(limit),
        drops: Some(drops),
    }
}

/// A listener on 127.0.0.1:8080 with `listen(2)` that never accepts, ten clients connecting,
/// and an idle `[::]:443`, both held by one python3; a second report 14 drops later, its
/// queue full in every sample of the interval.
fn example_report() -> Vec<Metric> {
    let fixture =
        std::fs::read_to_string(repo().join("tests/fixtures/linux-6.18/proc/net/netstat")).unwrap();
    let before = netstat::parse(&fixture).unwrap();
    // The report after: the listen counters 14 higher, the rest as they were.
    let mut now = before;
    for c in COUNTERS.iter().filter(|c| c.kernel.starts_with("Listen")) {
        now = now.with(c.kernel, before.get(c.kernel).unwrap() + 14);
    }
    let sysctls = Sysctls::default()
        .with("somaxconn", 4096)
        .with("tcp_max_syn_backlog", 2048)
        .with("tcp_syncookies", 1)
        .with("tcp_abort_on_overflow", 0);
    let snap = |drops: u32, tcpext| NetnsSnapshot {
        sockets: vec![
            socket("127.0.0.1", 8080, 1001, 3, 2, drops),
            socket("::", 443, 1002, 0, 511, 0),
        ],
        syn_queue: Some(HashMap::new()),
        // The first client has waited 2.036 s (the report is taken 2 s into the window).
        queue_wait: Some(HashMap::from([(
            acceptq::snapshot::Endpoint {
                addr: "127.0.0.1".parse().unwrap(),
                port: 8080,
                ifindex: 0,
            },
            2036,
        )])),
        interfaces: HashMap::new(),
        tcpext: Some(tcpext),
        sysctls,
    };
    let mut owners = OwnerCache::default();
    owners.refresh(&[1001, 1002], |_| Scan {
        found: [1001, 1002]
            .into_iter()
            .map(|inode| {
                let owner = Owner {
                    pid: PID,
                    comm: "python3".into(),
                    unit: None,
                    fd: 3,
                };
                (inode, owner)
            })
            .collect(),
        denied: 0,
    });
    let opts = ReportOptions {
        per_socket: false,
        max_listeners: 1000,
        netns_tag: false,
        unit_tag: false,
    };
    let filter = Filter::default();
    let mut prev = Previous::default();
    let mut metrics = Vec::new();
    for (drops, tcpext) in [(14, before), (28, now)] {
        let snap = snap(drops, tcpext);
        let mut peaks = Peaks::default();
        for _ in 0..20 {
            peaks.begin_sample();
            peaks.count_round(0);
            for s in &snap.sockets {
                peaks.observe(0, s.endpoint(), s.inode, s.depth, s.limit);
            }
        }
        let readings = [NsReading {
            id: 0,
            name: "default",
            container: None,
            pod: None,
            snap: &snap,
        }];
        let ctx = Context {
            peaks: &peaks,
            owners: &owners,
            filter: &filter,
            opts: &opts,
            timestamp: TIMESTAMP,
            last: false,
        };
        metrics = report::build(&readings, &ctx, &mut prev).metrics.to_vec();
    }
    metrics
}

fn encoders() -> Vec<(&'static str, Box<dyn Encoder>)> {
    vec![
        ("influx", Box::new(Influx::new(Vec::new()))),
        ("json", Box::new(JsonLines::new(Vec::new()))),
        (
            "collectd",
            Box::new(Collectd::new("web1", Duration::from_secs(10))),
        ),
        ("prom", Box::new(Prometheus::new(Vec::new()))),
    ]
}

fn every_format_matches_its_golden_file() {
    let metrics = example_report();
    let update = std::env::var_os("ACCEPTQ_UPDATE_GOLDEN").is_some();
    let mut stale = Vec::new();
    for (ext, mut encoder) in encoders() {
        let mut out = Vec::new();
        encoder.encode_all(&metrics, &mut out);
        let out = String::from_utf8(out).unwrap();
        let path = repo().join(format!("tests/golden/example.{ext}"));
        if update {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &out).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (ACCEPTQ_UPDATE_GOLDEN=1 writes it)",
                path.display()
            )
        });
        if want != out {
            stale.push(format!(
                "{}: differs from the output\n--- golden\n{want}\n--- now\n{out}",
                path.display()
            ));
        }
    }
    assert!(
        stale.is_empty(),
        "{}\nIf the change is meant, rerun with ACCEPTQ_UPDATE_GOLDEN=1 and review the diff.",
        stale.join("\n")
    );
}

/// The README's fenced blocks under "## Example output", each with the golden file it shows.
fn readme_examples(readme: &str) -> Vec<(&'static str, Vec<&str>)> {
    let start = readme
        .find("## Example output")
        .expect("an Example output section");
    let section = &readme[start..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)];
    let mut out = Vec::new();
    let mut lines = section.lines();
    while let Some(line) = lines.next() {
        let Some(lang) = line.strip_prefix("```") else {
            continue;
        };
        let body: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
        let ext = match (lang, body.first()) {
            ("json", _) => "json",
            (_, Some(first)) if first.starts_with("PUTVAL") => "collectd",
            (_, Some(first)) if first.starts_with('#') => "prom",
            _ => "influx",
        };
        out.push((ext, body));
    }
    out
}

fn readme_example_output_is_the_golden_output() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let blocks = readme_examples(&readme);
    let mut shown: Vec<&str> = blocks.iter().map(|(ext, _)| *ext).collect();
    shown.sort();
    assert_eq!(
        shown,
        ["collectd", "influx", "json", "prom"],
        "one block per format"
    );
    for (ext, body) in blocks {
        let golden =
            std::fs::read_to_string(repo().join(format!("tests/golden/example.{ext}"))).unwrap();
        // Every shown line is a golden line, in the golden order; `...` marks lines left out.
        let mut golden_lines = golden.lines();
        for line in body.iter().filter(|l| **l != "...") {
            assert!(
                golden_lines.any(|g| g == *line),
                "README example ({ext}) line not in tests/golden/example.{ext} in this order:\n{line}"
            );
        }
        let missing_marker = !body.contains(&"...");
        assert!(
            !missing_marker || body.len() == golden.lines().count(),
            "README example ({ext}) leaves lines out without a `...` line"
        );
    }
}
