//! One report, end to end: read every watched namespace, take the sampler's peaks, refresh
//! owners, build the metrics, encode, write. Built once from the flags; the run modes in
//! `run.rs` only decide when to call it.

use std::ffi::OsStr;
use std::io::{self, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Parser;

use crate::cli::{Args, Format, Signal};
use crate::encode::{
    collectd::Collectd, influx::Influx, json::JsonLines, prometheus::Prometheus, Encoder,
};
use crate::filter::Filter;
use crate::metric::{is_collectd_host, COLLECTD_HOST_RULE};
use crate::output::{self, Sink, Wake};
use crate::report::{self, Built, ReportOptions};
use crate::sampler::Sampler;
use crate::source::netns::{self, Netns};
use crate::source::owners::{self, OwnerCache};
use crate::source::Options;
use crate::state::{Peaks, Previous};
use crate::warn::{self, Warnings};
use crate::watch::WatchList;

const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);

/// A listener as its rows' tags name it: `netns` (when tagged), address, port, `interface`.
pub type SocketOf = (Option<String>, std::net::IpAddr, u16, Option<String>);

/// Why a run stopped early.
#[derive(Debug)]
pub enum RunError {
    /// A flag or environment value that cannot work; exit status 2.
    Usage(String),
    /// Something needed is missing or broken; exit status 1.
    Fatal(String),
}

impl From<netns::NetnsError> for RunError {
    fn from(e: netns::NetnsError) -> Self {
        RunError::Usage(e.to_string())
    }
}

/// What the report is built with, fixed by the flags.
struct Settings {
    filter: Filter,
    /// The filter flags given, for the warning when they match no listener.
    filter_flags: Option<String>,
    opts: ReportOptions,
    read_opts: Options,
    /// What is left when the filters match no listener, said in the warning.
    left_when_unmatched: &'static str,
    /// A plain `--once`: one report, and none after it to need its counters.
    one_report: bool,
}

impl Settings {
    /// `netns_tag`: more than one namespace is watched, so rows say which.
    fn from_args(args: &Args, netns_tag: bool) -> Self {
        let filter = Filter {
            ports: args.select.ports.clone(),
            exclude_ports: args.select.exclude_ports.clone(),
            addresses: args.select.addresses.clone(),
            processes: args.select.processes.clone(),
        };
        Settings {
            read_opts: Options {
                syn_queue: !args.no_syn_queue,
                queue_wait: !args.no_queue_wait,
                filter: filter.clone(),
            },
            filter,
            filter_flags: args.select.filter_flags(),
            opts: ReportOptions {
                per_socket: args.per_socket,
                max_listeners: usize::try_from(args.max_listeners).unwrap_or(usize::MAX),
                netns_tag,
                unit_tag: args.unit,
            },
            left_when_unmatched: "only acceptq_netns is reported",
            one_report: false,
        }
    }
}

/// Where a report goes, and whether writing has worked yet.
struct Output {
    encoder: Box<dyn Encoder>,
    sink: Sink,
    buf: Vec<u8>,
    /// The last report's metrics, built over by the next.
    built: Built,
    /// Reports written (or attempted): the first failure to write is fatal, later ones not.
    written: u64,
    /// The last write failed: the outage was said, and is not said again until writing works.
    failing: bool,
    /// collectd mode: the identifier's host, for the warnings each report carries as
    /// notifications.
    notify_host: Option<String>,
}

/// State carried from one report to the next.
#[derive(Default)]
struct Carried {
    /// What the sampler recorded since the last report, handed over at each report.
    shared_peaks: Arc<Mutex<Peaks>>,
    peaks: Peaks,
    prev: Previous,
    owners: Option<OwnerCache>,
}

pub struct Reporter {
    /// Time between reports in the interval modes.
    pub interval: Duration,
    namespaces: WatchList,
    carried: Carried,
    settings: Settings,
    output: Output,
    warnings: Warnings,
    /// Stops the sampler thread when the reporter goes.
    _sampler: Option<Sampler>,
}

