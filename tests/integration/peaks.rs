//! Peaks between reports: bursts shorter than the report interval still show.

use std::time::{Duration, Instant};

use crate::support::*;

tests![
    a_400ms_burst_inside_a_5s_interval_shows_as_the_peak,
    full_ratio_rises_while_full_and_returns_to_zero_once_drained,
    without_sampling_the_peak_is_the_report_reading
];

fn fields(report: &[Json], port: u16) -> Json {
    listener(report, port)["fields"].clone()
}

fn a_400ms_burst_inside_a_5s_interval_shows_as_the_peak() {
    if !netns_gate("peaks::a_400ms_burst_inside_a_5s_interval_shows_as_the_peak") {
        return;
    }
    let ns = Netns::new("burst");
    let mut d = ns.driver();
    let (id, port) = d.listen("127.0.0.1", 0, 64, false);
    let mut live = Live::start(&ns, &["--sample", "100ms"]);
    let start = Instant::now();
    let base = live.report();
    assert_eq!(int(&fields(&base, port)["queue_depth"]), 0);

    std::thread::sleep(Duration::from_millis(1000));
    d.connect(id, 40);
    std::thread::sleep(Duration::from_millis(400));
    let mut accepted = d.accept(id);
    // Late handshakes (none expected on loopback) would otherwise leave a residue.
    while accepted < 40 && start.elapsed() < Duration::from_secs(4) {
        std::thread::sleep(Duration::from_millis(20));
        accepted += d.accept(id);
    }
    assert_eq!(accepted, 40);
    std::thread::sleep(Duration::from_secs(5).saturating_sub(start.elapsed()));

    let report = live.report();
    let f = fields(&report, port);
    assert_eq!(int(&f["queue_depth"]), 0, "{f}");
    assert!(int(&f["queue_depth_max"]) >= 36, "the burst must show: {f}");
    assert_eq!(
        f["queue_full_ratio"].as_f64(),
        Some(0.0),
        "64 never filled: {f}"
    );

    // The next interval saw no burst: the peak was reset by the report.
    let next = live.report();
    assert_eq!(int(&fields(&next, port)["queue_depth_max"]), 0);
}

fn full_ratio_rises_while_full_and_returns_to_zero_once_drained() {
    if !netns_gate("peaks::full_ratio_rises_while_full_and_returns_to_zero_once_drained") {
        return;
    }
    let ns = Netns::new("ratio");
    let mut d = ns.driver();
    let (id, port) = d.listen("127.0.0.1", 0, 4, false);
    let mut live = Live::start(&ns, &["--sample", "100ms"]);
    let begun = Instant::now();
    live.report();

    d.connect(id, 12);
    let connected = Instant::now();
    std::thread::sleep(Duration::from_secs(1));
    let asked = Instant::now();
    let full = live.report();
    let f = fields(&full, port);
    let ratio = f["queue_full_ratio"].as_f64().unwrap();
    // Full from the first sample after the connects to the report: 1 s of an interval that is
    // 1 s too on a quiet machine, longer on a loaded one (the connects, the reports slowed).
    let full_share = (asked - connected).as_secs_f64() / begun.elapsed().as_secs_f64();
    note!(
        "full for {:.0}% of the interval at most",
        full_share * 100.0
    );
    assert!(
        (0.5 * full_share..=1.0).contains(&ratio),
        "held full for 1 s: {f}"
    );
    assert_eq!(int(&f["queue_depth_max"]), 5, "listen(4) holds 5: {f}");

    // Drain: the clients go away (an RST each, so no SYN is retransmitted into the queue
    // later) and what they left queued is accepted.
    d.send("reset");
    let end = Instant::now() + Duration::from_millis(500);
    while Instant::now() < end {
        d.accept(id);
        std::thread::sleep(Duration::from_millis(50));
    }
    live.report(); // the interval in which it drained
    std::thread::sleep(Duration::from_millis(600));
    let drained = live.report();
    let f = fields(&drained, port);
    assert_eq!(f["queue_full_ratio"].as_f64(), Some(0.0), "{f}");
    assert_eq!(int(&f["queue_depth"]), 0);
}

fn without_sampling_the_peak_is_the_report_reading() {
    if !netns_gate("peaks::without_sampling_the_peak_is_the_report_reading") {
        return;
    }
    let (ns, _d, _, port) = queued_listener("nosample", 8, 3, false);
    assert!(wait_for(Duration::from_secs(5), || (queued(&ns, port) == 3)
        .then_some(()))
    .is_some());
    let out = ns.acceptq(&["--once", "--format", "json", "--sample", "0"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let f = fields(&json_lines(&out.stdout), port);
    assert_eq!(int(&f["queue_depth"]), 3);
    assert_eq!(int(&f["queue_depth_max"]), 3);
    assert_eq!(f["queue_full_ratio"].as_f64(), Some(0.0));
}
