//! How long connections have waited in accept queues (`queue_wait_max`): listeners that never
//! accept, clients connected at known times, the wait compared with the clock.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::*;

tests![
    the_oldest_queued_connection_sets_the_wait_until_it_is_accepted,
    ipv6_and_ipv4_mapped_connections_are_timed_on_their_listener,
    a_reuseport_group_reports_its_oldest_connection_summed_or_on_socket_0,
    a_specific_listener_and_the_wildcard_each_time_their_own_connections,
    a_device_bound_listener_times_its_connections,
    a_client_that_closed_while_queued_still_counts,
    a_fast_open_child_still_in_syn_recv_counts,
    a_syn_flood_leaves_the_waits_measured_and_a_quiet_fast_open_port_timed,
    no_queue_wait_leaves_the_field_out,
];

/// Slack beyond the bounds the clock gives: the kernel counts in jiffies (4 ms at HZ=250, 10 ms
/// at HZ=100) and rounds down.
const JIFFY_SLACK: f64 = 0.02;

/// A stretch of time something happened in: the test knows its ends, not the moment.
#[derive(Clone, Copy)]
struct Span {
    start: Instant,
    end: Instant,
}

/// tests/support/queue_clients.py in the namespace: connects one client at a time, accepts one.
fn clients(ns: &Netns) -> Driver {
    Driver::start(
        ns.cmd(
            "python3",
            &[repo()
                .join("tests/support/queue_clients.py")
                .to_str()
                .unwrap()],
        ),
    )
}

/// Connects one client of listener `id` to `host`; returns its index and the span its
/// handshake completed in (the helper answers once it has).
fn connect(d: &mut Driver, id: usize, host: &str) -> (usize, Span) {
    let start = Instant::now();
    let w = d.send(&format!("connect {id} {host}"));
    let end = Instant::now();
    (w[0].parse().unwrap(), Span { start, end })
}

fn sleep_until(t: Instant) {
    std::thread::sleep(t.saturating_duration_since(Instant::now()));
}

/// One `acceptq --once` report in the namespace, and the span of the run its dump fell in (on
/// a loaded machine process start-up alone can take a good part of a second).
fn report(ns: &Netns, extra: &[&str]) -> (Vec<Json>, Span) {
    let mut args = vec!["--once", "--format", "json", "--no-process"];
    args.extend_from_slice(extra);
    let start = Instant::now();
    let r = json_report(&mut ns.cmd(acceptq(), &args));
    let end = Instant::now();
    (r, Span { start, end })
}

/// The listener row on `address` and `port` (and `socket`, when given).
fn row<'a>(report: &'a [Json], address: &str, port: u16, socket: Option<&str>) -> &'a Json {
    report
        .iter()
        .find(|m| {
            m["name"] == "acceptq_listener"
                && m["tags"]["address"] == address
                && port_of(m) == Some(port)
                && m["tags"]["socket"].as_str() == socket
        })
        .unwrap_or_else(|| panic!("no row {address} {port} {socket:?} in {report:?}"))
}

fn wait(row: &Json) -> Option<f64> {
    let v = &row["fields"]["queue_wait_max"];
    assert!(v.is_null() || v.is_f64(), "a float: {row}");
    v.as_f64()
}

/// Asserts the row's wait is the age of a connection made in `since`, seen in `at`: no less
/// than the shortest age the two spans allow, no more than the longest.
fn assert_age(row: &Json, since: Span, at: Span, what: &str) {
    let least = at.start.saturating_duration_since(since.end).as_secs_f64();
    let most = (at.end - since.start).as_secs_f64();
    let got = wait(row).unwrap_or_else(|| panic!("{what}: no queue_wait_max in {row}"));
    assert!(
        got >= least - JIFFY_SLACK && got <= most + JIFFY_SLACK,
        "{what}: queue_wait_max {got} s, the connection is {least:.3} to {most:.3} s old: {row}"
    );
}

