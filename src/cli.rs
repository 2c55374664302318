//! Command-line flags and their validation.

use std::ffi::OsString;
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

/// The flags that choose what is watched, shared by the report and by `check` and `top`.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct Selection {
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

    /// Do not look up the process owning each listener (skips the /proc walk)
    #[arg(long, conflicts_with = "processes")]
    pub no_process: bool,

    /// Watch this network namespace instead of our own: a name from `ip netns` or a path such
    /// as /proc/PID/ns/net (repeatable; needs CAP_SYS_ADMIN)
    #[arg(long = "netns", value_name = "NAME|PATH", value_parser = clap::value_parser!(OsString))]
    pub netns: Vec<OsString>,

    /// Watch every network namespace on the host: ours, named ones (ip netns, Docker) and those
    /// of containers and pods, tagged with their container and pod
    #[arg(long, conflicts_with = "netns")]
    pub all_netns: bool,
}

/// Per-listener TCP accept-queue depth, limit, peaks and drops, read from the kernel.
#[derive(Debug, Parser)]
#[command(name = "acceptq", version, about, long_about = None, args_conflicts_with_subcommands = true)]
pub struct Args {
    /// Without a command, acceptq reports metrics for an agent (the flags below).
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Output format
    #[arg(short, long, value_enum, default_value_t = Format::Influx)]
    pub format: Format,

    /// Time between reports, at least 100ms [default: 10s; with --format collectd,
    /// $COLLECTD_INTERVAL]
    // Hyphen values reach the parser, which says why `-5s` is wrong instead of clap taking it
    // for an unknown flag.
    #[arg(short, long, value_name = "DUR", value_parser = parse_interval, allow_hyphen_values = true)]
    pub interval: Option<Duration>,

    /// What triggers a report
    #[arg(long, value_enum, default_value_t = Signal::None)]
    pub signal: Signal,

    /// Print one report and exit
    #[arg(long, conflicts_with = "signal")]
    pub once: bool,

    /// With --once: watch for DUR, then report peaks and deltas over that window
    #[arg(long, value_name = "DUR", requires = "once", value_parser = parse_window, allow_hyphen_values = true)]
    pub window: Option<Duration>,

    /// Sample accept queues every DUR (at least 10ms) between reports for peaks; 0 turns
    /// sampling off [default: 100ms]
    #[arg(long, value_name = "DUR", value_parser = parse_sample, allow_hyphen_values = true)]
    pub sample: Option<Duration>,

    /// Write each report to FILE atomically (temp file + rename) instead of stdout
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Which listeners and namespaces to watch
    #[command(flatten)]
    pub select: Selection,

    /// One row per SO_REUSEPORT socket (tag socket=0..n-1) instead of one per address and port
    #[arg(long)]
    pub per_socket: bool,

    /// Report at most N listener rows: those dropping now first, then the deepest
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_listeners: u64,

    /// Tag listeners with the systemd unit or scope their process runs in (`unit`); off by
    /// default because container scopes change name with every container
    #[arg(long, conflicts_with = "no_process")]
    pub unit: bool,

    /// Do not count half-open (SYN queue) requests per listener
    #[arg(long)]
    pub no_syn_queue: bool,

    /// Do not measure how long connections have waited in accept queues (`queue_wait_max`)
    #[arg(long)]
    pub no_queue_wait: bool,

    /// Host name in collectd identifiers [default: $COLLECTD_HOSTNAME, else the system's]
    #[arg(long, value_name = "NAME")]
    pub hostname: Option<String>,

    /// Add tag KEY=VALUE to every row, in every format (repeatable), e.g. --tag host=$(hostname)
    /// for InfluxDB; with --format collectd only `host`, the identifier's host
    #[arg(long = "tag", value_name = "KEY=VALUE", value_parser = crate::metric::parse_user_tag)]
    pub tags: Vec<(String, String)>,
}

/// Questions for a person at a terminal, beside the agent's reports.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Watch for a while, then say in plain words which queues overflowed, why, and what to
    /// change (exit 0 healthy, 1 a queue was full or dropped, 2 error)
    Check(CheckArgs),
    /// A live full-screen view of every listener, sorted by how full its queue is
    Top(TopArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CheckFormat {
    /// plain-language verdicts
    Text,
    /// the same verdicts as JSON objects, for scripts
    Json,
}

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// How long to watch before answering
    #[arg(short, long, value_name = "DUR", default_value = "10s", value_parser = parse_window, allow_hyphen_values = true)]
    pub duration: Duration,

    /// Sample accept queues every DUR (at least 10ms) while watching [default: 100ms]
    #[arg(long, value_name = "DUR", value_parser = parse_sample, allow_hyphen_values = true)]
    pub sample: Option<Duration>,

    /// Answer format
    #[arg(short, long, value_enum, default_value_t = CheckFormat::Text)]
    pub format: CheckFormat,

    /// Which listeners and namespaces to watch
    #[command(flatten)]
    pub select: Selection,
}

