//! Listener rows that do not contradict themselves: one row per device-bound listener, peaks that
//! leave with their sockets, the dropping listener kept by `--max-listeners` (with or without a
//! previous report), drops counted across SO_REUSEPORT group changes, an IPv4 listener apart
//! from an IPv4-mapped IPv6 one, and the process holding a socket now rather than the one that
//! held it first.

use std::collections::HashMap;
use std::time::Duration;

use crate::support::*;

tests![
    device_bound_listeners_are_separate_rows_with_their_interface,
    syn_requests_are_counted_on_the_device_bound_listener_that_took_them,
    a_replaced_listener_does_not_inherit_the_old_sockets_peak,
    a_shrunken_reuseport_group_reports_only_its_remaining_sockets_peak,
    max_listeners_keeps_the_listener_dropping_now,
    once_max_listeners_keeps_the_full_dropping_listener,
    a_reuseport_group_keeps_drops_delta_when_a_socket_joins_or_leaves,
    a_deleted_device_and_a_device_named_like_its_tag_are_two_rows,
    an_ipv4_listener_and_a_mapped_ipv6_one_are_separate_rows,
    the_owner_is_the_process_still_holding_the_socket
];

/// A Python helper from tests/support/rows/, driven line by line like the driver.
fn helper(ns: &Netns, script: &str) -> Driver {
    let path = repo().join("tests/support/rows").join(script);
    Driver::start(ns.cmd("python3", &[path.to_str().unwrap()]))
}

/// Two veth pairs in the namespace, all ends up: v0 (fe80::1, 10.1.0.1) and v2 (fe80::1,
/// 10.2.0.1) carry the same link-local address, as two real links may.
fn two_devices(ns: &Netns) {
    for (a, b) in [("v0", "v1"), ("v2", "v3")] {
        run_ok(&mut ns.cmd("ip", &["link", "add", a, "type", "veth", "peer", "name", b]));
        for dev in [a, b] {
            run_ok(&mut ns.cmd("ip", &["link", "set", dev, "up"]));
        }
    }
    for (dev, v4) in [("v0", "10.1.0.1/24"), ("v2", "10.2.0.1/24")] {
        // nodad: a duplicate-address check would leave fe80::1 tentative, unusable, for a while.
        run_ok(&mut ns.cmd("ip", &["addr", "add", "fe80::1/64", "dev", dev, "nodad"]));
        run_ok(&mut ns.cmd("ip", &["addr", "add", v4, "dev", dev]));
    }
}

/// What `ss -tlnH` says of every listener: (address, device, port) → (Recv-Q, Send-Q), i.e.
/// depth and limit. ss writes `[fe80::1]%v0:7000`, `0.0.0.0%v0:7001`, `127.0.0.1:80`.
fn ss_listeners(ns: &Netns) -> HashMap<(String, Option<String>, u16), (u64, u64)> {
    let text = output_ok(&mut ns.cmd("ss", &["-tlnH"]));
    let mut out = HashMap::new();
    for line in text.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        let (host, port) = w[3].rsplit_once(':').unwrap();
        let (addr, dev) = split_device(host);
        out.insert(
            (addr, dev, port.parse().unwrap()),
            (w[1].parse().unwrap(), w[2].parse().unwrap()),
        );
    }
    out
}

/// Request sockets per local (address, device, port), as `ss -tnH state syn-recv` lists them.
fn ss_requests(ns: &Netns) -> HashMap<(String, Option<String>, u16), u64> {
    let text = output_ok(&mut ns.cmd("ss", &["-tnH", "state", "syn-recv"]));
    let mut out = HashMap::new();
    for line in text.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        let (host, port) = w[2].rsplit_once(':').unwrap();
        let (addr, dev) = split_device(host);
        *out.entry((addr, dev, port.parse().unwrap())).or_default() += 1;
    }
    out
}