impl Reporter {
    /// Checks the flags and the output, opens every namespace's sources and starts the sampler.
    /// Nothing is read before the output is known to be writable.
    pub fn new(args: &Args) -> Result<Reporter, RunError> {
        args.validate().map_err(RunError::Usage)?;
        let sink = args.output.as_deref().map_or_else(Sink::stdout, Sink::file);
        sink.check().map_err(|e| RunError::Fatal(e.to_string()))?;
        let mut warnings = Warnings::default();
        // collectd logs each stderr line as an error, and has notifications for warnings. Not
        // with --output: no collectd reads that file, and the next report would replace them.
        let notify = args.format == Format::Collectd && sink.is_stdout();
        if notify {
            warnings.hold_for_collectd();
        }
        let interval = resolve_interval(args, &mut warnings)?;
        let namespaces = resolve_namespaces(args)?;
        let (encoder, notify_host) = encoder(args, interval, &mut warnings)?;
        // A plain --once reports a single reading: there is nothing to sample between reports.
        let one_reading = args.once && args.window.is_none();
        let sampling = !args.sample_period().is_zero() && !one_reading;
        let targets = sampling.then(|| Arc::new(Mutex::new(Vec::new())));
        let mut reporter = Reporter {
            interval,
            namespaces: WatchList::new(args.select.all_netns, targets.clone()),
            carried: Carried {
                owners: (!args.select.no_process).then(OwnerCache::default),
                ..Carried::default()
            },
            settings: Settings {
                one_report: one_reading,
                ..Settings::from_args(args, args.select.all_netns || namespaces.len() > 1)
            },
            output: Output {
                encoder,
                sink,
                // Sized by the first report's encoder: a one-shot run copies nothing into it.
                buf: Vec::new(),
                built: Built::default(),
                written: 0,
                failing: false,
                notify_host: notify_host.filter(|_| notify),
            },
            warnings,
            _sampler: None,
        };
        // resolve_namespaces keeps the order of the --netns flags.
        let given = args.select.netns.iter().map(|s| netns::spec_path(s));
        let mut given = given.map(Some).chain(std::iter::repeat(None));
        for ns in namespaces {
            let name = ns.name.clone();
            let list = &mut reporter.namespaces;
            match given.next().flatten() {
                Some(path) => list.watch_given(ns, path, &mut reporter.warnings),
                None => list.watch(ns, &mut reporter.warnings),
            }
            .map_err(|e| RunError::Fatal(format!("netns {name}: cannot open its sources: {e}")))?;
        }
        if let Some(targets) = targets {
            let peaks = reporter.carried.shared_peaks.clone();
            match Sampler::start(targets, args.sample_period(), peaks) {
                Ok(s) => reporter._sampler = Some(s),
                Err(e) => reporter
                    .warnings
                    .once("sampler-start", format!("sampler off: {e}")),
            }
        }
        Ok(reporter)
    }

    /// Reads everything and leaves the encoded report in the output buffer: read → take peaks
    /// → refresh owners → build → encode. The metrics of the last report are built over, so a
    /// long run allocates nothing per row.
    pub fn collect(&mut self) {
        let mut built = std::mem::take(&mut self.output.built);
        self.read_into(&mut built);
        self.output.buf.clear();
        self.output
            .encoder
            .encode(&built.metrics, &mut self.output.buf);
        self.output.built = built;
    }

    /// Ends a one-shot run: its report's metrics are given back by the process's exit.
    pub fn end_one_shot(mut self) {
        std::mem::forget(std::mem::take(&mut self.output.built));
    }

    /// The report [`Self::collect`] left to write.
    pub fn encoded(&self) -> &[u8] {
        &self.output.buf
    }

    /// A reporter for a person at the terminal (`check`, `top`): the same reading, peaks and
    /// deltas as the agent's report, never encoded or written; the caller calls [`Self::read`].
    pub fn for_terminal(
        select: &crate::cli::Selection,
        sample: Option<Duration>,
        per_socket: bool,
    ) -> Result<Reporter, RunError> {
        let mut args = Args::parse_from(["acceptq", "--format", "json"]);
        args.select = select.clone();
        args.sample = sample;
        args.per_socket = per_socket;
        // A person asked about every listener: rows are never encoded, so no agent's limit
        // applies, and a listener left out of one reading would look closed in the next.
        args.max_listeners = u64::MAX;
        let mut reporter = Reporter::new(&args)?;
        reporter.settings.left_when_unmatched = "only the namespace counters are watched";
        Ok(reporter)
    }

    /// Reads everything and builds the rows: read → take peaks → refresh owners → build. Peaks
    /// and deltas cover the time since the previous call.
    pub fn read(&mut self) -> Built {
        let mut built = Built::default();
        self.read_into(&mut built);
        built
    }