#[derive(Debug, clap::Args)]
pub struct TopArgs {
    /// Sample accept queues every DUR (at least 10ms) between screen refreshes [default: 100ms]
    #[arg(long, value_name = "DUR", value_parser = parse_sample, allow_hyphen_values = true)]
    pub sample: Option<Duration>,

    /// Time between screen refreshes
    #[arg(long, value_name = "DUR", default_value = "1s", value_parser = parse_interval, allow_hyphen_values = true)]
    pub refresh: Duration,

    /// Which listeners and namespaces to watch
    #[command(flatten)]
    pub select: Selection,
}

/// Longer than any sensible interval, and short enough that no deadline arithmetic overflows.
const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

/// The shortest `--interval`. A report dumps the SYN queue, which walks the kernel's whole
/// established hash (about 4 ms here, more on a big machine), and reads `/proc`: at 100 ms that
/// is a few percent of a core, and it is also the sampler's default period, so a shorter
/// interval would report faster than peaks are sampled.
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// The shortest `--sample` period other than 0 (off). Each sample is one netlink round trip
/// per namespace and family; below 10 ms the sampler would keep a core busy, and queues fill
/// over milliseconds of stalled `accept()`, not microseconds.
pub const MIN_SAMPLE: Duration = Duration::from_millis(10);

/// The sampler period when `--sample` is not given.
pub const DEFAULT_SAMPLE: Duration = Duration::from_millis(100);

/// Parses `100ms`, `10s`, `1.5s`, `2m`, `1h`, or a bare number of seconds (`10`, `10.000` as
/// collectd's `COLLECTD_INTERVAL` has it).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.starts_with('-') {
        return Err(format!("{s:?}: a duration cannot be negative"));
    }
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

/// The time between reports: at least [`MIN_INTERVAL`].
pub fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < MIN_INTERVAL {
        return Err(format!(
            "{s:?} is too short: at least 100ms (each report walks the kernel's connection table)"
        ));
    }
    Ok(d)
}

/// A `--window`: any positive length (0 would be a plain `--once`).
pub fn parse_window(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < Duration::from_millis(1) {
        return Err(format!("{s:?} is too short: at least 1ms"));
    }
    Ok(d)
}

/// A `--sample` period: 0 (off) or at least [`MIN_SAMPLE`].
pub fn parse_sample(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if !d.is_zero() && d < MIN_SAMPLE {
        return Err(format!(
            "{s:?} is too short: at least 10ms, or 0 to turn sampling off"
        ));
    }
    Ok(d)
}

/// How a duration is written back to the user (messages, `top`'s header): as they would type it.
pub fn show_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

impl Args {
    /// The sampler period, `--sample` or its default.
    pub fn sample_period(&self) -> Duration {
        self.sample.unwrap_or(DEFAULT_SAMPLE)
    }

    /// Refuses flags that would be accepted and then do nothing (exit status 2): a flag given is
    /// a flag the user expects to matter.
    // A flat list of independent checks, one per combination refused: longer than most, and
    // clearer whole than split.
    pub fn validate(&self) -> Result<(), String> {
        if self.interval.is_some() && self.once {
            return Err(
                "--interval does nothing with --once, which prints one report and exits; \
                        to watch for a while first, use --once --window DUR"
                    .into(),
            );
        }
        if self.interval.is_some() && self.signal == Signal::Stdin {
            return Err(
                "--interval does nothing with --signal stdin: each line on stdin asks \
                        for a report (Telegraf's interval)"
                    .into(),
            );
        }
        if self.hostname.is_some() && self.format != Format::Collectd {
            return Err(
                "--hostname names the host in collectd identifiers and does nothing without \
                 --format collectd (for Telegraf and InfluxDB the agent adds the host tag)"
                    .into(),
            );
        }
        if let Some(h) = self.hostname.as_deref() {
            if !crate::metric::is_collectd_host(h) {
                return Err(format!(
                    "--hostname {h:?}: {}",
                    crate::metric::COLLECTD_HOST_RULE
                ));
            }
        }
        self.select.validate()?;
        if let Some(sample) = self.sample.filter(|s| !s.is_zero()) {
            if self.once && self.window.is_none() {
                return Err(format!(
                    "--sample {} does nothing with a plain --once, which takes one reading; \
                     to sample for a while first, add --window DUR",
                    show_duration(sample)
                ));
            }
            let longer_than = match (self.interval, self.window) {
                (Some(i), _) if sample > i => Some(("--interval", i)),
                (_, Some(w)) if sample > w => Some(("--window", w)),
                _ => None,
            };
            if let Some((flag, d)) = longer_than {
                return Err(format!(
                    "--sample {} is longer than {flag} {}: no sample would fall between two \
                     readings; give a shorter --sample, or --sample 0 to turn sampling off",
                    show_duration(sample),
                    show_duration(d)
                ));
            }
        }
        Ok(())
    }
}

