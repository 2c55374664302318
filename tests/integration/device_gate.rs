//! The sampler's first tier: a namespace whose devices all count what they receive before TCP
//! sees it (lo, veth) is let pass on the sum of their received packets, without reading
//! PassiveOpens. Each burst test would fail if that sum let a sample pass it must not; the
//! others show which tier decided, from the counts the sampler says at exit.

use std::io::Write;
use std::process::{Child, Command, Stdio};

use std::time::Duration;

use crate::gate_attack::{accept_all, sampler_line};
use crate::support::*;

tests![
    a_burst_over_lo_after_samples_passed_on_received_packets_is_caught_as_the_peak,
    a_burst_over_a_veth_from_another_namespace_after_samples_passed_on_received_packets_is_caught,
    a_namespace_with_a_device_of_an_unverified_kind_is_gated_on_passive_opens_alone,
    a_veth_added_to_a_settled_namespace_is_classified_and_a_burst_through_it_is_caught,
    a_veth_replaced_by_a_bridge_of_the_same_name_turns_the_device_tier_off,
    chatter_without_connections_leaves_samples_passed_on_passive_opens
];

const DEBUG: (&str, &str) = ("ACCEPTQ_DEBUG_SAMPLER", "1");

/// What the sampler said at exit of its one namespace.
struct Counts {
    samples: u64,
    dumps: u64,
    on_devices: u64,
    on_passive_opens: u64,
    line: String,
}

fn counts(stderr: &str) -> Counts {
    let line = sampler_line(stderr);
    assert!(line.ends_with("(gated)"), "{line}");
    let num = |word: &str| -> u64 {
        let before = line
            .split(word)
            .next()
            .unwrap_or_else(|| panic!("{word} in {line}"));
        before.split_whitespace().last().unwrap().parse().unwrap()
    };
    Counts {
        samples: num(" samples"),
        dumps: num(" dumps"),
        on_devices: num(" passed on received packets"),
        on_passive_opens: num(" on PassiveOpens"),
        line: line.to_string(),
    }
}

/// No IPv6 on the devices made later: no router solicitation or DAD packet moves the counters
/// during the test.
fn quiet_ipv6(ns: &Netns) {
    ns.sysctl("net.ipv6.conf.all.disable_ipv6", "1");
    ns.sysctl("net.ipv6.conf.default.disable_ipv6", "1");
}

/// A veth pair: `a`'s end 10.9.0.1/24, `b`'s 10.9.0.2/24, both up.
fn veth_between(a: &Netns, b: &Netns) {
    let ip = |args: &[&str]| {
        let out = Command::new("ip").args(args).output().unwrap();
        assert!(out.status.success(), "ip {args:?}: {out:?}");
    };
    ip(&[
        "-n", &a.name, "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", &b.name,
    ]);
    ip(&["-n", &a.name, "addr", "add", "10.9.0.1/24", "dev", "va"]);
    ip(&["-n", &b.name, "addr", "add", "10.9.0.2/24", "dev", "vb"]);
    ip(&["-n", &a.name, "link", "set", "va", "up"]);
    ip(&["-n", &b.name, "link", "set", "vb", "up"]);
}

/// `n` clients in `ns` connecting to `addr:port`, held open for `hold`, then gone.
fn clients_from(ns: &Netns, addr: &str, port: u16, n: usize, hold: Duration) -> Child {
    let script = "import socket, sys, time\n\
        cs = []\n\
        for _ in range(int(sys.argv[3])):\n\
        \x20   c = socket.socket(); c.setblocking(False)\n\
        \x20   try: c.connect((sys.argv[1], int(sys.argv[2])))\n\
        \x20   except BlockingIOError: pass\n\
        \x20   cs.append(c)\n\
        time.sleep(float(sys.argv[4]))\n";
    ns.cmd(
        "python3",
        &[
            "-c",
            script,
            addr,
            &port.to_string(),
            &n.to_string(),
            &hold.as_secs_f64().to_string(),
        ],
    )
    .stdin(Stdio::null())
    .spawn()
    .unwrap()
}

