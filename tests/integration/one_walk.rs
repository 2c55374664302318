//! One walk of the established hash for the SYN queue and the queued connections' waits: the
//! same report as the separate, per-family dumps (forced by `ACCEPTQ_DEBUG_SEPARATE_DUMPS`,
//! what a kernel refusing the one walk's program gets), counted as `ss` counts, in one request.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::*;
use crate::syn_queue::ss_syn_recv;

tests![
    one_walk_counts_the_syn_queue_as_ss_and_times_the_queues_as_the_separate_dumps,
    with_no_queue_holding_connections_the_syn_queue_alone_is_one_walk,
];

const SEPARATE: (&str, &str) = ("ACCEPTQ_DEBUG_SEPARATE_DUMPS", "1");
/// Jiffy rounding of two readings of one wait, on top of the time between them.
const SLACK: f64 = 0.05;

/// The sock_diag requests one `acceptq --once` sends, by message type (strace decodes them),
/// and its JSON report. `env`: more of its environment.
pub(crate) struct Run {
    pub(crate) report: Vec<Json>,
    pub(crate) by_family: usize,
    pub(crate) both_families: Vec<String>,
    pub(crate) took: (Instant, Instant),
}

impl Run {
    /// Whether it made the one walk with its program: the request with a program is longer
    /// than the bare 76 bytes.
    pub(crate) fn one_walk(&self) -> bool {
        self.both_families
            .iter()
            .any(|l| !l.contains("nlmsg_len=76,"))
    }
}