impl Selection {
    /// Refuses a filter that can match nothing.
    pub fn validate(&self) -> Result<(), String> {
        for (flag, ports) in [
            ("--port", &self.ports),
            ("--exclude-port", &self.exclude_ports),
        ] {
            if ports.contains(&0) {
                return Err(format!(
                    "{flag} 0 matches no listener: a listening socket has a port from 1 to 65535"
                ));
            }
        }
        Ok(())
    }

    /// The listener filters given, as flags (`--port 80 --address 10.*`), for messages.
    pub fn filter_flags(&self) -> Option<String> {
        let mut parts: Vec<String> = Vec::new();
        parts.extend(self.ports.iter().map(|p| format!("--port {p}")));
        parts.extend(
            self.exclude_ports
                .iter()
                .map(|p| format!("--exclude-port {p}")),
        );
        parts.extend(self.addresses.iter().map(|a| format!("--address {a}")));
        parts.extend(self.processes.iter().map(|p| format!("--process {p}")));
        (!parts.is_empty()).then(|| parts.join(" "))
    }
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
    fn durations_are_shown_as_typed_and_read_back_the_same() {
        for (d, shown) in [
            (1500, "1500ms"),
            (10_000, "10s"),
            (0, "0s"),
            (120_000, "120s"),
        ] {
            let d = Duration::from_millis(d);
            assert_eq!(show_duration(d), shown);
            assert_eq!(parse_duration(shown), Ok(d));
        }
    }

    /// Runs the parser and the validation as `main` does; the error text, or None.
    fn refused(args: &[&str]) -> Option<String> {
        let mut argv = vec!["acceptq"];
        argv.extend_from_slice(args);
        match Args::try_parse_from(argv) {
            Err(e) => Some(e.to_string()),
            Ok(a) => a.validate().err(),
        }
    }

    #[test]
    fn negative_durations_are_named_not_taken_for_flags() {
        let e = refused(&["--interval", "-5s"]).unwrap();
        assert!(e.contains("\"-5s\": a duration cannot be negative"), "{e}");
        assert!(!e.contains("unexpected argument"), "{e}");
        let e = refused(&["--sample", "-1ms"]).unwrap();
        assert!(e.contains("cannot be negative"), "{e}");
        let e = refused(&["--once", "--window", "-5s"]).unwrap();
        assert!(e.contains("cannot be negative"), "{e}");
    }

    #[test]
    fn interval_has_a_floor_of_100ms() {
        assert_eq!(parse_interval("100ms"), Ok(MIN_INTERVAL));
        assert_eq!(parse_interval("0.1"), Ok(MIN_INTERVAL));
        let e = refused(&["--interval", "1ms"]).unwrap();
        assert!(e.contains("\"1ms\" is too short: at least 100ms"), "{e}");
        assert!(refused(&["--interval", "99ms"]).is_some());
        assert_eq!(refused(&["--interval", "100ms"]), None);
    }

    #[test]
    fn sample_is_off_or_at_least_10ms() {
        assert_eq!(parse_sample("0"), Ok(Duration::ZERO));
        assert_eq!(parse_sample("10ms"), Ok(MIN_SAMPLE));
        let e = refused(&["--sample", "1us"]).unwrap();
        assert!(
            e.contains("\"1us\" is too short: at least 10ms, or 0 to turn sampling off"),
            "{e}"
        );
        assert!(refused(&["--sample", "9ms"]).is_some());
        assert_eq!(refused(&["--sample", "0"]), None);
        let a = Args::try_parse_from(["acceptq"]).unwrap();
        assert_eq!(a.sample_period(), DEFAULT_SAMPLE);
    }