    /// [`Self::read`] into the metrics of an earlier reading, reusing their memory.
    fn read_into(&mut self, built: &mut Built) {
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as i64)
            .unwrap_or(0);
        self.namespaces
            .read(&self.settings.read_opts, &mut self.warnings);
        self.take_peaks();
        self.refresh_owners();
        let readings = self.namespaces.readings();
        let empty = OwnerCache::default();
        let ctx = report::Context {
            peaks: &self.carried.peaks,
            owners: self.carried.owners.as_ref().unwrap_or(&empty),
            filter: &self.settings.filter,
            opts: &self.settings.opts,
            timestamp,
            last: self.settings.one_report,
        };
        report::build_into(&readings, &ctx, &mut self.carried.prev, built);
        let seen = readings.iter().map(|r| r.snap.sockets.len()).sum();
        self.warn_about_rows(built, seen);
    }

    /// The inodes of every listening socket of the latest reading, filtered or not, by the
    /// tags that name its listener's rows (`netns` when tagged, `address`, `port`,
    /// `interface`), sorted: a `--per-socket` row's `socket` tag is its index here. For a
    /// reader that must follow one socket across readings while its group's ranks shift.
    pub fn socket_inodes(&self) -> Vec<(SocketOf, u32)> {
        let mut out = Vec::new();
        for r in self.namespaces.readings() {
            let netns = self.settings.opts.netns_tag.then(|| r.name.to_string());
            for s in &r.snap.sockets {
                let interface = (s.ifindex != 0).then(|| {
                    let name = r.snap.interfaces.get(&s.ifindex);
                    crate::source::ifname::tag(s.ifindex, name.map(String::as_str))
                });
                out.push(((netns.clone(), s.addr, s.port, interface), s.inode));
            }
        }
        out.sort();
        out
    }

    /// Moves the sampler's peaks in and adds the report's own reading as one more sample, so
    /// peaks are right even with `--sample 0`.
    fn take_peaks(&mut self) {
        for news in self.namespaces.sampler_news() {
            self.warnings.now(&news);
        }
        let peaks = &mut self.carried.peaks;
        if let Ok(mut shared) = self.carried.shared_peaks.lock() {
            shared.take_into(peaks);
        }
        peaks.begin_sample();
        for r in self.namespaces.readings() {
            peaks.count_round(r.id);
            for s in &r.snap.sockets {
                peaks.observe(r.id, s.endpoint(), s.inode, s.depth, s.limit);
            }
        }
    }

    /// Looks up the owners of sockets not seen before (and of those whose owner moved on).
    fn refresh_owners(&mut self) {
        let Some(cache) = &mut self.carried.owners else {
            return;
        };
        let inodes: Vec<u32> = self
            .namespaces
            .readings()
            .iter()
            .flat_map(|r| r.snap.sockets.iter().map(|s| s.inode))
            .collect();
        let Some(denied) = cache.refresh(&inodes, owners::scan_proc) else {
            return;
        };
        let unresolved = inodes.iter().any(|i| *i != 0 && cache.get(*i).is_none());
        if denied > 0 && unresolved {
            self.warnings.once(
                "owners",
                format!(
                    "cannot read /proc/<pid>/fd of {denied} processes (running as uid {}): `process` and `pid` are left out for their sockets; grant CAP_DAC_READ_SEARCH and CAP_SYS_PTRACE to see them",
                    // SAFETY: getuid has no preconditions.
                    unsafe { libc::getuid() }
                ),
            );
        }
    }

    /// Says once when the filters matched nothing, or `--max-listeners` left rows out.
    fn warn_about_rows(&mut self, built: &Built, seen: usize) {
        if let Some(flags) = &self.settings.filter_flags {
            let matched = built.omitted
                + built
                    .metrics
                    .iter()
                    .filter(|m| m.name == crate::metric::LISTENER)
                    .count();
            if matched == 0 {
                self.warnings.once(
                    "no-match",
                    format!(
                        "no listener matches {flags} (listening sockets seen: {seen}): {}",
                        self.settings.left_when_unmatched
                    ),
                );
            }
        }
        if built.omitted > 0 {
            self.warnings.once(
                "max-listeners",
                format!(
                    "{} listener rows left out by --max-listeners {}: those dropping now, then the deepest, are reported; acceptq_netns.listeners_omitted counts them each report",
                    built.omitted, self.settings.opts.max_listeners
                ),
            );
        }
    }

    /// A warning of the run mode's, said where the reporter's own go (stderr, or with the next
    /// report as a collectd notification).
    pub fn warn_once(&mut self, key: &str, msg: String) {
        self.warnings.once(key, msg);
    }

    /// Whether reports go to stdout (whose reader may go away).
    pub fn to_stdout(&self) -> bool {
        self.output.sink.is_stdout()
    }

    /// Waits `limit`, or less when stdout (being written to) loses its reader.
    pub fn wait(&self, limit: Duration) -> Wake {
        output::wait(self.to_stdout(), None, Some(limit))
    }

    /// One report, written. `Ok(false)`: stdout is closed, time to exit quietly.
    pub fn report(&mut self) -> Result<bool, RunError> {
        self.collect();
        let out = &mut self.output;
        if let Some(host) = &out.notify_host {
            // In the report's own write, so no notification splits a PUTVAL line.
            self.warnings.take_notifications(host, &mut out.buf);
        }
        out.written += 1;
        match out.sink.write(&out.buf) {
            Ok(()) => {
                if std::mem::take(&mut out.failing) {
                    warn::info(&format!(
                        "{}: reports are written again",
                        out.sink.describe()
                    ));
                }
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(false),
            // A stop that came while the reader was not reading: ending was asked for.
            Err(_) if output::stop_requested() => Ok(false),
            // The first report proves the output works (and is the only one of --once).
            Err(e) if out.written == 1 => Err(RunError::Fatal(e.to_string())),
            Err(e) => {
                // Once per outage: a directory gone for an hour is one line, not one a report.
                if !std::mem::replace(&mut out.failing, true) {
                    warn::error(&format!(
                        "report not written: {e} (said once; acceptq keeps trying each report)"
                    ));
                }
                Ok(true)
            }
        }
    }
}

