//! The core promise, against a real kernel: per-listener depth, limit and drops, and the
//! namespace counters, equal to what the kernel holds at the same moment.

use std::time::Duration;

use crate::support::*;

tests![
    ipv4_overflow_and_ipv6_queue_match_the_kernel,
    second_report_carries_the_kernels_drop_increase,
    watching_another_namespace_from_outside,
    missing_netns_is_a_clear_error,
    all_netns_follows_namespaces_coming_and_going
];

fn ipv4_overflow_and_ipv6_queue_match_the_kernel() {
    if !netns_gate("listeners::ipv4_overflow_and_ipv6_queue_match_the_kernel") {
        return;
    }
    let ns = Netns::new("core");
    let mut d = ns.driver();
    let (v4, port4) = d.listen("127.0.0.1", 0, 2, false);
    d.connect(v4, 10);
    let (v6, port6) = d.listen("::1", 0, 5, false);
    d.connect(v6, 2);
    settle(&ns, port4, true);
    settle(&ns, port6, false);

    let (drops_before, overflows_before) = (ns.ss_drops(port4), ns.tcpext("ListenOverflows"));
    let out = ns.acceptq(&["--once", "--format", "json"]);
    let (drops_after, overflows_after) = (ns.ss_drops(port4), ns.tcpext("ListenOverflows"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = json_lines(&out.stdout);

    let l4 = listener(&report, port4);
    assert_eq!(l4["tags"]["address"], "127.0.0.1");
    assert_eq!(
        int(&l4["fields"]["queue_depth"]),
        3,
        "listen(2) holds 3: {l4}"
    );
    assert_eq!(int(&l4["fields"]["queue_limit"]), 2);
    let drops = int(&l4["fields"]["drops"]);
    assert!(drops > 0, "{l4}");
    assert!(
        (drops_before..=drops_after).contains(&drops),
        "kernel said {drops_before}..{drops_after}, acceptq {drops}"
    );
    assert!(
        l4["fields"].get("drops_delta").is_none(),
        "no delta on a first report"
    );

    let l6 = listener(&report, port6);
    assert_eq!(l6["tags"]["address"], "::1");
    assert_eq!(int(&l6["fields"]["queue_depth"]), 2);
    assert_eq!(int(&l6["fields"]["queue_limit"]), 5);
    assert_eq!(int(&l6["fields"]["drops"]), 0);

    let n = netns_row(&report);
    let overflows = int(&n["fields"]["listen_overflows"]);
    assert!(
        (overflows_before..=overflows_after).contains(&overflows) && overflows > 0,
        "kernel said {overflows_before}..{overflows_after}, acceptq {overflows}"
    );
    assert!(int(&n["fields"]["listen_drops"]) >= overflows);
    assert_eq!(int(&n["fields"]["listeners"]), 2);
    for sysctl in [
        "somaxconn",
        "tcp_max_syn_backlog",
        "tcp_syncookies",
        "tcp_abort_on_overflow",
    ] {
        assert!(n["fields"].get(sysctl).is_some(), "{sysctl} missing: {n}");
    }
}

fn second_report_carries_the_kernels_drop_increase() {
    if !netns_gate("listeners::second_report_carries_the_kernels_drop_increase") {
        return;
    }
    let (ns, mut d, id, port) = queued_listener("delta", 2, 10, true);
    let mut live = Live::start(&ns, &["--sample", "0"]);

    let b1 = ns.ss_drops(port);
    let r1 = live.report();
    let a1 = ns.ss_drops(port);
    let first = int(&listener(&r1, port)["fields"]["drops"]);

    d.connect(id, 3);
    std::thread::sleep(Duration::from_millis(300));
    let b2 = ns.ss_drops(port);
    let r2 = live.report();
    let a2 = ns.ss_drops(port);
    let row = listener(&r2, port);
    let second = int(&row["fields"]["drops"]);
    let delta = int(&row["fields"]["drops_delta"]);

    assert_eq!(delta, second - first, "{row}");
    assert!(
        delta >= 3,
        "3 more clients into a full queue drop at least 3 SYNs: {row}"
    );
    assert!(
        (b2.saturating_sub(a1)..=a2 - b1).contains(&delta),
        "kernel's increase between reports was {}..{}, acceptq said {delta}",
        b2.saturating_sub(a1),
        a2 - b1
    );
    let n = netns_row(&r2);
    assert!(n["fields"].get("listen_overflows_delta").is_some(), "{n}");
    let status = live.close_and_wait(Duration::from_secs(1));
    assert_eq!(
        status.map(|s| s.code()),
        Some(Some(0)),
        "exit 0 within 1 s of stdin EOF"
    );
}

fn watching_another_namespace_from_outside() {
    if !netns_gate("listeners::watching_another_namespace_from_outside") {
        return;
    }
    let (ns, _d, _, port) = queued_listener("outside", 2, 4, false);
    // From our own namespace: one --netns means one namespace, so no netns tag.
    let report = json_report(
        std::process::Command::new(acceptq())
            .args(["--once", "--format", "json", "--netns", &ns.name]),
    );
    let row = listener(&report, port);
    assert_eq!(int(&row["fields"]["queue_depth"]), 3);
    assert!(row["tags"].get("netns").is_none());
    // With --all-netns, rows carry the namespace they were read in.
    // Every parallel test's namespace is seen too: no cut, no /proc walk.
    let report = json_report(std::process::Command::new(acceptq()).args([
        "--once",
        "--format",
        "json",
        "--all-netns",
        "--max-listeners",
        "100000",
        "--no-process",
    ]));
    let row = report
        .iter()
        .find(|m| port_of(m) == Some(port) && m["tags"]["netns"] == ns.name.as_str())
        .unwrap_or_else(|| panic!("no row for {port} in netns {}", ns.name));
    assert_eq!(int(&row["fields"]["queue_depth"]), 3);
    assert!(report
        .iter()
        .any(|m| m["name"] == "acceptq_netns" && m["tags"]["netns"] == "default"));
}

fn missing_netns_is_a_clear_error() {
    let out = std::process::Command::new(acceptq())
        .args(["--once", "--netns", "no-such-ns-acceptq"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("E! ")
            && err.contains("no-such-ns-acceptq")
            && err.contains("ip netns list"),
        "{err}"
    );
    assert!(!err.contains("panicked"));
}

fn all_netns_follows_namespaces_coming_and_going() {
    if !netns_gate("listeners::all_netns_follows_namespaces_coming_and_going") {
        return;
    }
    // Every parallel test's namespace is seen too: no cut, no /proc walk.
    let mut child = Reaped(
        std::process::Command::new(acceptq())
            .args([
                "--all-netns",
                "--signal",
                "stdin",
                "--format",
                "json",
                "--sample",
                "50ms",
            ])
            .args(["--max-listeners", "100000", "--no-process"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut stdin = child.0.stdin.take().unwrap();
    let stdout = Lines::new(child.0.stdout.take().unwrap());
    let report = |stdin: &mut std::process::ChildStdin| ask_report(stdin, &stdout);
    let first = report(&mut stdin);
    assert!(first
        .iter()
        .any(|m| m["name"] == "acceptq_netns" && m["tags"]["netns"] == "default"));

    let (ns, d, _, _) = queued_listener("follow", 2, 4, false);
    let second = report(&mut stdin);
    let row = second
        .iter()
        .find(|m| m["name"] == "acceptq_listener" && m["tags"]["netns"] == ns.name.as_str())
        .unwrap_or_else(|| panic!("new namespace {} not picked up: {second:?}", ns.name));
    assert_eq!(int(&row["fields"]["queue_depth"]), 3);
    assert!(
        row["fields"].get("drops_delta").is_none(),
        "new listener: no delta"
    );

    let name = ns.name.clone();
    drop(d);
    drop(ns);
    let third = report(&mut stdin);
    assert!(
        !third.iter().any(|m| m["tags"]["netns"] == name.as_str()),
        "removed namespace still reported"
    );
    drop(stdin);
    let status = wait_or_kill(&mut child.0, STEP);
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
}