fn the_oldest_queued_connection_sets_the_wait_until_it_is_accepted() {
    if !netns_gate("queue_wait::the_oldest_queued_connection_sets_the_wait_until_it_is_accepted") {
        return;
    }
    let ns = Netns::new("wait");
    let mut d = clients(&ns);
    let (id, port) = d.listen("127.0.0.1", 0, 10, false);
    let (_, t0) = connect(&mut d, id, "127.0.0.1");
    sleep_until(t0.end + Duration::from_secs(1));
    let (_, t1) = connect(&mut d, id, "127.0.0.1");
    sleep_until(t0.end + Duration::from_millis(2500));

    let (r, at) = report(&ns, &[]);
    let first = row(&r, "127.0.0.1", port, None);
    assert_eq!(int(&first["fields"]["queue_depth"]), 2, "{first}");
    assert_age(first, t0, at, "the first client's age");

    // The queue is first in, first out: accepting one takes the oldest.
    assert_eq!(d.send(&format!("accept_one {id}"))[0], "1");
    let (r, at) = report(&ns, &[]);
    let second = row(&r, "127.0.0.1", port, None);
    assert_eq!(int(&second["fields"]["queue_depth"]), 1, "{second}");
    assert_age(
        second,
        t1,
        at,
        "the second client's age, not the accepted one's",
    );

    assert_eq!(d.send(&format!("accept {id}"))[0], "1");
    let (r, _) = report(&ns, &[]);
    let empty = row(&r, "127.0.0.1", port, None);
    assert_eq!(int(&empty["fields"]["queue_depth"]), 0, "{empty}");
    assert_eq!(wait(empty), None, "an empty queue has no wait: {empty}");

    // Two accepted, idle connections older than any queued one never count.
    let (_, t2) = connect(&mut d, id, "127.0.0.1");
    sleep_until(t2.end + Duration::from_millis(500));
    let (r, at) = report(&ns, &[]);
    assert_age(
        row(&r, "127.0.0.1", port, None),
        t2,
        at,
        "only the new, queued client",
    );
}

fn ipv6_and_ipv4_mapped_connections_are_timed_on_their_listener() {
    if !netns_gate("queue_wait::ipv6_and_ipv4_mapped_connections_are_timed_on_their_listener") {
        return;
    }
    let ns = Netns::new("wait6");
    let mut d = clients(&ns);
    let (v6, v6_port) = d.listen("::1", 0, 10, false);
    let (dual, dual_port) = d.listen("::", 0, 10, false);
    let (_, t_v6) = connect(&mut d, v6, "::1");
    // An IPv4 client of the dual-stack listener: its connection is `::ffff:127.0.0.1`.
    let (_, t_v4) = connect(&mut d, dual, "127.0.0.1");
    sleep_until(t_v4.end + Duration::from_millis(500));
    connect(&mut d, dual, "::1");
    sleep_until(t_v4.end + Duration::from_millis(1500));

    let (r, at) = report(&ns, &[]);
    assert_age(row(&r, "::1", v6_port, None), t_v6, at, "IPv6 listener");
    let dual_row = row(&r, "::", dual_port, None);
    assert_eq!(int(&dual_row["fields"]["queue_depth"]), 2, "{dual_row}");
    assert_age(dual_row, t_v4, at, "the IPv4 client of [::]");
}

fn a_reuseport_group_reports_its_oldest_connection_summed_or_on_socket_0() {
    if !netns_gate(
        "queue_wait::a_reuseport_group_reports_its_oldest_connection_summed_or_on_socket_0",
    ) {
        return;
    }
    let ns = Netns::new("waitrp");
    let mut d = clients(&ns);
    let (id, port) = d.listen("127.0.0.1", 0, 10, true);
    d.listen("127.0.0.1", port, 10, true);
    // Clients from different ports spread over both sockets; the first is the oldest either way.
    let (_, t0) = connect(&mut d, id, "127.0.0.1");
    sleep_until(t0.end + Duration::from_millis(800));
    for _ in 0..6 {
        connect(&mut d, id, "127.0.0.1");
    }
    sleep_until(t0.end + Duration::from_millis(2000));

    let (r, at) = report(&ns, &[]);
    let summed = row(&r, "127.0.0.1", port, None);
    assert_eq!(int(&summed["fields"]["sockets"]), 2, "{summed}");
    assert_eq!(int(&summed["fields"]["queue_depth"]), 7, "{summed}");
    assert_age(summed, t0, at, "the group's oldest");

    let (r, at) = report(&ns, &["--per-socket"]);
    assert_age(
        row(&r, "127.0.0.1", port, Some("0")),
        t0,
        at,
        "socket 0 carries the group's oldest",
    );
    let other = row(&r, "127.0.0.1", port, Some("1"));
    assert_eq!(wait(other), None, "{other}");
}