    #[test]
    fn flags_that_would_do_nothing_are_refused() {
        let cases: [(&[&str], &str); 12] = [
            (
                &["--once", "--sample", "50ms"],
                "--sample 50ms does nothing with a plain --once",
            ),
            (
                &["--once", "--interval", "5s"],
                "--interval does nothing with --once",
            ),
            (
                &["--signal", "stdin", "--interval", "5s"],
                "--interval does nothing with --signal stdin",
            ),
            (
                &["--hostname", "web1"],
                "--hostname names the host in collectd identifiers",
            ),
            (
                &["--format", "json", "--hostname", "web1"],
                "does nothing without --format collectd",
            ),
            (&["--port", "0"], "--port 0 matches no listener"),
            (
                &["--format", "collectd", "--hostname", ""],
                "--hostname \"\": a collectd host is 1 to 127 bytes",
            ),
            (
                &["--format", "collectd", "--hostname", "web 1"],
                "--hostname \"web 1\": a collectd host",
            ),
            (
                &["--format", "collectd", "--hostname", "a/b"],
                "--hostname \"a/b\": a collectd host",
            ),
            (
                &["--exclude-port", "0"],
                "--exclude-port 0 matches no listener",
            ),
            (
                &["--interval", "10s", "--sample", "20s"],
                "--sample 20s is longer than --interval 10s",
            ),
            (
                &["--once", "--window", "1s", "--sample", "1500ms"],
                "--sample 1500ms is longer than --window 1s",
            ),
        ];
        for (args, want) in cases {
            let e = refused(args).unwrap_or_else(|| panic!("{args:?} accepted"));
            assert!(e.contains(want), "{args:?}: {e}");
        }
        for ok in [
            &["--format", "collectd", "--hostname", "web1"][..],
            &["--interval", "10s", "--sample", "10s"],
            &["--interval", "1s", "--sample", "0"],
            &["--once", "--window", "50ms"],
            &["--signal", "stdin", "--sample", "1s"],
            &["--port", "1", "--exclude-port", "65535"],
        ] {
            assert_eq!(refused(ok), None, "{ok:?}");
        }
    }

    #[test]
    fn filter_flags_name_what_was_given() {
        let a = Args::try_parse_from(["acceptq"]).unwrap();
        assert_eq!(a.select.filter_flags(), None);
        let a = Args::try_parse_from([
            "acceptq",
            "--port",
            "80",
            "--address",
            "10.*",
            "--process",
            "nginx",
        ])
        .unwrap();
        assert_eq!(
            a.select.filter_flags().as_deref(),
            Some("--port 80 --address 10.* --process nginx")
        );
    }

    #[test]
    fn flags_parse_and_conflict() {
        let a = Args::try_parse_from([
            "acceptq", "--once", "--window", "5s", "--port", "80", "--port", "443",
        ])
        .unwrap();
        assert_eq!(a.window, Some(Duration::from_secs(5)));
        assert_eq!(a.select.ports, vec![80, 443]);
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

#[cfg(test)]
mod prop {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(crate::prop_config(512))]

        #[test]
        fn any_text_is_refused_or_a_duration_within_a_day(s in any::<String>()) {
            if let Ok(d) = parse_duration(&s) {
                prop_assert!(d <= MAX_DURATION);
            }
            for parse in [parse_interval, parse_window, parse_sample] {
                if let Ok(d) = parse(&s) {
                    prop_assert_eq!(parse_duration(&s), Ok(d));
                }
            }
        }

        #[test]
        fn durations_in_each_unit_read_as_written(n in 0u64..=86_400_000) {
            prop_assert_eq!(parse_duration(&format!("{n}ms")), Ok(Duration::from_millis(n)));
            let secs = n / 1000;
            prop_assert_eq!(parse_duration(&format!("{secs}s")), Ok(Duration::from_secs(secs)));
            prop_assert_eq!(parse_duration(&format!("{secs}")), Ok(Duration::from_secs(secs)));
            let mins = n / 60_000;
            prop_assert_eq!(parse_duration(&format!("{mins}m")), Ok(Duration::from_secs(mins * 60)));
        }

        #[test]
        fn a_shown_duration_reads_back_as_itself(ms in 0u64..=86_400_000) {
            let d = Duration::from_millis(ms);
            prop_assert_eq!(parse_duration(&show_duration(d)), Ok(d));
        }

        #[test]
        fn past_a_day_or_negative_is_refused(n in 86_400_001u64..u64::MAX / 2) {
            let (long, negative) = (format!("{n}ms"), format!("-{n}ms"));
            prop_assert!(parse_duration(&long).is_err());
            prop_assert!(parse_duration(&negative).is_err());
        }
    }
}
