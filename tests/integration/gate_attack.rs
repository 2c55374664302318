//! The sampler's gate against the ways a child reaches an accept queue on a real host: an
//! IPv6 handshake (one PassiveOpens for both families), a SYN cookie's ACK, and bursts that
//! come and go between samples taken every 10 ms, where a counter read racing a child that is
//! counted but not yet queued would let a skipped sample hide a peak.

use std::time::{Duration, Instant};

use crate::support::*;

tests![
    an_ipv6_burst_after_skipped_samples_is_caught_as_the_peak,
    a_burst_answered_with_syn_cookies_after_skipped_samples_is_caught_as_the_peak,
    bursts_between_10ms_samples_are_each_caught_as_the_peak,
    a_namespace_watched_from_another_is_gated_on_its_own_counter,
    connections_migrated_from_a_closing_reuseport_socket_are_caught_as_the_peak
];

const DEBUG: (&str, &str) = ("ACCEPTQ_DEBUG_SAMPLER", "1");

/// The sampler's line at exit for its one namespace (under `ACCEPTQ_DEBUG_SAMPLER`).
pub(crate) fn sampler_line(stderr: &str) -> &str {
    stderr
        .lines()
        .find(|l| l.starts_with("D! [acceptq] sampler: netns "))
        .unwrap_or_else(|| panic!("no sampler counts on stderr: {stderr}"))
}

/// (samples, dumps) the sampler said at exit for its one namespace.
fn counts(stderr: &str) -> (u64, u64) {
    let line = sampler_line(stderr);
    assert!(line.ends_with("(gated)"), "{line}");
    let num = |word: &str| -> u64 {
        let before = line.split(word).next().unwrap();
        before.split_whitespace().last().unwrap().parse().unwrap()
    };
    (num(" samples"), num(" dumps"))
}

/// Accepts until `n` connections were taken, for at most 4 s.
pub(crate) fn accept_all(d: &mut Driver, id: usize, n: usize) -> usize {
    let start = Instant::now();
    let mut accepted = d.accept(id);
    while accepted < n && start.elapsed() < Duration::from_secs(4) {
        std::thread::sleep(Duration::from_millis(10));
        accepted += d.accept(id);
    }
    accepted
}

/// `n` connections to listener `id` after a second in which the gate let samples pass, held
/// queued for `hold`, then accepted: only the sampler can have seen them queued.
fn burst_after_quiet(
    ns: &Netns,
    d: &mut Driver,
    id: usize,
    port: u16,
    n: usize,
    sample: &str,
    hold: Duration,
) -> (Json, (u64, u64)) {
    let live = Live::start_env(ns, &["--sample", sample], &[DEBUG]);
    burst_watched(live, d, id, port, n, hold)
}

/// [`burst_after_quiet`] seen by `live`, wherever it runs.
fn burst_watched(
    mut live: Live,
    d: &mut Driver,
    id: usize,
    port: u16,
    n: usize,
    hold: Duration,
) -> (Json, (u64, u64)) {
    live.report();
    std::thread::sleep(Duration::from_millis(1000));
    d.connect(id, n);
    std::thread::sleep(hold);
    assert_eq!(accept_all(d, id, n), n);
    let f = listener(&live.report(), port)["fields"].clone();
    let (status, stderr) = live.finish();
    assert!(status.success(), "{stderr}");
    (f, counts(&stderr))
}

fn an_ipv6_burst_after_skipped_samples_is_caught_as_the_peak() {
    if !netns_gate("gate_attack::an_ipv6_burst_after_skipped_samples_is_caught_as_the_peak") {
        return;
    }
    let ns = Netns::new("gatev6");
    let mut d = ns.driver();
    // An IPv4 listener too: the namespace is not IPv6-only, and both families are dumped.
    d.listen("127.0.0.1", 0, 64, false);
    let (id, port) = d.listen("::1", 0, 64, false);
    let (f, (samples, dumps)) = burst_after_quiet(
        &ns,
        &mut d,
        id,
        port,
        30,
        "100ms",
        Duration::from_millis(300),
    );
    note!("{samples} samples, {dumps} dumps: {f}");
    assert!(
        int(&f["queue_depth_max"]) >= 27,
        "the IPv6 burst must show: {f}"
    );
    assert!(dumps + 5 <= samples, "the gate skipped the quiet second");
}

fn a_burst_answered_with_syn_cookies_after_skipped_samples_is_caught_as_the_peak() {
    if !netns_gate(
        "gate_attack::a_burst_answered_with_syn_cookies_after_skipped_samples_is_caught_as_the_peak",
    ) {
        return;
    }
    let ns = Netns::new("gatecookie");
    // Every SYN answered with a cookie: each child is made from the ACK (cookie_v4_check),
    // never from a request in the SYN queue.
    ns.sysctl("net.ipv4.tcp_syncookies", "2");
    let mut d = ns.driver();
    let (id, port) = d.listen("127.0.0.1", 0, 64, false);
    let before = ns.tcpext("SyncookiesRecv");
    let (f, (samples, dumps)) = burst_after_quiet(
        &ns,
        &mut d,
        id,
        port,
        30,
        "100ms",
        Duration::from_millis(300),
    );
    let cookies = ns.tcpext("SyncookiesRecv") - before;
    note!("{samples} samples, {dumps} dumps, {cookies} cookies: {f}");
    assert!(cookies >= 30, "the children came from cookies: {cookies}");
    assert!(int(&f["queue_depth_max"]) >= 27, "the burst must show: {f}");
    assert!(dumps + 5 <= samples, "the gate skipped the quiet second");
}