pub(crate) fn run(ns: &Netns, tmp: &TempDir, env: &[(&str, &str)]) -> Run {
    let trace = tmp.join("strace");
    let mut cmd = ns.cmd(
        "strace",
        &[
            "-f",
            "-qq",
            "-e",
            "trace=sendto",
            "-o",
            trace.to_str().unwrap(),
            acceptq(),
            "--once",
            "--format",
            "json",
            "--no-process",
        ],
    );
    cmd.envs(env.iter().copied());
    let start = Instant::now();
    let report = json_report(&mut cmd);
    let took = (start, Instant::now());
    let text = std::fs::read_to_string(Path::new(&trace)).unwrap();
    let requests = |kind: &str| {
        text.lines()
            .filter(|l| l.contains(&format!("nlmsg_type={kind},")))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    Run {
        report,
        by_family: requests("SOCK_DIAG_BY_FAMILY").len(),
        both_families: requests("TCPDIAG_GETSOCK"),
        took,
    }
}

fn wait(report: &[Json], port: u16) -> Option<f64> {
    listener(report, port)["fields"]["queue_wait_max"].as_f64()
}

fn gates(test: &str) -> bool {
    netns_gate(test)
        && skip_unless(have("nft"), test, "needs nft (nftables)")
        && skip_unless(have("ss"), test, "needs ss (iproute2)")
        && skip_unless(
            have("strace"),
            test,
            "needs strace to count acceptq's requests",
        )
}

/// A listener with queued connections in each family, listeners whose clients' final ACKs are
/// dropped (request sockets: IPv4, IPv6, and IPv4 clients of a dual-stack one), and accepted
/// connections on another port.
fn one_walk_counts_the_syn_queue_as_ss_and_times_the_queues_as_the_separate_dumps() {
    let test =
        "one_walk::one_walk_counts_the_syn_queue_as_ss_and_times_the_queues_as_the_separate_dumps";
    if !gates(test) {
        return;
    }
    let ns = Netns::new("onewalk");
    let tmp = TempDir::new("onewalk");
    ns.sysctl("net.ipv4.tcp_syncookies", "0");
    let mut d = ns.driver();
    let (q4, q4_port) = d.listen("127.0.0.1", 0, 16, false);
    let (q6, q6_port) = d.listen("::1", 0, 16, false);
    let (h4, h4_port) = d.listen("127.0.0.1", 0, 16, false);
    let (h6, h6_port) = d.listen("::1", 0, 16, false);
    let (_, dual_port) = d.listen("::", 0, 16, false);
    let (busy, busy_port) = d.listen("127.0.0.1", 0, 64, false);
    ns.drop_final_acks(&[h4_port, h6_port, dual_port]);
    d.connect(busy, 40);
    d.connect(q4, 3);
    d.connect(q6, 2);
    d.connect(h4, 5);
    d.connect(h6, 4);
    let mut mapped = Helper::start(
        &ns,
        "syn_clients.py",
        &["127.0.0.1", &dual_port.to_string(), "3"],
    );
    mapped.expect("ok");
    let half_open = [(h4_port, 5), (h6_port, 4), (dual_port, 3)];
    let settled = wait_for(Duration::from_secs(5), || {
        (half_open.iter().all(|&(p, n)| ss_syn_recv(&ns, p) == n) && queued(&ns, busy_port) == 40)
            .then_some(())
    });
    assert!(
        settled.is_some(),
        "the kernel never held the clients as asked"
    );
    assert_eq!(d.accept(busy), 40, "accepted: established, with a file");
    std::thread::sleep(Duration::from_millis(600));

    let one = run(&ns, &tmp, &[]);
    let separate = run(&ns, &tmp, &[SEPARATE]);

    // The one walk: the LISTEN dump per family, then one request for both jobs, with the
    // program; nothing else (every queued connection was found: no Fast Open dump).
    assert_eq!(one.by_family, 2, "LISTEN, IPv4 and IPv6");
    assert_eq!(one.both_families.len(), 1, "{:?}", one.both_families);
    assert!(
        !one.both_families[0].contains("nlmsg_len=76,"),
        "the request with the program: {}",
        one.both_families[0]
    );
    // The separate dumps: LISTEN, SYN queue and waits, each per family.
    assert_eq!(separate.by_family, 6);
    assert!(separate.both_families.is_empty());

    for r in [&one, &separate] {
        for &(p, n) in &half_open {
            let row = listener(&r.report, p);
            assert_eq!(field(row, "syn_queue_depth"), Some(n as u64), "{row}");
            assert_eq!(ss_syn_recv(&ns, p), n, "ss still counts {n} on {p}");
            assert_eq!(wait(&r.report, p), None, "nothing queued: {row}");
        }
        for (p, depth) in [(q4_port, 3), (q6_port, 2)] {
            let row = listener(&r.report, p);
            assert_eq!(field(row, "queue_depth"), Some(depth), "{row}");
            assert_eq!(field(row, "syn_queue_depth"), Some(0), "{row}");
            let w = wait(&r.report, p).unwrap_or_else(|| panic!("no wait: {row}"));
            assert!(w >= 0.5, "connected over 0.6 s before: {row}");
        }
        let row = listener(&r.report, busy_port);
        assert_eq!(field(row, "queue_depth"), Some(0), "{row}");
        assert_eq!(
            wait(&r.report, busy_port),
            None,
            "accepted ones never wait: {row}"
        );
    }
    // The same connections, read a moment apart: the later reading older by at most that.
    let apart = (separate.took.1 - one.took.0).as_secs_f64();
    for p in [q4_port, q6_port] {
        let (a, b) = (
            wait(&one.report, p).unwrap(),
            wait(&separate.report, p).unwrap(),
        );
        assert!(
            b >= a - SLACK && b <= a + apart + SLACK,
            "port {p}: one walk {a} s, separate dumps {b} s, {apart:.3} s apart"
        );
    }
}

fn with_no_queue_holding_connections_the_syn_queue_alone_is_one_walk() {
    let test = "one_walk::with_no_queue_holding_connections_the_syn_queue_alone_is_one_walk";
    if !gates(test) {
        return;
    }
    let ns = Netns::new("onewalksyn");
    let tmp = TempDir::new("onewalksyn");
    ns.sysctl("net.ipv4.tcp_syncookies", "0");
    let mut d = ns.driver();
    let (h4, h4_port) = d.listen("127.0.0.1", 0, 16, false);
    let (h6, h6_port) = d.listen("::1", 0, 16, false);
    ns.drop_final_acks(&[h4_port, h6_port]);
    d.connect(h4, 2);
    d.connect(h6, 3);
    let half_open = [(h4_port, 2), (h6_port, 3)];
    let settled = wait_for(Duration::from_secs(5), || {
        half_open
            .iter()
            .all(|&(p, n)| ss_syn_recv(&ns, p) == n)
            .then_some(())
    });
    assert!(settled.is_some(), "the kernel never held the requests");
    let one = run(&ns, &tmp, &[]);
    assert_eq!(one.by_family, 2, "LISTEN, IPv4 and IPv6");
    assert_eq!(one.both_families.len(), 1, "{:?}", one.both_families);
    assert!(
        one.both_families[0].contains("nlmsg_len=76,"),
        "no program, no children asked: {}",
        one.both_families[0]
    );
    let separate = run(&ns, &tmp, &[SEPARATE]);
    assert_eq!((separate.by_family, separate.both_families.len()), (4, 0));
    for r in [&one, &separate] {
        for &(p, n) in &half_open {
            let row = listener(&r.report, p);
            assert_eq!(field(row, "syn_queue_depth"), Some(n as u64), "{row}");
        }
    }
}