fn split_device(host: &str) -> (String, Option<String>) {
    let (addr, dev) = match host.strip_prefix('[') {
        Some(rest) => {
            let (a, after) = rest.split_once(']').unwrap();
            (a, after.strip_prefix('%'))
        }
        None => match host.split_once('%') {
            Some((a, d)) => (a, Some(d)),
            None => (host, None),
        },
    };
    let addr = if addr == "*" { "::" } else { addr };
    (addr.to_string(), dev.map(str::to_string))
}

/// acceptq's listener rows keyed as ss keys them.
fn rows_by_endpoint(report: &[Json]) -> HashMap<(String, Option<String>, u16), &Json> {
    let mut out = HashMap::new();
    for m in report.iter().filter(|m| m["name"] == "acceptq_listener") {
        let key = (
            m["tags"]["address"].as_str().unwrap().to_string(),
            m["tags"]["interface"].as_str().map(str::to_string),
            port_of(m).unwrap(),
        );
        assert!(out.insert(key.clone(), m).is_none(), "two rows for {key:?}");
    }
    out
}

fn key(addr: &str, dev: Option<&str>, port: u16) -> (String, Option<String>, u16) {
    (addr.to_string(), dev.map(str::to_string), port)
}

fn field(row: &Json, name: &str) -> Option<u64> {
    row["fields"][name].as_u64()
}

/// `fe80::1%v0:P` and `fe80::1%v2:P`, and `0.0.0.0:Q` bound to v0 and to v2 by two processes,
/// are four listeners to the kernel: four rows, each with its own depth, limit, socket count,
/// device and process, as `ss -tln` shows them; an unbound listener gets no `interface` tag.
fn device_bound_listeners_are_separate_rows_with_their_interface() {
    let test = "device_bound_listeners_are_separate_rows_with_their_interface";
    if !netns_gate(test) {
        return;
    }
    let ns = Netns::new("bound");
    two_devices(&ns);
    let mut first = helper(&ns, "bound.py");
    let mut second = helper(&ns, "bound.py");
    let (first_pid, second_pid) = (first.pid(), second.pid());
    let ll_port = first.send("listen fe80::1 0 4 scope=v0")[1]
        .parse::<u16>()
        .unwrap();
    second.send(&format!("listen fe80::1 {ll_port} 8 scope=v2"));
    let v4_port = first.send("listen 0.0.0.0 0 4 dev=v0")[1]
        .parse::<u16>()
        .unwrap();
    second.send(&format!("listen 0.0.0.0 {v4_port} 16 dev=v2"));
    let plain_port = first.send("listen 127.0.0.1 0 4")[1]
        .parse::<u16>()
        .unwrap();
    first.send(&format!("connect fe80::1 {ll_port} 2 scope=v0"));
    first.send(&format!("connect fe80::1 {ll_port} 3 scope=v2"));
    first.send(&format!("connect 10.1.0.1 {v4_port} 1 dev=v0"));
    first.send(&format!("connect 10.2.0.1 {v4_port} 2 dev=v2"));
    first.send(&format!("connect 127.0.0.1 {plain_port} 1"));

    // (address, device, port) → (depth, limit, pid)
    let expected = [
        (key("fe80::1", Some("v0"), ll_port), (2, 4, first_pid)),
        (key("fe80::1", Some("v2"), ll_port), (3, 8, second_pid)),
        (key("0.0.0.0", Some("v0"), v4_port), (1, 4, first_pid)),
        (key("0.0.0.0", Some("v2"), v4_port), (2, 16, second_pid)),
        (key("127.0.0.1", None, plain_port), (1, 4, first_pid)),
    ];
    let settled = wait_for(Duration::from_secs(5), || {
        let ss = ss_listeners(&ns);
        expected
            .iter()
            .all(|(k, (depth, limit, _))| ss.get(k) == Some(&(*depth, *limit)))
            .then_some(())
    });
    assert!(
        settled.is_some(),
        "the kernel never showed {expected:?}: {:?}",
        ss_listeners(&ns)
    );

    let report = json_report(&mut ns.cmd(acceptq(), &["--once", "--format", "json"]));
    let ss = ss_listeners(&ns);
    let rows = rows_by_endpoint(&report);
    for (k, (depth, limit, pid)) in &expected {
        let row = rows
            .get(k)
            .unwrap_or_else(|| panic!("no row for {k:?} in {report:?}"));
        assert_eq!(field(row, "queue_depth"), Some(*depth), "{row}");
        assert_eq!(field(row, "queue_limit"), Some(*limit), "{row}");
        assert_eq!(field(row, "sockets"), Some(1), "{row}");
        assert_eq!(field(row, "pid"), Some(u64::from(*pid)), "{row}");
        assert_eq!(ss.get(k), Some(&(*depth, *limit)), "ss now, for {k:?}");
    }
    assert!(
        listener(&report, plain_port)["tags"]
            .get("interface")
            .is_none(),
        "an unbound listener has no interface tag"
    );
    let ours = rows.keys().filter(|k| k.2 == ll_port || k.2 == v4_port);
    assert_eq!(ours.count(), 4, "{report:?}");

    // Watched from outside with --netns, the devices are still named in the listeners'
    // namespace (indexes are per namespace; ours has no v0 or v2).
    let outside = json_report(
        std::process::Command::new(acceptq())
            .args(["--once", "--format", "json", "--netns", &ns.name]),
    );
    let outside = rows_by_endpoint(&outside);
    for (k, _) in &expected {
        assert!(outside.contains_key(k), "no row for {k:?} in {outside:?}");
    }

    // --address picks one device's listener by ADDRESS%INTERFACE.
    let only = json_report(&mut ns.cmd(
        acceptq(),
        &["--once", "--format", "json", "--address", "*%v2"],
    ));
    let picked: Vec<_> = rows_by_endpoint(&only).into_keys().collect();
    let mut picked = picked;
    picked.sort();
    assert_eq!(
        picked,
        vec![
            key("0.0.0.0", Some("v2"), v4_port),
            key("fe80::1", Some("v2"), ll_port)
        ]
    );
}