fn bursts_between_10ms_samples_are_each_caught_as_the_peak() {
    if !netns_gate("gate_attack::bursts_between_10ms_samples_are_each_caught_as_the_peak") {
        return;
    }
    let ns = Netns::new("gatefast");
    let mut d = ns.driver();
    let (id, port) = d.listen("127.0.0.1", 0, 128, false);
    let mut live = Live::start_env(&ns, &["--sample", "10ms"], &[DEBUG]);
    live.report();
    let mut missed = Vec::new();
    for round in 0..12 {
        // Quiet long enough for the gate to settle (two dumps at an unchanged counter), so
        // each burst lands on skipped samples.
        std::thread::sleep(Duration::from_millis(80));
        let n = 5 + round;
        d.connect(id, n);
        // Several samples' worth of time queued, then gone before the report.
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(accept_all(&mut d, id, n), n);
        let f = listener(&live.report(), port)["fields"].clone();
        if int(&f["queue_depth_max"]) < n as u64 - 1 {
            missed.push((n, f));
        }
    }
    let (status, stderr) = live.finish();
    assert!(status.success(), "{stderr}");
    let (samples, dumps) = counts(&stderr);
    note!("{samples} samples, {dumps} dumps");
    assert!(missed.is_empty(), "bursts the sampler missed: {missed:?}");
    assert!(dumps < samples, "the gate skipped samples between bursts");
}

fn a_namespace_watched_from_another_is_gated_on_its_own_counter() {
    if !netns_gate("gate_attack::a_namespace_watched_from_another_is_gated_on_its_own_counter") {
        return;
    }
    let ns = Netns::new("gatewatched");
    // acceptq runs in a namespace of its own where no connection is ever made: a gate that read
    // its own namespace's counter instead of the watched one's would skip every sample.
    let outside = Netns::new("gateoutside");
    let mut d = ns.driver();
    let (id, port) = d.listen("127.0.0.1", 0, 64, false);
    let live = Live::start_env(
        &outside,
        &["--sample", "100ms", "--netns", &ns.name],
        &[DEBUG],
    );
    let (f, (samples, dumps)) =
        burst_watched(live, &mut d, id, port, 30, Duration::from_millis(300));
    note!("{samples} samples, {dumps} dumps: {f}");
    assert!(int(&f["queue_depth_max"]) >= 27, "the burst must show: {f}");
    assert!(dumps + 5 <= samples, "the gate skipped the quiet second");
}

fn connections_migrated_from_a_closing_reuseport_socket_are_caught_as_the_peak() {
    let test =
        "gate_attack::connections_migrated_from_a_closing_reuseport_socket_are_caught_as_the_peak";
    if !netns_gate(test) {
        return;
    }
    let ns = Netns::new("gatemigrate");
    let migrates = ns
        .cmd("sysctl", &["-qw", "net.ipv4.tcp_migrate_req=1"])
        .status()
        .is_ok_and(|s| s.success());
    if !skip_unless(
        migrates,
        test,
        "needs net.ipv4.tcp_migrate_req (Linux 5.14+)",
    ) {
        return;
    }
    let mut d = ns.driver();
    let (a, port) = d.listen("127.0.0.1", 0, 64, true);
    let (b, _) = d.listen("127.0.0.1", port, 64, true);
    let mut live = Live::start_env(&ns, &["--sample", "100ms", "--per-socket"], &[DEBUG]);
    live.report();
    d.connect(a, 20);
    assert!(
        wait_for(Duration::from_secs(5), || (queued(&ns, port) == 20)
            .then_some(()))
        .is_some(),
        "20 connections queued"
    );
    // Long enough for a whole dump at a still counter (one every 10 samples while a queue is
    // busy): a gate blind to the queued connections would be skipping by now.
    std::thread::sleep(Duration::from_millis(1500));
    let before = ns.tcpext("TCPMigrateReqSuccess");
    // Closing a moves its queued connections to b: no handshake, no PassiveOpens.
    d.send(&format!("close {a}"));
    std::thread::sleep(Duration::from_millis(400));
    let migrated = ns.tcpext("TCPMigrateReqSuccess") - before;
    assert_eq!(accept_all(&mut d, b, 20), 20, "every connection reached b");
    let f = listener(&live.report(), port)["fields"].clone();
    let (status, stderr) = live.finish();
    assert!(status.success(), "{stderr}");
    note!("{migrated} migrated: {f}");
    assert!(migrated > 0, "some connections were queued on a");
    // b held all 20 only after the migration: a sample must have seen it.
    assert_eq!(int(&f["queue_depth_max"]), 20, "{f}");
}