fn a_specific_listener_and_the_wildcard_each_time_their_own_connections() {
    if !netns_gate(
        "queue_wait::a_specific_listener_and_the_wildcard_each_time_their_own_connections",
    ) {
        return;
    }
    let ns = Netns::new("waitwc");
    let mut d = clients(&ns);
    // SO_REUSEPORT lets both listen on one port; they are still separate listeners.
    let (wild, port) = d.listen("0.0.0.0", 0, 10, true);
    let (specific, _) = d.listen("127.0.0.1", port, 10, true);
    let (_, t_wild) = connect(&mut d, wild, "127.0.0.2");
    sleep_until(t_wild.end + Duration::from_secs(1));
    let (_, t_specific) = connect(&mut d, specific, "127.0.0.1");
    sleep_until(t_wild.end + Duration::from_millis(2000));

    let (r, at) = report(&ns, &[]);
    assert_age(
        row(&r, "0.0.0.0", port, None),
        t_wild,
        at,
        "127.0.0.2 reaches only the wildcard",
    );
    assert_age(
        row(&r, "127.0.0.1", port, None),
        t_specific,
        at,
        "127.0.0.1 is taken by its own listener",
    );
}

fn a_device_bound_listener_times_its_connections() {
    if !netns_gate("queue_wait::a_device_bound_listener_times_its_connections") {
        return;
    }
    let ns = Netns::new("waitdev");
    let mut d = clients(&ns);
    // Its queued connections carry the listener's device (idiag_if): matched on it.
    let w = d.send("listen 0.0.0.0 0 10 dev=lo");
    let (id, port): (usize, u16) = (w[0].parse().unwrap(), w[1].parse().unwrap());
    let (_, t0) = connect(&mut d, id, "127.0.0.1");
    sleep_until(t0.end + Duration::from_millis(1000));
    let (r, at) = report(&ns, &[]);
    let bound = row(&r, "0.0.0.0", port, None);
    assert_eq!(bound["tags"]["interface"], "lo", "{bound}");
    assert_age(bound, t0, at, "the lo-bound listener");
}

fn a_client_that_closed_while_queued_still_counts() {
    if !netns_gate("queue_wait::a_client_that_closed_while_queued_still_counts") {
        return;
    }
    let ns = Netns::new("waitcw");
    let mut d = clients(&ns);
    let (id, port) = d.listen("127.0.0.1", 0, 10, false);
    let (gone, t0) = connect(&mut d, id, "127.0.0.1");
    sleep_until(t0.end + Duration::from_millis(200));
    d.send(&format!("close {gone}"));
    sleep_until(t0.end + Duration::from_secs(1));
    connect(&mut d, id, "127.0.0.1");
    sleep_until(t0.end + Duration::from_millis(2000));

    // The kernel's word: the closed client's connection waits in CLOSE-WAIT, without a file.
    let close_wait = output_ok(&mut ns.cmd(
        "ss",
        &["-tnH", "state", "close-wait", &format!("sport = :{port}")],
    ));
    assert_eq!(close_wait.lines().count(), 1, "{close_wait}");
    let (r, at) = report(&ns, &[]);
    let listener = row(&r, "127.0.0.1", port, None);
    assert_eq!(int(&listener["fields"]["queue_depth"]), 2, "{listener}");
    assert_age(listener, t0, at, "the closed client is still the oldest");
}