/// Without syncookies and with the final ACK dropped, each client leaves a request socket. A
/// request to a device-bound listener carries that listener's device (`idiag_if`) and is counted
/// there; a link-local client's request to an unbound `[::]` listener carries the device it came
/// in on and is counted on the unbound listener.
fn syn_requests_are_counted_on_the_device_bound_listener_that_took_them() {
    let test = "syn_requests_are_counted_on_the_device_bound_listener_that_took_them";
    if !netns_gate(test) || !skip_unless(have("nft"), test, "needs nft (nftables)") {
        return;
    }
    let ns = Netns::new("bound-syn");
    two_devices(&ns);
    ns.sysctl("net.ipv4.tcp_syncookies", "0");
    let mut h = helper(&ns, "bound.py");
    let v4_port = h.send("listen 0.0.0.0 0 16 dev=v0")[1]
        .parse::<u16>()
        .unwrap();
    h.send(&format!("listen 0.0.0.0 {v4_port} 16 dev=v2"));
    // A scoped and a wildcard listener on one port need SO_REUSEPORT on both (they are not one
    // group: their devices differ).
    let v6_port = h.send("listen fe80::1 0 16 scope=v0 reuseport")[1]
        .parse::<u16>()
        .unwrap();
    h.send(&format!("listen :: {v6_port} 16 reuseport"));
    ns.drop_final_acks(&[v4_port, v6_port]);
    h.send(&format!("connect 10.1.0.1 {v4_port} 2 dev=v0"));
    h.send(&format!("connect 10.2.0.1 {v4_port} 3 dev=v2"));
    h.send(&format!("connect fe80::1 {v6_port} 2 scope=v0"));
    h.send(&format!("connect fe80::1 {v6_port} 1 scope=v2"));

    // What the kernel holds, by the request's own address and device.
    let held = [
        (key("10.1.0.1", Some("v0"), v4_port), 2),
        (key("10.2.0.1", Some("v2"), v4_port), 3),
        (key("fe80::1", Some("v0"), v6_port), 2),
        (key("fe80::1", Some("v2"), v6_port), 1),
    ];
    let settled = wait_for(Duration::from_secs(5), || {
        let ss = ss_requests(&ns);
        held.iter().all(|(k, n)| ss.get(k) == Some(n)).then_some(())
    });
    assert!(
        settled.is_some(),
        "the kernel holds {:?}, not {held:?}",
        ss_requests(&ns)
    );

    let report = json_report(&mut ns.cmd(acceptq(), &["--once", "--format", "json"]));
    let rows = rows_by_endpoint(&report);
    for (k, n) in [
        (key("0.0.0.0", Some("v0"), v4_port), 2),
        (key("0.0.0.0", Some("v2"), v4_port), 3),
        (key("fe80::1", Some("v0"), v6_port), 2),
        (key("::", None, v6_port), 1),
    ] {
        let row = rows
            .get(&k)
            .unwrap_or_else(|| panic!("no row for {k:?} in {report:?}"));
        assert_eq!(field(row, "syn_queue_depth"), Some(n), "{k:?}: {row}");
        assert_eq!(field(row, "sockets"), Some(1), "{row}");
        assert_eq!(field(row, "queue_depth"), Some(0), "{row}");
    }
}