/// The encoder of `--format`, with the `--tag`s (for collectd: the identifier's host, also
/// returned for the notifications).
fn encoder(
    args: &Args,
    interval: Duration,
    warnings: &mut Warnings,
) -> Result<(Box<dyn Encoder>, Option<String>), RunError> {
    crate::metric::check_user_tags(&args.tags, args.format == Format::Collectd)
        .map_err(RunError::Usage)?;
    let tags = args.tags.clone();
    Ok(match args.format {
        Format::Influx => (Box::new(Influx::new(tags)), None),
        Format::Json => (Box::new(JsonLines::new(tags)), None),
        Format::Prometheus => (Box::new(Prometheus::new(tags)), None),
        Format::Collectd => {
            // Only `host` passes check_user_tags here: it is the identifier's host.
            let host = tags.into_iter().next().map(|(_, v)| v);
            if host.is_some() && args.hostname.is_some() {
                return Err(RunError::Usage(
                    "--tag host=... and --hostname both name the collectd host: give one".into(),
                ));
            }
            let host = host.unwrap_or_else(|| collectd_host(args, warnings));
            let encoder = Collectd::new(&host, interval);
            let host = encoder.host().to_string();
            (Box::new(encoder), Some(host))
        }
    })
}

/// `--interval`, else collectd's `COLLECTD_INTERVAL` in collectd mode, else 10 s.
fn resolve_interval(args: &Args, warnings: &mut Warnings) -> Result<Duration, RunError> {
    if args.signal == Signal::Stdin && args.format == Format::Collectd {
        return Err(RunError::Usage(
            "--signal stdin does not go with --format collectd: collectd closes our stdin at once; \
             acceptq reports every COLLECTD_INTERVAL on its own"
                .into(),
        ));
    }
    let mut interval = args.interval.unwrap_or(DEFAULT_INTERVAL);
    if args.interval.is_none() && args.format == Format::Collectd {
        if let Ok(v) = std::env::var("COLLECTD_INTERVAL") {
            match crate::cli::parse_interval(&v) {
                Ok(d) => interval = d,
                Err(e) => warnings.once(
                    "collectd-interval",
                    format!("COLLECTD_INTERVAL: {e}; using 10s"),
                ),
            }
        }
    }
    if let Some(sample) = args
        .sample
        .filter(|s| *s > interval && args.interval.is_none())
    {
        // The interval came from collectd, which would restart a refusing acceptq every
        // interval: warn instead.
        warnings.once(
            "sample-interval",
            format!(
                "--sample {sample:?} is longer than the interval ({interval:?}): peaks come from fewer samples than reports"
            ),
        );
    }
    Ok(interval)
}

fn collectd_host(args: &Args, warnings: &mut Warnings) -> String {
    let system = || {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "localhost".into())
    };
    pick_host(
        args.hostname.as_deref(),
        std::env::var_os("COLLECTD_HOSTNAME").as_deref(),
        system,
        warnings,
    )
}

