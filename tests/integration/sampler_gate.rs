//! The sampler's gate: a namespace whose accept queues were all empty at a trusted dump, and
//! whose `Tcp: PassiveOpens` has not moved since, is not dumped. Each test would fail if the
//! gate skipped a sample it must not (or, for the last, never skipped at all).

use std::time::{Duration, Instant};

use crate::support::*;

tests![
    a_burst_right_after_skipped_samples_is_caught_as_the_peak,
    a_queue_full_with_no_new_arrivals_counts_as_full_in_every_sample,
    a_listener_listening_again_with_a_smaller_backlog_is_right_at_the_next_report,
    an_idle_namespace_is_not_dumped_between_reports
];

const DEBUG: (&str, &str) = ("ACCEPTQ_DEBUG_SAMPLER", "1");

fn fields(report: &[Json], port: u16) -> Json {
    listener(report, port)["fields"].clone()
}

/// (samples, dumps) the sampler said at exit for its one namespace.
fn counts(stderr: &str) -> (u64, u64) {
    let line = stderr
        .lines()
        .find(|l| l.starts_with("D! [acceptq] sampler: netns "))
        .unwrap_or_else(|| panic!("no sampler counts on stderr: {stderr}"));
    let num = |word: &str| -> u64 {
        let before = line.split(word).next().unwrap();
        before.split_whitespace().last().unwrap().parse().unwrap()
    };
    assert!(line.ends_with("(gated)"), "{line}");
    (num(" samples"), num(" dumps"))
}

fn a_burst_right_after_skipped_samples_is_caught_as_the_peak() {
    if !netns_gate("sampler_gate::a_burst_right_after_skipped_samples_is_caught_as_the_peak") {
        return;
    }
    let ns = Netns::new("gateburst");
    let mut d = ns.driver();
    let (id, port) = d.listen("127.0.0.1", 0, 64, false);
    let mut live = Live::start_env(&ns, &["--sample", "100ms"], &[DEBUG]);
    live.report();
    // A second of nothing: the gate lets the samples pass.
    std::thread::sleep(Duration::from_millis(1000));
    let start = Instant::now();
    d.connect(id, 40);
    std::thread::sleep(Duration::from_millis(300));
    let mut accepted = d.accept(id);
    while accepted < 40 && start.elapsed() < Duration::from_secs(4) {
        std::thread::sleep(Duration::from_millis(20));
        accepted += d.accept(id);
    }
    assert_eq!(accepted, 40);
    let report = live.report();
    let f = fields(&report, port);
    assert_eq!(int(&f["queue_depth"]), 0, "{f}");
    assert!(int(&f["queue_depth_max"]) >= 36, "the burst must show: {f}");
    let (status, stderr) = live.finish();
    assert!(status.success(), "{stderr}");
    let (samples, dumps) = counts(&stderr);
    note!("{samples} samples, {dumps} dumps");
    // Skipped before the burst (about 10 idle samples), so the peak came from a dump the
    // counter's move let through.
    assert!(dumps + 5 <= samples, "{samples} samples, {dumps} dumps");
}

fn a_queue_full_with_no_new_arrivals_counts_as_full_in_every_sample() {
    if !netns_gate("sampler_gate::a_queue_full_with_no_new_arrivals_counts_as_full_in_every_sample")
    {
        return;
    }
    // listen(4) holds 5: exactly 5 clients fill it, and none is left to retry a SYN.
    let (ns, _d, _, port) = queued_listener("gatefull", 4, 5, false);
    assert!(
        wait_for(Duration::from_secs(5), || (queued(&ns, port) == 5)
            .then_some(()))
        .is_some(),
        "5 connections queued"
    );
    let mut live = Live::start_env(&ns, &["--sample", "100ms"], &[DEBUG]);
    live.report();
    std::thread::sleep(Duration::from_millis(2000));
    let report = live.report();
    let f = fields(&report, port);
    assert_eq!(int(&f["queue_depth"]), 5, "{f}");
    let ratio = f["queue_full_ratio"].as_f64().unwrap();
    assert!(ratio > 0.99, "full for the whole interval, no arrival: {f}");
    let (status, stderr) = live.finish();
    assert!(status.success(), "{stderr}");
    let (samples, dumps) = counts(&stderr);
    assert_eq!(samples, dumps, "a full queue is dumped every sample");
}

fn a_listener_listening_again_with_a_smaller_backlog_is_right_at_the_next_report() {
    if !netns_gate(
        "sampler_gate::a_listener_listening_again_with_a_smaller_backlog_is_right_at_the_next_report",
    ) {
        return;
    }
    let (ns, mut d, id, port) = queued_listener("gaterelisten", 16, 5, false);
    assert!(
        wait_for(Duration::from_secs(5), || (queued(&ns, port) == 5)
            .then_some(()))
        .is_some(),
        "5 connections queued"
    );
    let mut live = Live::start_env(&ns, &["--sample", "100ms"], &[DEBUG]);
    let before = fields(&live.report(), port);
    assert_eq!(
        (int(&before["queue_depth"]), int(&before["queue_limit"])),
        (5, 16),
        "{before}"
    );
    std::thread::sleep(Duration::from_millis(500));
    let f = fields(&live.report(), port);
    assert_eq!(f["queue_full_ratio"].as_f64(), Some(0.0), "{f}");
    // No connection arrives: only the limit changes, and the queue is now over it.
    d.send(&format!("backlog {id} 2"));
    std::thread::sleep(Duration::from_millis(1000));
    let f = fields(&live.report(), port);
    assert_eq!(int(&f["queue_limit"]), 2, "{f}");
    assert_eq!(int(&f["queue_depth"]), 5, "{f}");
    assert_eq!(int(&f["queue_depth_max"]), 5, "{f}");
    let ratio = f["queue_full_ratio"].as_f64().unwrap();
    // A queue that holds connections is dumped every sample, so the sampler saw it full from
    // the first sample after the listen().
    assert!(ratio >= 0.8, "full since the listen(), 1 s ago: {f}");
    let (status, stderr) = live.finish();
    assert!(status.success(), "{stderr}");
}

fn an_idle_namespace_is_not_dumped_between_reports() {
    if !netns_gate("sampler_gate::an_idle_namespace_is_not_dumped_between_reports") {
        return;
    }
    let ns = Netns::new("gateidle");
    let mut d = ns.driver();
    for _ in 0..20 {
        d.listen("127.0.0.1", 0, 128, false);
    }
    let mut live = Live::start_env(&ns, &["--sample", "100ms"], &[DEBUG]);
    live.report();
    std::thread::sleep(Duration::from_millis(2000));
    let report = live.report();
    assert_eq!(listener_rows(&report).len(), 20);
    let (status, stderr) = live.finish();
    assert!(status.success(), "{stderr}");
    let (samples, dumps) = counts(&stderr);
    note!("{samples} samples, {dumps} dumps");
    assert!(samples >= 15, "{samples} samples in 2 s at 100 ms");
    // The first dump reads the counter, the second is trusted; then nothing moves.
    assert!(dumps <= 3, "{samples} samples, {dumps} dumps");
}
