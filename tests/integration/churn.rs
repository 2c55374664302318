//! Listener churn under `--max-listeners`: memory, rows and deltas stay bounded and honest.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::support::*;

tests![churn_of_20000_listeners_keeps_memory_rows_and_deltas_bounded];

/// VmRSS / VmHWM of `pid` in kB.
fn vm_kb(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim_start_matches(':').split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
}

/// Peak RSS allowed during churn, in kB. Measured here with the debug build: VmHWM 6.4 MB,
/// VmRSS 5.4-6.3 MB over the run; the test prints its own numbers.
const CHURN_RSS_LIMIT_KB: u64 = 16 * 1024;

/// 20 000 listeners opened and closed over a minute by two processes (plus 150 steady ones,
/// 3 of them overflowing) while acceptq reports every second with `--max-listeners 100`: memory
/// stays bounded, every report has at most 100 rows and counts the rest, deltas are never
/// negative, never appear for a listener opened since the previous report, and equal the drops
/// gained for a listener seen in both reports.
fn churn_of_20000_listeners_keeps_memory_rows_and_deltas_bounded() {
    let test = "churn::churn_of_20000_listeners_keeps_memory_rows_and_deltas_bounded";
    if !netns_gate(test) || !skip_unless(have("ss"), test, "needs ss (iproute2)") {
        return;
    }
    let ns = Netns::new("who-churn");
    // Clients' ephemeral ports stay out of the listeners' range (20000-40999).
    ns.sysctl("net.ipv4.ip_local_port_range", "50000 60999");
    let tmp = TempDir::new("churn");
    let mut steady = Helper::start(&ns, "churn.py", &["steady", "20000", "150", "3", "6"]);
    steady.expect("ok");
    let busy = "sport >= :20000 and sport <= :20002";
    let full = wait_for(Duration::from_secs(5), || {
        let text = output_ok(&mut ns.cmd("ss", &["-tlnH", busy]));
        let depths: Vec<&str> = text
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1))
            .collect();
        (depths == ["2", "2", "2"]).then_some(())
    });
    assert!(full.is_some(), "the 3 busy steady listeners did not fill");

    let mut aq = Live::start(&ns, &["--sample", "100ms", "--max-listeners", "100"]);
    let pid = aq.pid();
    let mut reports: Vec<(Vec<Json>, u128)> = Vec::new();
    let now_ns = || {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    };
    let mut rss = Vec::new();
    reports.push((aq.report(), now_ns()));
    rss.push(vm_kb(pid, "VmRSS"));

    let logs: Vec<PathBuf> = (0..2)
        .map(|i| tmp.0.join(format!("churn{i}.log")))
        .collect();
    let mut churners: Vec<Helper> = logs
        .iter()
        .enumerate()
        .map(|(i, log)| {
            let first = (21_000 + 10_000 * i).to_string();
            Helper::start(
                &ns,
                "churn.py",
                &[
                    "churn",
                    &first,
                    "10000",
                    "250",
                    "1.5",
                    "70",
                    log.to_str().unwrap(),
                    "2",
                    "4",
                ],
            )
        })
        .collect();
    let start = Instant::now();
    let mut next = start;
    let mut running = true;
    while running {
        next += Duration::from_secs(1);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        reports.push((aq.report(), now_ns()));
        rss.push(vm_kb(pid, "VmRSS"));
        running = churners
            .iter_mut()
            .any(|c| c.child.try_wait().unwrap().is_none());
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "churn did not finish in 90 s"
        );
    }
    // Two more reports once the churn is over: the rows it left vanish.
    for _ in 0..2 {
        std::thread::sleep(Duration::from_secs(1));
        reports.push((aq.report(), now_ns()));
        rss.push(vm_kb(pid, "VmRSS"));
    }
    let hwm = vm_kb(pid, "VmHWM");
    let (status, stderr) = aq.finish();
    assert!(status.success(), "{status:?}: {stderr}");

    let mut opened_at: HashMap<u16, u128> = HashMap::new();
    let mut opened = 0;
    for (c, log) in churners.iter_mut().zip(&logs) {
        let w = c.expect("done");
        opened += w[0].parse::<usize>().unwrap();
        for line in std::fs::read_to_string(log).unwrap().lines() {
            let (p, t) = line.split_once(' ').unwrap();
            opened_at.insert(p.parse().unwrap(), t.parse().unwrap());
        }
    }
    assert_eq!(opened, 20_000, "the churn opened every listener");
    assert_eq!(opened_at.len(), 20_000);
    note!(
        "churn: {} reports in {:.1} s; VmRSS kB min {} max {} last {}; VmHWM {} kB",
        reports.len(),
        start.elapsed().as_secs_f64(),
        rss.iter().min().unwrap(),
        rss.iter().max().unwrap(),
        rss.last().unwrap(),
        hwm
    );
    assert!(
        hwm < CHURN_RSS_LIMIT_KB,
        "VmHWM {hwm} kB over {CHURN_RSS_LIMIT_KB} kB; VmRSS per report {rss:?}"
    );

    let mut first_omitted = None;
    let mut churn_rows = 0;
    let mut deltas_checked = 0;
    let mut positive_deltas = 0;
    let mut fresh_checked = 0;
    let steady_pid = u64::from(steady.child.id());
    for (n, (report, _)) in reports.iter().enumerate() {
        let rows = listener_rows(report);
        let netns = netns_row(report);
        assert!(rows.len() <= 100, "report {n}: {} rows", rows.len());
        let listeners = field(netns, "listeners").unwrap();
        let omitted = field(netns, "listeners_omitted").unwrap();
        assert_eq!(
            listeners,
            rows.len() as u64 + omitted,
            "report {n}: reported + omitted = all"
        );
        assert_eq!(rows.len() as u64, listeners.min(100), "report {n}");
        if omitted > 0 && first_omitted.is_none() {
            first_omitted = Some(omitted);
        }
        for m in report {
            for (k, v) in m["fields"].as_object().unwrap() {
                if k.ends_with("_delta") {
                    assert!(v.is_u64(), "report {n}: {k} = {v} in {m}");
                    assert!(n > 0, "report 0 has no previous values: {m}");
                }
            }
        }
        for row in &rows {
            let port = port_of(row).expect("port tag");
            if (20_000..20_150).contains(&port) && row["fields"].get("pid").is_some() {
                assert_eq!(field(row, "pid"), Some(steady_pid), "report {n}: {row}");
            }
        }
        for port in 20_000..20_003 {
            let row = listener(report, port);
            assert_eq!(field(row, "queue_depth"), Some(2), "report {n}: {row}");
            assert_eq!(field(row, "pid"), Some(steady_pid), "report {n}: {row}");
        }
        if n == 0 {
            continue;
        }
        let (prev, prev_seen) = &reports[n - 1];
        let prev_drops: HashMap<u16, Option<u64>> = listener_rows(prev)
            .iter()
            .map(|r| (port_of(r).expect("port tag"), field(r, "drops")))
            .collect();
        for row in &rows {
            let port = port_of(row).expect("port tag");
            let drops = field(row, "drops").expect("drops");
            let delta = field(row, "drops_delta");
            if opened_at.contains_key(&port) {
                churn_rows += 1;
            }
            if opened_at.get(&port).is_some_and(|t| t > prev_seen) {
                assert_eq!(
                    delta, None,
                    "report {n}: listener opened after the previous report has a delta: {row}"
                );
                fresh_checked += 1;
            }
            if let Some(Some(before)) = prev_drops.get(&port) {
                // Every port holds one socket in this test: same row, same socket.
                assert_eq!(
                    delta,
                    Some(drops - before),
                    "report {n}: seen before with drops {before}: {row}"
                );
                deltas_checked += 1;
            } else if let Some(d) = delta {
                assert!(d <= drops, "report {n}: {row}");
            }
            if delta.is_some_and(|d| d > 0) {
                positive_deltas += 1;
            }
        }
    }
    note!(
        "churn: {churn_rows} churned rows reported, {deltas_checked} deltas checked \
         exactly, {positive_deltas} positive, {fresh_checked} new listeners without a delta"
    );
    assert!(churn_rows > 100, "churned listeners were hardly reported");
    assert!(fresh_checked > 20, "too few new listeners reported");
    assert!(deltas_checked > 100 && positive_deltas > 0);

    let first_omitted = first_omitted.expect("150 steady listeners > --max-listeners 100");
    let said: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("--max-listeners"))
        .collect();
    assert_eq!(said.len(), 1, "said once: {stderr}");
    assert!(
        said[0].starts_with("W! ")
            && said[0].contains(&format!("{first_omitted} listener rows left out")),
        "{said:?}"
    );
    for line in stderr.lines() {
        assert!(
            line.starts_with("W! ") || line.starts_with("I! "),
            "{stderr}"
        );
    }
}
