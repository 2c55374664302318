//! Command-line flags and their validation.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Influx line protocol (Telegraf, InfluxDB)
    Influx,
    /// collectd exec plugin PUTVAL lines
    Collectd,
    /// Prometheus text format (node_exporter textfile collector)
    Prometheus,
    /// one JSON object per metric per line
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Signal {
    /// report every --interval
    None,
    /// report once per line read on stdin, exit on EOF (Telegraf inputs.execd signal = "STDIN")
    Stdin,
}

/// Per-listener TCP accept-queue depth, limit, peaks and drops, read from the kernel.
#[derive(Debug, Parser)]
#[command(name = "acceptq", version, about, long_about = None)]
pub struct Args {
    /// Output format
    #[arg(short, long, value_enum, default_value_t = Format::Influx)]
    pub format: Format,

    /// Time between reports [default: 10s; with --format collectd, $COLLECTD_INTERVAL]
    #[arg(short, long, value_name = "DUR", value_parser = parse_interval)]
    pub interval: Option<Duration>,

    /// What triggers a report
    #[arg(long, value_enum, default_value_t = Signal::None)]
    pub signal: Signal,

    /// Print one report and exit
    #[arg(long, conflicts_with = "signal")]
    pub once: bool,

    /// With --once: watch for DUR, then report peaks and deltas over that window
    #[arg(long, value_name = "DUR", requires = "once", value_parser = parse_interval)]
    pub window: Option<Duration>,

    /// Sample accept queues every DUR between reports for peaks; 0 turns sampling off
    #[arg(long, value_name = "DUR", default_value = "100ms", value_parser = parse_duration)]
    pub sample: Duration,

    /// Write each report to FILE atomically (temp file + rename) instead of stdout
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Report only this port (repeatable)
    #[arg(long = "port", value_name = "PORT")]
    pub ports: Vec<u16>,

    /// Do not report this port (repeatable)
    #[arg(long = "exclude-port", value_name = "PORT")]
    pub exclude_ports: Vec<u16>,

    /// Report only listeners whose address matches GLOB, e.g. 0.0.0.0, '10.*', '::' (repeatable)
    #[arg(long = "address", value_name = "GLOB")]
    pub addresses: Vec<String>,

    /// Report only listeners of processes whose name matches GLOB (repeatable)
    #[arg(long = "process", value_name = "GLOB")]
    pub processes: Vec<String>,

    /// One row per SO_REUSEPORT socket (tag socket=0..n-1) instead of one per address and port
    #[arg(long)]
    pub per_socket: bool,

    /// Report at most N listener rows: those dropping now first, then the deepest
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_listeners: u64,

    /// Do not look up the process owning each listener (skips the /proc walk)
    #[arg(long, conflicts_with = "processes")]
    pub no_process: bool,

    /// Tag listeners with the systemd unit or scope their process runs in (`unit`); off by
    /// default because container scopes change name with every container
    #[arg(long, conflicts_with = "no_process")]
    pub unit: bool,

    /// Do not count half-open (SYN queue) requests per listener
    #[arg(long)]
    pub no_syn_queue: bool,

    /// Watch this network namespace instead of our own: a name from `ip netns` or a path such
    /// as /proc/PID/ns/net (repeatable; needs CAP_SYS_ADMIN)
    #[arg(long = "netns", value_name = "NAME|PATH")]
    pub netns: Vec<String>,

    /// Watch our own namespace and every named one (/run/netns)
    #[arg(long, conflicts_with = "netns")]
    pub all_netns: bool,

    /// Host name in collectd identifiers [default: $COLLECTD_HOSTNAME, else the system's]
    #[arg(long, value_name = "NAME")]
    pub hostname: Option<String>,

    /// Add tag KEY=VALUE to every row, in every format (repeatable), e.g. --tag host=$(hostname)
    /// for InfluxDB; with --format collectd only `host`, the identifier's host
    #[arg(long = "tag", value_name = "KEY=VALUE", value_parser = crate::metric::parse_user_tag)]
    pub tags: Vec<(String, String)>,
}

/// Longer than any sensible interval, and short enough that no deadline arithmetic overflows.
const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

/// Parses `100ms`, `10s`, `1.5s`, `2m`, `1h`, or a bare number of seconds (`10`, `10.000` as
/// collectd's `COLLECTD_INTERVAL` has it).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration: use e.g. 100ms, 10s, 1m"))?;
    let scale = match unit {
        "" | "s" => 1.0,
        "ms" => 1e-3,
        "us" | "µs" => 1e-6,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return Err(format!("{s:?}: unknown unit {unit:?}; use ms, s, m or h")),
    };
    let d =
        Duration::try_from_secs_f64(value * scale).map_err(|_| format!("{s:?} is out of range"))?;
    if d > MAX_DURATION {
        return Err(format!("{s:?} is too long: at most 24h"));
    }
    Ok(d)
}

/// A duration that must be positive: an interval or window of 0 would spin.
pub fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < Duration::from_millis(1) {
        return Err(format!("{s:?} is too short: at least 1ms"));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("100ms"), Ok(Duration::from_millis(100)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("10.000"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("10 parsecs").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("1e400").is_err());
        assert!(parse_duration("10000000000000000000").is_err());
        assert_eq!(parse_duration("24h"), Ok(MAX_DURATION));
        assert!(parse_duration("25h").is_err());
        assert!(parse_interval("0s").is_err());
    }

    #[test]
    fn flags_parse_and_conflict() {
        let a = Args::try_parse_from([
            "acceptq", "--once", "--window", "5s", "--port", "80", "--port", "443",
        ])
        .unwrap();
        assert_eq!(a.window, Some(Duration::from_secs(5)));
        assert_eq!(a.ports, vec![80, 443]);
        assert!(
            Args::try_parse_from(["acceptq", "--window", "5s"]).is_err(),
            "--window needs --once"
        );
        assert!(Args::try_parse_from(["acceptq", "--once", "--signal", "stdin"]).is_err());
        assert!(Args::try_parse_from(["acceptq", "--max-listeners", "0"]).is_err());
        assert!(Args::try_parse_from(["acceptq", "--port", "70000"]).is_err());
        assert!(Args::try_parse_from(["acceptq", "--bogus"]).is_err());
        assert!(Args::try_parse_from(["acceptq", "--interval", "0"]).is_err());
        assert!(Args::try_parse_from(["acceptq", "--no-process", "--process", "x"]).is_err());
    }
}