fn a_fast_open_child_still_in_syn_recv_counts() {
    if !netns_gate("queue_wait::a_fast_open_child_still_in_syn_recv_counts")
        || !skip_unless(
            have("nft"),
            "queue_wait::a_fast_open_child_still_in_syn_recv_counts",
            "needs nft (nftables) to hold the child in SYN_RECV",
        )
    {
        return;
    }
    let ns = Netns::new("waittfo");
    // Server Fast Open without a cookie: the SYN's data creates the child at once, queued.
    ns.sysctl("net.ipv4.tcp_fastopen", "515");
    let mut d = clients(&ns);
    let w = d.send("listen 127.0.0.1 0 10 fastopen");
    let (id, port): (usize, u16) = (w[0].parse().unwrap(), w[1].parse().unwrap());
    // Dropping the client's bare ACK keeps the child in SYN_RECV.
    ns.drop_final_acks(&[port]);
    let start = Instant::now();
    d.send(&format!("fastopen {id} 127.0.0.1"));
    let t0 = Span {
        start,
        end: Instant::now(),
    };
    sleep_until(t0.end + Duration::from_millis(1500));

    let syn_recv = output_ok(&mut ns.cmd(
        "ss",
        &["-tnH", "state", "syn-recv", &format!("sport = :{port}")],
    ));
    assert_eq!(syn_recv.lines().count(), 1, "the kernel's word: {syn_recv}");
    let (r, at) = report(&ns, &[]);
    let listener = row(&r, "127.0.0.1", port, None);
    assert_eq!(int(&listener["fields"]["queue_depth"]), 1, "{listener}");
    assert_age(listener, t0, at, "the Fast Open child");
}

/// Listeners flooded, each with one connection queued, and the SYNs sent to each: the
/// tester's recipe, some 270 000 request sockets, which made the old single dump (asking
/// `SYN_RECV`, so every request socket of the ports) run past its cap.
const FLOOD_PORTS: usize = 64;
const FLOOD_SYNS: &str = "4200";

/// Adds `rule` to the chain `chain` of the namespace's `inet f` table (made with its hook).
fn nft(ns: &Netns, chain: &str, hook: &str, rule: &str) {
    let _ = ns.cmd("nft", &["add", "table", "inet", "f"]).output();
    let spec = format!("{{ type filter hook {hook} priority 0; }}");
    run_ok(&mut ns.cmd("nft", &["add", "chain", "inet", "f", chain, &spec]));
    let rule = format!("add rule inet f {chain} {rule}");
    run_ok(&mut ns.cmd("nft", &rule.split(' ').collect::<Vec<_>>()));
}