/// A `listen(16)` socket filled to 17, closed and replaced by a `listen(1)` socket on the same
/// port: the next report's peak is the new socket's, within what it can hold.
fn a_replaced_listener_does_not_inherit_the_old_sockets_peak() {
    let test = "a_replaced_listener_does_not_inherit_the_old_sockets_peak";
    if !netns_gate(test) {
        return;
    }
    let ns = Netns::new("replaced");
    let mut d = ns.driver();
    let (old, port) = d.listen("127.0.0.1", 0, 16, false);
    let mut live = Live::start(&ns, &["--sample", "100ms"]);
    live.report();
    d.connect(old, 17);
    let full = wait_for(Duration::from_secs(5), || {
        (queued(&ns, port) == 17).then_some(())
    });
    assert!(full.is_some(), "listen(16) never held 17");
    // Long enough for several samples to see 17.
    std::thread::sleep(Duration::from_millis(500));
    d.send(&format!("close {old}"));
    let (new, _) = d.listen("127.0.0.1", port, 1, false);
    d.connect(new, 3);
    let refilled = wait_for(Duration::from_secs(5), || {
        (queued(&ns, port) == 2).then_some(())
    });
    assert!(refilled.is_some(), "listen(1) never held 2");

    let report = live.report();
    let row = listener(&report, port);
    assert_eq!(field(row, "queue_limit"), Some(1), "{row}");
    assert_eq!(
        field(row, "queue_depth_max"),
        Some(2),
        "the peak is the new socket's (listen(1) holds 2), not the old one's 17: {row}"
    );
}

/// An SO_REUSEPORT group of three full `listen(4)` sockets shrinks to one: the row's peak is
/// what the remaining socket held, not the group's 15.
fn a_shrunken_reuseport_group_reports_only_its_remaining_sockets_peak() {
    let test = "a_shrunken_reuseport_group_reports_only_its_remaining_sockets_peak";
    if !netns_gate(test) {
        return;
    }
    let ns = Netns::new("shrunk");
    let mut d = ns.driver();
    let (a, port) = d.listen("127.0.0.1", 0, 4, true);
    let (b, _) = d.listen("127.0.0.1", port, 4, true);
    let (c, _) = d.listen("127.0.0.1", port, 4, true);
    let mut live = Live::start(&ns, &["--sample", "100ms"]);
    live.report();
    // Clients spread over the group by their hash; enough of them fill every socket.
    for id in [a, b, c] {
        d.connect(id, 20);
    }
    let full = wait_for(Duration::from_secs(5), || {
        (queued(&ns, port) == 15).then_some(())
    });
    assert!(
        full.is_some(),
        "the group never held 15: {}",
        queued(&ns, port)
    );
    std::thread::sleep(Duration::from_millis(500));
    d.send(&format!("close {b}"));
    d.send(&format!("close {c}"));
    let one = wait_for(Duration::from_secs(5), || {
        let text = output_ok(&mut ns.cmd("ss", &["-tlnH", &format!("sport = :{port}")]));
        (text.lines().count() == 1).then_some(())
    });
    assert!(one.is_some(), "two sockets of the group never closed");

    let report = live.report();
    let row = listener(&report, port);
    assert_eq!(field(row, "sockets"), Some(1), "{row}");
    assert_eq!(field(row, "queue_limit"), Some(4), "{row}");
    let peak = field(row, "queue_depth_max").unwrap();
    assert!(
        peak <= 5,
        "a listen(4) socket holds 5; the closed sockets took their share with them: {row}"
    );
    assert_eq!(peak, 5, "the remaining socket was full: {row}");
}

