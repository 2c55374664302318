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