fn a_syn_flood_leaves_the_waits_measured_and_a_quiet_fast_open_port_timed() {
    let name = "queue_wait::a_syn_flood_leaves_the_waits_measured_and_a_quiet_fast_open_port_timed";
    if !netns_gate(name)
        || !skip_unless(have("nft"), name, "needs nft (nftables)")
        || !skip_unless(have("hping3"), name, "needs hping3 to send the SYN flood")
        || !skip_unless(have("nsenter"), name, "needs nsenter (util-linux)")
    {
        return;
    }
    // The flood goes in a namespace with an established hash of its own: made from one whose
    // tcp_child_ehash_entries asks for it (nsenter: `ip netns exec` would hide the new name in
    // its own mount namespace). Every dump on the host walks the shared hash, and the request
    // sockets outlive the test by their SYN-ACK timers: other tests must not walk them.
    let _flood = one_flood_at_a_time();
    let parent = Netns::new("waitflood0");
    parent.sysctl("net.ipv4.tcp_child_ehash_entries", "65536");
    let ns = Netns {
        name: format!("{}-f", parent.name),
    };
    run_ok(Command::new("nsenter").args([
        &format!("--net=/run/netns/{}", parent.name),
        "ip",
        "netns",
        "add",
        &ns.name,
    ]));
    run_ok(&mut ns.cmd("ip", &["link", "set", "lo", "up"]));
    assert_eq!(
        output_ok(&mut ns.cmd("sysctl", &["-n", "net.ipv4.tcp_ehash_entries"])).trim(),
        "65536",
        "a hash of its own"
    );
    // Every SYN makes a request socket that stays: no cookies, room in the queues, and the
    // spoofed peer's RSTs (127.0.0.2 answering SYN-ACKs it never asked for) dropped.
    ns.sysctl("net.ipv4.tcp_syncookies", "0");
    ns.sysctl("net.ipv4.tcp_max_syn_backlog", "65536");
    ns.sysctl("net.ipv4.tcp_synack_retries", "8");
    ns.sysctl("net.core.somaxconn", "8192");
    ns.sysctl("net.ipv4.tcp_fastopen", "515");
    nft(
        &ns,
        "out",
        "output",
        "ip saddr 127.0.0.2 tcp flags rst drop",
    );
    let mut d = clients(&ns);
    let mut flooded = Vec::new();
    for _ in 0..FLOOD_PORTS {
        let (id, port) = d.listen("127.0.0.1", 0, 8192, false);
        connect(&mut d, id, "127.0.0.1");
        flooded.push(port);
    }
    // A quiet port with a Fast Open child held in SYN_RECV (its bare ACK dropped).
    let w = d.send("listen 127.0.0.1 0 10 fastopen");
    let (tfo, tfo_port): (usize, u16) = (w[0].parse().unwrap(), w[1].parse().unwrap());
    nft(
        &ns,
        "in",
        "input",
        &format!("tcp dport {tfo_port} tcp flags & (syn|ack|fin|rst) == ack drop"),
    );
    let start = Instant::now();
    d.send(&format!("fastopen {tfo} 127.0.0.1"));
    let t0 = Span {
        start,
        end: Instant::now(),
    };

    // A fixed budget of SYNs, each sender bounded.
    let senders: Vec<Reaped> = flooded
        .iter()
        .map(|port| {
            let port = port.to_string();
            let mut cmd = ns.cmd(
                "timeout",
                &[
                    "20",
                    "hping3",
                    "-q",
                    "-S",
                    "-p",
                    &port,
                    "-a",
                    "127.0.0.2",
                    "-i",
                    "u20",
                    "-c",
                    FLOOD_SYNS,
                    "127.0.0.1",
                ],
            );
            cmd.stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null());
            Reaped(cmd.spawn().expect("hping3"))
        })
        .collect();
    for mut s in senders {
        wait_or_kill(&mut s.0, Duration::from_secs(25));
    }
    let flood_time = t0.end.elapsed();
    // The kernel's word: the SYNs became request sockets. Thousands per port is the flood
    // this test needs; on a loaded machine the senders' time limit cuts some of the budget.
    let one = output_ok(&mut ns.cmd(
        "ss",
        &[
            "-tnH",
            "state",
            "syn-recv",
            &format!("sport = :{}", flooded[0]),
        ],
    ));
    assert!(
        one.lines().count() >= 2000,
        "{} request sockets",
        one.lines().count()
    );
    note!("flood of {FLOOD_PORTS} x {FLOOD_SYNS} SYNs took {flood_time:?}");

    let start = Instant::now();
    let out = ns.acceptq(&["--once", "--format", "json", "--no-process"]);
    let at = Span {
        start,
        end: Instant::now(),
    };
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    note!("acceptq said: {said}");
    assert!(!said.contains("accept-queue waits"), "{said}");
    let r = json_lines(&out.stdout);
    for port in &flooded {
        let listener = row(&r, "127.0.0.1", *port, None);
        assert_eq!(int(&listener["fields"]["queue_depth"]), 1, "{listener}");
        assert!(
            wait(listener).is_some(),
            "the flooded port's queued client: {listener}"
        );
    }
    // The run is long under the flood (the SYN-queue dump alone may take its cap).
    let tfo_row = row(&r, "127.0.0.1", tfo_port, None);
    assert_age(
        tfo_row,
        t0,
        at,
        "the quiet port's Fast Open child, asked for alone",
    );
}

fn no_queue_wait_leaves_the_field_out() {
    if !netns_gate("queue_wait::no_queue_wait_leaves_the_field_out") {
        return;
    }
    let ns = Netns::new("waitoff");
    let mut d = clients(&ns);
    let (id, port) = d.listen("127.0.0.1", 0, 10, false);
    connect(&mut d, id, "127.0.0.1");
    let (r, _) = report(&ns, &["--no-queue-wait"]);
    let listener = row(&r, "127.0.0.1", port, None);
    assert_eq!(int(&listener["fields"]["queue_depth"]), 1, "{listener}");
    assert_eq!(wait(listener), None, "{listener}");
    let (r, _) = report(&ns, &[]);
    assert!(wait(row(&r, "127.0.0.1", port, None)).is_some());
}
