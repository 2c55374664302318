//! acceptq: per-listener TCP accept-queue depth, limit, peaks and drops, read from the kernel
//! (netlink sock_diag, /proc) and written for Telegraf, collectd, InfluxDB and Prometheus.

pub mod caps;
pub mod check;
pub mod cli;
pub mod encode;
pub mod filter;
pub mod metric;
pub mod output;
pub mod report;
pub mod reporter;
pub mod run;
pub mod sampler;
pub mod snapshot;
pub mod source;
pub mod state;
pub mod top;
pub mod verdict;
pub mod warn;
pub mod watch;

/// The property tests' settings (`mod prop` beside each parser and encoder): `cases` cases from
/// a fixed seed, so every run, CI's included, tries the same inputs and a failure comes back on
/// the next run. PROPTEST_RNG_SEED and PROPTEST_CASES choose others, for a longer hunt by hand.
/// No regression files are written into the tree: a failing case worth keeping becomes a plain
/// unit test.
#[cfg(test)]
pub(crate) fn prop_config(cases: u32) -> proptest::test_runner::Config {
    use proptest::test_runner::{Config, RngSeed};
    let mut config = Config::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases;
    }
    if config.rng_seed == RngSeed::Random {
        config.rng_seed = RngSeed::Fixed(0x0061_6363_6570_7471);
    }
    config.failure_persistence = None;
    config
}