/// `--max-listeners` keeps the listener whose SYN queue overflows (its accept queue empty, its
/// drops climbing) over listeners that merely have a connection queued.
fn max_listeners_keeps_the_listener_dropping_now() {
    let test = "max_listeners_keeps_the_listener_dropping_now";
    if !netns_gate(test) || !skip_unless(have("nft"), test, "needs nft (nftables)") {
        return;
    }
    let ns = Netns::new("rank");
    ns.sysctl("net.ipv4.tcp_syncookies", "0");
    let mut d = ns.driver();
    let (syn, syn_port) = d.listen("127.0.0.1", 0, 2, false);
    ns.drop_final_acks(&[syn_port]);
    let mut busy = Vec::new();
    for _ in 0..5 {
        let (id, port) = d.listen("127.0.0.1", 0, 8, false);
        d.connect(id, 1);
        busy.push(port);
    }
    let mut live = Live::start(&ns, &["--sample", "100ms", "--max-listeners", "5"]);
    live.report();
    d.connect(syn, 10);
    let dropping = wait_for(Duration::from_secs(5), || {
        (ns.ss_drops(syn_port) > 0).then_some(())
    });
    assert!(dropping.is_some(), "the SYN queue never overflowed");
    assert!(busy.iter().all(|p| queued(&ns, *p) == 1));

    let report = live.report();
    let rows: Vec<&Json> = report
        .iter()
        .filter(|m| m["name"] == "acceptq_listener")
        .collect();
    assert_eq!(rows.len(), 5, "{report:?}");
    let kept = rows
        .iter()
        .find(|m| port_of(m) == Some(syn_port))
        .unwrap_or_else(|| panic!("the dropping listener was left out: {report:?}"));
    assert!(field(kept, "drops_delta").unwrap() > 0, "{kept}");
    assert_eq!(field(kept, "queue_depth_max"), Some(0), "{kept}");
    assert_eq!(field(netns_row(&report), "listeners_omitted"), Some(1));
}

/// With no previous report (`--once`), `--max-listeners` keeps the one listener whose queue is
/// full and dropping over deeper ones with room left: no `drops_delta` says it is dropping now,
/// the kernel's full queue does.
fn once_max_listeners_keeps_the_full_dropping_listener() {
    let test = "once_max_listeners_keeps_the_full_dropping_listener";
    if !netns_gate(test) {
        return;
    }
    let ns = Netns::new("rank1");
    let mut d = ns.driver();
    let mut deep = Vec::new();
    for n in [3, 4] {
        let (id, port) = d.listen("127.0.0.1", 0, 5, false);
        d.connect(id, n);
        deep.push((port, n as u32));
    }
    // listen(0): full at depth 1, every further SYN dropped.
    let (full, full_port) = d.listen("127.0.0.1", 0, 0, false);
    d.connect(full, 30);
    let settled = wait_for(Duration::from_secs(5), || {
        (ns.ss_drops(full_port) > 0 && deep.iter().all(|(p, n)| queued(&ns, *p) == *n))
            .then_some(())
    });
    assert!(settled.is_some(), "the queues never settled");

    let report = json_report(&mut ns.cmd(
        acceptq(),
        &[
            "--once",
            "--no-process",
            "--format",
            "json",
            "--max-listeners",
            "2",
        ],
    ));
    let rows = listener_rows(&report);
    let ports: Vec<_> = rows.iter().map(|m| port_of(m).unwrap()).collect();
    assert!(
        ports.contains(&full_port),
        "the full, dropping listener was left out: {report:?}"
    );
    assert!(
        ports.contains(&deep[1].0),
        "the deepest other stays: {report:?}"
    );
    let kept = listener(&report, full_port);
    assert!(field(kept, "drops").unwrap() > 0, "{kept}");
    assert_eq!(
        field(kept, "drops_delta"),
        None,
        "no previous report: {kept}"
    );
    assert_eq!(field(netns_row(&report), "listeners_omitted"), Some(1));
}