/// The collectd host: `--hostname` (checked with the flags), else `$COLLECTD_HOSTNAME` (unset
/// when empty), else the system's. A host that cannot be a folder name is not quietly hashed:
/// a bad `$COLLECTD_HOSTNAME` is said and the system's used; a bad system name, the last
/// resort, is made safe with a hash, and said.
fn pick_host(
    flag: Option<&str>,
    env: Option<&OsStr>,
    system: impl FnOnce() -> String,
    warnings: &mut Warnings<impl Write>,
) -> String {
    if let Some(h) = flag {
        return h.to_string();
    }
    if let Some(h) = env.filter(|h| !h.is_empty()) {
        match h.to_str().filter(|h| is_collectd_host(h)) {
            Some(h) => return h.to_string(),
            None => warnings.once(
                "collectd-hostname",
                format!(
                    "COLLECTD_HOSTNAME {:?}: {COLLECTD_HOST_RULE}; using the system's host name",
                    h.to_string_lossy()
                ),
            ),
        }
    }
    let h = system();
    if !is_collectd_host(&h) {
        let safe = crate::encode::collectd::part(&h, crate::encode::collectd::MAX_PART);
        warnings.once(
            "system-hostname",
            format!("the system's host name {h:?}: {COLLECTD_HOST_RULE}; using {safe:?}"),
        );
    }
    h
}

fn resolve_namespaces(args: &Args) -> Result<Vec<Netns>, RunError> {
    // --all-netns starts from our own; the first report's rescan adds the named ones.
    if args.select.netns.is_empty() {
        return Ok(vec![netns::own()]);
    }
    let mut out: Vec<Netns> = Vec::new();
    for spec in &args.select.netns {
        let ns = netns::resolve(spec)?;
        if out.iter().any(|o| o.name == ns.name) {
            return Err(RunError::Usage(format!(
                "--netns {} given twice",
                spec.to_string_lossy()
            )));
        }
        out.push(ns);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pick(env: Option<&[u8]>, system: &str) -> (String, String) {
        use std::os::unix::ffi::OsStrExt;
        let mut w = Warnings::to(Vec::new());
        let host = pick_host(None, env.map(OsStr::from_bytes), || system.into(), &mut w);
        (host, String::from_utf8(w.writer().clone()).unwrap())
    }

    #[test]
    fn the_reading_is_given_the_listener_filters() {
        use clap::Parser;
        let args = Args::try_parse_from([
            "acceptq",
            "--port",
            "80",
            "--exclude-port",
            "81",
            "--address",
            "10.*",
        ])
        .unwrap();
        let f = Settings::from_args(&args, false).read_opts.filter;
        assert_eq!((f.ports, f.exclude_ports), (vec![80], vec![81]));
        assert_eq!(f.addresses, ["10.*"]);
    }

    #[test]
    fn a_bad_collectd_hostname_is_said_and_the_systems_used() {
        assert_eq!(
            pick(Some(b"web-1.example"), "sys"),
            ("web-1.example".into(), "".into())
        );
        assert_eq!(
            pick(Some(b""), "sys"),
            ("sys".into(), "".into()),
            "empty is unset"
        );
        assert_eq!(pick(None, "sys"), ("sys".into(), "".into()));
        for bad in [&b"web 1"[..], b"a/b", b"bad\xff", &[b'h'; 128]] {
            let (host, said) = pick(Some(bad), "sys");
            assert_eq!(host, "sys", "{bad:?}");
            assert!(
                said.starts_with("W! [acceptq] COLLECTD_HOSTNAME \""),
                "{said}"
            );
            assert!(
                said.trim_end()
                    .ends_with("(it becomes a folder name); using the system's host name"),
                "{said}"
            );
            assert_eq!(said.lines().count(), 1);
        }
        let (host, said) = pick(Some(b"web 1"), "my host");
        assert_eq!(host, "my host", "the encoder makes it safe");
        let lines: Vec<&str> = said.lines().collect();
        assert_eq!(lines.len(), 2, "{said}");
        assert!(
            lines[1].starts_with("W! [acceptq] the system's host name \"my host\": ")
                && lines[1].ends_with("; using \"my_host_b260ae22dc9b7403\""),
            "{said}"
        );
        let mut w = Warnings::to(Vec::new());
        assert_eq!(
            pick_host(
                Some("flag"),
                Some(OsStr::new("a b")),
                || "sys".into(),
                &mut w
            ),
            "flag"
        );
        assert!(w.writer().is_empty());
    }
}
