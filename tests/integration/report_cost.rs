//! A long-running report allocates nothing per row: the reporter the binary runs, in every
//! format, over ~1 000 listeners of our own, counted by the allocator of `sampler_cost` (one
//! `#[global_allocator]` serves the whole binary). Needs no root and no namespace: it reads the
//! namespace the test runs in, so a report in which another process opened or closed a listener
//! is measured again instead of counted.

use clap::Parser;

use acceptq::cli::Args;
use acceptq::reporter::Reporter;

use crate::sampler_cost::{allocations, listeners};
use crate::support::{note, tests};

tests![a_report_allocates_nothing_per_row_in_any_format];

const WARM_UP: usize = 5;
const MEASURED: usize = 20;
const ROUNDS: usize = 5;
/// What one report may allocate whatever its size: a few buffers per reading (the sorted
/// sockets, the rows, the next report's counter tables, the dump's per-report maps), and the
/// queue-wait and SYN-queue dumps' own maps when another test's client sits in some queue of
/// this shared namespace (45 seen once as nobody in CI, other tests running beside it). One
/// allocation per row would be over 1 000.
const PER_REPORT: u64 = 64;

fn a_report_allocates_nothing_per_row_in_any_format() {
    let held = listeners();
    for format in ["influx", "prometheus", "collectd", "json"] {
        let args = Args::parse_from([
            "acceptq",
            "--format",
            format,
            "--sample",
            "0",
            "--no-process",
        ]);
        let mut reporter = Reporter::new(&args).expect("reporter");
        for _ in 0..WARM_UP {
            reporter.collect();
        }
        let (most, rows) = steady(format, &mut reporter);
        note!("{format}: at most {most} allocations in a report of {rows} lines");
        assert!(
            rows >= held.len(),
            "{format}: {rows} lines for {} listeners",
            held.len()
        );
        assert!(
            most <= PER_REPORT,
            "{format}: a report of {rows} lines allocated {most} times (at most {PER_REPORT} allowed, whatever the rows)"
        );
    }
}

/// The most allocations of one report over [`MEASURED`] reports in which the listeners stayed
/// the same, and the lines of the last report.
fn steady(format: &str, reporter: &mut Reporter) -> (u64, usize) {
    for round in 0..ROUNDS {
        let before = reporter.socket_inodes();
        let mut most = 0;
        let mut stable = true;
        for _ in 0..MEASURED {
            let start = allocations();
            reporter.collect();
            most = most.max(allocations() - start);
            stable &= reporter.socket_inodes() == before;
        }
        if stable {
            let lines = reporter.encoded().iter().filter(|b| **b == b'\n').count();
            return (most, lines);
        }
        note!("{format}: round {round}: listeners changed under us, measuring again");
    }
    panic!("{format}: the set of listeners kept changing over {ROUNDS} rounds");
}