/// An SO_REUSEPORT group that gains a socket while its sockets keep dropping still reports
/// `drops_delta`: the old sockets' growth plus all the new one's drops, which is exactly how
/// much the row's `drops` grew. After a socket leaves, the ones that stayed still carry it.
fn a_reuseport_group_keeps_drops_delta_when_a_socket_joins_or_leaves() {
    let test = "a_reuseport_group_keeps_drops_delta_when_a_socket_joins_or_leaves";
    if !netns_gate(test) {
        return;
    }
    let ns = Netns::new("rpdelta");
    let mut d = ns.driver();
    let (first, port) = d.listen("127.0.0.1", 0, 1, true);
    d.listen("127.0.0.1", port, 1, true);
    let port_arg = port.to_string();
    let mut live = Live::start(&ns, &["--no-process", "--port", &port_arg]);
    d.connect(first, 12);
    let dropping = wait_for(Duration::from_secs(5), || {
        (ns.ss_drops(port) > 0).then_some(())
    });
    assert!(dropping.is_some(), "the group never dropped");
    let before = live.report();
    let drops_before = field(listener(&before, port), "drops").unwrap();

    // Clients retransmit their SYNs: the group keeps dropping while a third socket joins (and
    // fills and drops as well).
    d.listen("127.0.0.1", port, 1, true);
    let grew = wait_for(Duration::from_secs(8), || {
        (ns.ss_drops(port) > drops_before).then_some(())
    });
    assert!(grew.is_some(), "no drops after the socket joined");
    let after = live.report();
    let row = listener(&after, port);
    assert_eq!(field(row, "sockets"), Some(3), "{row}");
    let drops_after = field(row, "drops").unwrap();
    assert_eq!(
        field(row, "drops_delta"),
        Some(drops_after - drops_before),
        "a socket joined: {row}"
    );

    d.send(&format!("close {first}"));
    let left = live.report();
    let row = listener(&left, port);
    assert_eq!(field(row, "sockets"), Some(2), "{row}");
    // The closed socket's drops left with it; the two that stayed are counted.
    let delta = field(row, "drops_delta").unwrap_or_else(|| panic!("a socket left: {row}"));
    assert!(delta <= field(row, "drops").unwrap(), "{row}");
}

/// A listener bound to a device since deleted is tagged by its index in a form no device name
/// can take, so a device later named `if<index>` (a listener bound to it) is a row of its own,
/// not a second row with the same tags.
fn a_deleted_device_and_a_device_named_like_its_tag_are_two_rows() {
    let test = "a_deleted_device_and_a_device_named_like_its_tag_are_two_rows";
    if !netns_gate(test) {
        return;
    }
    let ns = Netns::new("ifname");
    run_ok(&mut ns.cmd(
        "ip",
        &["link", "add", "w0", "type", "veth", "peer", "name", "w1"],
    ));
    let index = output_ok(&mut ns.cmd("cat", &["/sys/class/net/w0/ifindex"]));
    let index = index.trim();
    let mut h = helper(&ns, "bound.py");
    let port = h.send("listen 0.0.0.0 0 5 dev=w0")[1]
        .parse::<u16>()
        .unwrap();
    run_ok(&mut ns.cmd("ip", &["link", "del", "w0"]));
    let alias = format!("if{index}");
    run_ok(&mut ns.cmd(
        "ip",
        &["link", "add", &alias, "type", "veth", "peer", "name", "z1"],
    ));
    h.send(&format!("listen 0.0.0.0 {port} 9 dev={alias}"));

    let report =
        json_report(&mut ns.cmd(acceptq(), &["--once", "--no-process", "--format", "json"]));
    let rows = rows_by_endpoint(&report);
    let unnamed = format!("if:{index}");
    let limit = |dev: &str| {
        rows.get(&key("0.0.0.0", Some(dev), port))
            .and_then(|r| field(r, "queue_limit"))
    };
    assert_eq!(limit(&unnamed), Some(5), "{report:?}");
    assert_eq!(limit(&alias), Some(9), "{report:?}");
}

