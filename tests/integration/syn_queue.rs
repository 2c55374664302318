//! The SYN queue: request sockets counted per listener, as `ss` counts them.

use std::time::Duration;

use crate::support::*;

tests![syn_queue_depth_counts_request_sockets_per_listener_as_ss_does];

/// Request sockets waiting in `ss -tn state syn-recv` for `port`.
pub(crate) fn ss_syn_recv(ns: &Netns, port: u16) -> usize {
    output_ok(&mut ns.cmd(
        "ss",
        &["-tnH", "state", "syn-recv", &format!("sport = :{port}")],
    ))
    .lines()
    .filter(|l| !l.trim().is_empty())
    .count()
}

/// Without syncookies and with the clients' final ACK dropped by nftables, every
/// client leaves one request socket; `syn_queue_depth` counts them per listener, as `ss` does:
/// IPv4 clients of a dual-stack `[::]` listener (v4-mapped), clients of `0.0.0.0` through any
/// local address, and a SO_REUSEPORT group (carried by `socket=0` with `--per-socket`).
fn syn_queue_depth_counts_request_sockets_per_listener_as_ss_does() {
    let test = "syn_queue::syn_queue_depth_counts_request_sockets_per_listener_as_ss_does";
    if !netns_gate(test) || !skip_unless(have("nft"), test, "needs nft (nftables)") {
        return;
    }
    if !skip_unless(have("ss"), test, "needs ss (iproute2)") {
        return;
    }
    let ns = Netns::new("who-syn");
    ns.sysctl("net.ipv4.tcp_syncookies", "0");
    let mut d = ns.driver();
    let (id4, p4) = d.listen("127.0.0.1", 0, 16, false);
    let (_, p6) = d.listen("::", 0, 16, false);
    let (_, pany) = d.listen("0.0.0.0", 0, 16, false);
    let (rp, prp) = d.listen("127.0.0.1", 0, 16, true);
    d.listen("127.0.0.1", prp, 16, true);
    ns.drop_final_acks(&[p4, p6, pany, prp]);
    d.connect(id4, 5);
    d.connect(rp, 3);
    let clients = |host: &str, port: u16, n: usize| {
        let mut h = Helper::start(
            &ns,
            "syn_clients.py",
            &[host, &port.to_string(), &n.to_string()],
        );
        h.expect("ok");
        h
    };
    // IPv4 clients of the dual-stack listener (v4-mapped), and of the IPv4 wildcard through two
    // local addresses.
    let _v4_to_v6 = clients("127.0.0.1", p6, 4);
    let _any1 = clients("127.0.0.1", pany, 2);
    let _any2 = clients("127.0.0.2", pany, 1);
    let expected = [(p4, 5), (p6, 4), (pany, 3), (prp, 3)];
    let settled = wait_for(Duration::from_secs(5), || {
        expected
            .iter()
            .all(|&(p, n)| ss_syn_recv(&ns, p) == n)
            .then_some(())
    });
    let held: Vec<usize> = expected.iter().map(|&(p, _)| ss_syn_recv(&ns, p)).collect();
    assert!(
        settled.is_some(),
        "kernel holds {held:?} request sockets, not {expected:?}"
    );

    let out = ns.acceptq(&["--once", "--format", "json"]);
    assert!(out.status.success(), "{out:?}");
    let report = json_lines(&out.stdout);
    for (p, n) in expected {
        let row = listener(&report, p);
        let ss = ss_syn_recv(&ns, p);
        assert_eq!(field(row, "syn_queue_depth"), Some(n as u64), "{row}");
        assert_eq!(ss, n, "ss now says {ss} for {p}");
        assert_eq!(
            field(row, "queue_depth"),
            Some(0),
            "handshakes never completed: {row}"
        );
    }
    assert_eq!(listener(&report, p6)["tags"]["address"], "::");
    assert_eq!(listener(&report, pany)["tags"]["address"], "0.0.0.0");
    assert_eq!(field(listener(&report, prp), "sockets"), Some(2));
    assert_eq!(field(netns_row(&report), "tcp_syncookies"), Some(0));

    // README: the SYN queue cannot be split among a group's sockets; socket=0 carries it.
    let out = ns.acceptq(&[
        "--once",
        "--format",
        "json",
        "--per-socket",
        "--port",
        &prp.to_string(),
    ]);
    assert!(out.status.success(), "{out:?}");
    let report = json_lines(&out.stdout);
    let rows = listener_rows(&report);
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0]["tags"]["socket"], "0");
    assert_eq!(field(rows[0], "syn_queue_depth"), Some(3), "{}", rows[0]);
    assert_eq!(field(rows[1], "syn_queue_depth"), None, "{}", rows[1]);

    let out = ns.acceptq(&["--once", "--format", "json", "--no-syn-queue"]);
    assert!(out.status.success(), "{out:?}");
    for row in listener_rows(&json_lines(&out.stdout)) {
        assert!(
            row["fields"].get("syn_queue_depth").is_none(),
            "--no-syn-queue: {row}"
        );
    }
}