/// After a quiet second watched by `live`, 40 clients in `from` connect to `addr` (listener
/// `id` in `server`); all queued, held 300 ms more, then accepted: only the sampler can have
/// seen them queued. The burst must show as the peak; the sampler's counts.
fn burst_after_quiet(
    mut live: Live,
    (server, d, id): (&Netns, &mut Driver, usize),
    (from, addr, port): (&Netns, &str, u16),
) -> Counts {
    live.report();
    std::thread::sleep(Duration::from_millis(1000));
    let _clients = Reaped(clients_from(from, addr, port, 40, Duration::from_secs(5)));
    assert!(
        wait_for(Duration::from_secs(5), || (queued(server, port) == 40)
            .then_some(()))
        .is_some(),
        "40 connections queued"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(accept_all(d, id, 40), 40);
    let f = listener(&live.report(), port)["fields"].clone();
    let (status, stderr) = live.finish();
    assert!(status.success(), "{stderr}");
    let c = counts(&stderr);
    note!("{}", c.line);
    assert!(int(&f["queue_depth_max"]) >= 36, "the burst must show: {f}");
    c
}

/// acceptq sampling `ns` every 100 ms, saying its sampler's counts at exit.
fn sampled(ns: &Netns) -> Live {
    Live::start_env(ns, &["--sample", "100ms"], &[DEBUG])
}

fn a_burst_over_lo_after_samples_passed_on_received_packets_is_caught_as_the_peak() {
    if !netns_gate("device_gate::a_burst_over_lo_after_samples_passed_on_received_packets_is_caught_as_the_peak") {
        return;
    }
    let ns = Netns::new("devlo");
    quiet_ipv6(&ns);
    let mut d = ns.driver();
    let (id, port) = d.listen("127.0.0.1", 0, 64, false);
    let live = sampled(&ns);
    let c = burst_after_quiet(live, (&ns, &mut d, id), (&ns, "127.0.0.1", port));
    assert!(c.line.contains("devices count live"), "{}", c.line);
    // The quiet second passed on the devices' counter alone, so the peak came from a dump
    // their move let through.
    assert!(c.on_devices >= 5, "{}", c.line);
}

fn a_burst_over_a_veth_from_another_namespace_after_samples_passed_on_received_packets_is_caught() {
    if !netns_gate("device_gate::a_burst_over_a_veth_from_another_namespace_after_samples_passed_on_received_packets_is_caught") {
        return;
    }
    let server = Netns::new("devvs");
    let client = Netns::new("devvc");
    quiet_ipv6(&server);
    quiet_ipv6(&client);
    veth_between(&server, &client);
    let mut d = server.driver();
    let (id, port) = d.listen("10.9.0.1", 0, 64, false);
    let live = sampled(&server);
    let c = burst_after_quiet(live, (&server, &mut d, id), (&client, "10.9.0.1", port));
    assert!(c.line.contains("devices count live"), "{}", c.line);
    assert!(c.on_devices >= 5, "{}", c.line);
}

fn a_namespace_with_a_device_of_an_unverified_kind_is_gated_on_passive_opens_alone() {
    if !netns_gate("device_gate::a_namespace_with_a_device_of_an_unverified_kind_is_gated_on_passive_opens_alone") {
        return;
    }
    let ns = Netns::new("devbr");
    quiet_ipv6(&ns);
    // A bridge: software, but not among the kinds read in the kernel's source.
    let made = Command::new("ip")
        .args(["-n", &ns.name, "link", "add", "br0", "type", "bridge"])
        .output()
        .unwrap();
    if !skip_unless(
        made.status.success(),
        "device_gate::a_namespace_with_a_device_of_an_unverified_kind_is_gated_on_passive_opens_alone",
        "needs `ip link add type bridge`",
    ) {
        return;
    }
    let mut d = ns.driver();
    let (id, port) = d.listen("127.0.0.1", 0, 64, false);
    let live = sampled(&ns);
    let c = burst_after_quiet(live, (&ns, &mut d, id), (&ns, "127.0.0.1", port));
    assert!(
        c.line.contains("a device of a kind not verified"),
        "{}",
        c.line
    );
    assert_eq!(c.on_devices, 0, "{}", c.line);
    // PassiveOpens still lets the quiet second pass.
    assert!(c.on_passive_opens >= 5, "{}", c.line);
}

fn a_veth_added_to_a_settled_namespace_is_classified_and_a_burst_through_it_is_caught() {
    if !netns_gate("device_gate::a_veth_added_to_a_settled_namespace_is_classified_and_a_burst_through_it_is_caught") {
        return;
    }
    let server = Netns::new("devadd");
    let client = Netns::new("devaddc");
    quiet_ipv6(&server);
    quiet_ipv6(&client);
    let mut d = server.driver();
    let (id, port) = d.listen("0.0.0.0", 0, 64, false);
    let mut live = sampled(&server);
    live.report();
    // Settled on lo alone, then a device comes.
    std::thread::sleep(Duration::from_millis(1000));
    veth_between(&server, &client);
    let c = burst_after_quiet(live, (&server, &mut d, id), (&client, "10.9.0.1", port));
    // Classified again with the veth, and let samples pass on it after.
    assert!(c.line.contains("devices count live"), "{}", c.line);
    assert!(c.on_devices >= 10, "{}", c.line);
}

fn a_veth_replaced_by_a_bridge_of_the_same_name_turns_the_device_tier_off() {
    if !netns_gate(
        "device_gate::a_veth_replaced_by_a_bridge_of_the_same_name_turns_the_device_tier_off",
    ) {
        return;
    }
    let server = Netns::new("devswap");
    let client = Netns::new("devswapc");
    quiet_ipv6(&server);
    quiet_ipv6(&client);
    veth_between(&server, &client);
    let mut d = server.driver();
    d.listen("10.9.0.1", 0, 64, false);
    let mut live = sampled(&server);
    live.report();
    std::thread::sleep(Duration::from_millis(1000));
    // One `ip` process, a few milliseconds: /proc/net/dev names the same devices before and
    // after, so only the link event tells the sampler.
    let mut batch = Command::new("ip")
        .args(["-n", &server.name, "-batch", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    batch
        .stdin
        .take()
        .unwrap()
        .write_all(b"link del va\nlink add va type bridge\n")
        .unwrap();
    let made = batch.wait().unwrap();
    if !skip_unless(
        made.success(),
        "device_gate::a_veth_replaced_by_a_bridge_of_the_same_name_turns_the_device_tier_off",
        "needs `ip link add type bridge`",
    ) {
        return;
    }
    std::thread::sleep(Duration::from_millis(1000));
    live.report();
    let (status, stderr) = live.finish();
    assert!(status.success(), "{stderr}");
    let c = counts(&stderr);
    note!("{}", c.line);
    assert!(
        c.line.contains("a device of a kind not verified"),
        "the bridge's counters prove nothing: {}",
        c.line
    );
    // The second after the swap passed on PassiveOpens.
    assert!(c.on_passive_opens >= 5, "{}", c.line);
}

fn chatter_without_connections_leaves_samples_passed_on_passive_opens() {
    if !netns_gate(
        "device_gate::chatter_without_connections_leaves_samples_passed_on_passive_opens",
    ) {
        return;
    }
    let ns = Netns::new("devchat");
    quiet_ipv6(&ns);
    let mut d = ns.driver();
    for _ in 0..20 {
        d.listen("127.0.0.1", 0, 128, false);
    }
    let mut live = sampled(&ns);
    live.report();
    std::thread::sleep(Duration::from_millis(500));
    // 40 UDP datagrams over lo, one each 50 ms: the devices' counter moves every sample, no
    // connection is made.
    let chatter = "import socket, time\n\
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
        for _ in range(40):\n\
        \x20   s.sendto(b'x', ('127.0.0.1', 9)); time.sleep(0.05)\n";
    let out = ns.cmd("python3", &["-c", chatter]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    live.report();
    let (status, stderr) = live.finish();
    assert!(status.success(), "{stderr}");
    let c = counts(&stderr);
    note!("{}", c.line);
    assert!(c.samples >= 20, "{}", c.line);
    assert!(c.dumps <= 4, "chatter is no reason to dump: {}", c.line);
    assert!(
        c.on_passive_opens >= 12,
        "the 2 s of chatter passed on PassiveOpens: {}",
        c.line
    );
}