/// An `AF_INET` socket on 127.0.0.1:P and an `AF_INET6` one on `::ffff:127.0.0.1`:P are two
/// SO_REUSEPORT groups to the kernel, which sends IPv4 clients to the `AF_INET` one: two rows,
/// as `ss` shows them, the queued connections (and their wait) on the IPv4 row.
fn an_ipv4_listener_and_a_mapped_ipv6_one_are_separate_rows() {
    let test = "an_ipv4_listener_and_a_mapped_ipv6_one_are_separate_rows";
    if !netns_gate(test) {
        return;
    }
    let ns = Netns::new("mapped");
    let mut d = ns.driver();
    let (v4, port) = d.listen("127.0.0.1", 0, 3, true);
    d.listen("::ffff:127.0.0.1", port, 8, true);
    d.connect(v4, 10);
    let (v4_key, mapped_key) = (
        key("127.0.0.1", None, port),
        key("::ffff:127.0.0.1", None, port),
    );
    let settled = wait_for(Duration::from_secs(5), || {
        let ss = ss_listeners(&ns);
        (ss.get(&v4_key) == Some(&(4, 3)) && ss.get(&mapped_key) == Some(&(0, 8))).then_some(())
    });
    assert!(settled.is_some(), "ss: {:?}", ss_listeners(&ns));

    let report =
        json_report(&mut ns.cmd(acceptq(), &["--once", "--no-process", "--format", "json"]));
    let rows = rows_by_endpoint(&report);
    let get = |k: &(String, Option<String>, u16)| {
        let row = rows
            .get(k)
            .unwrap_or_else(|| panic!("no row {k:?}: {report:?}"));
        ["queue_depth", "queue_limit", "sockets"].map(|f| field(row, f))
    };
    assert_eq!(get(&v4_key), [Some(4), Some(3), Some(1)]);
    assert_eq!(get(&mapped_key), [Some(0), Some(8), Some(1)]);
    assert!(
        rows[&v4_key]["fields"]["queue_wait_max"].is_number(),
        "{report:?}"
    );
    assert!(
        rows[&mapped_key]["fields"]["queue_wait_max"].is_null(),
        "{report:?}"
    );
}

/// A supervisor binds, forks a worker and closes its own fd, living on under the same name: a
/// long-running acceptq names the worker from then on, as `--once` does.
fn the_owner_is_the_process_still_holding_the_socket() {
    let test = "the_owner_is_the_process_still_holding_the_socket";
    if !netns_gate(test) {
        return;
    }
    let ns = Netns::new("owner");
    let mut sup = helper(&ns, "supervisor.py");
    let w = sup.send("start");
    let port: u16 = w[0].parse().unwrap();
    let (supervisor, worker): (u64, u64) = (w[1].parse().unwrap(), w[2].parse().unwrap());
    let mut live = Live::start(&ns, &[]);
    let before = live.report();
    assert_eq!(
        field(listener(&before, port), "pid"),
        Some(supervisor),
        "both hold it: the lowest pid"
    );

    sup.send("close");
    let after = live.report();
    assert_eq!(
        field(listener(&after, port), "pid"),
        Some(worker),
        "the supervisor let go"
    );
    let once = json_report(&mut ns.cmd(acceptq(), &["--once", "--format", "json"]));
    assert_eq!(field(listener(&once, port), "pid"), Some(worker));
}
