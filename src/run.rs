//! The run modes: the interval loop, one report per stdin line (Telegraf execd), collectd's
//! exec mode, `--once` and `--once --window`.

use std::collections::HashSet;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::cli::{Args, Format, Signal};
use crate::encode::{
    collectd::Collectd, influx::Influx, json::JsonLines, prometheus::Prometheus, Encoder,
};
use crate::filter::Filter;
use crate::output::{self, Sink, Wake};
use crate::report::{self, NsReading, ReportOptions};
use crate::sampler::{Sampler, Target, Targets};
use crate::snapshot::NetnsSnapshot;
use crate::source::netns::{self, Netns};
use crate::source::owners::{self, OwnerCache};
use crate::source::sock_diag::DiagSocket;
use crate::source::{NsSources, Options};
use crate::state::{NsId, Peaks, Previous};
use crate::warn::{self, Warnings};

const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
/// Unopenable namespaces remembered before the list is forgotten and they are tried again.
const MAX_UNOPENABLE: usize = 1024;

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

/// A namespace being watched: its sources and its last reading.
struct Watched {
    /// Stable while it is watched: keys its deltas and peaks.
    id: NsId,
    identity: Option<(u64, u64)>,
    src: NsSources,
    snap: NetnsSnapshot,
}

/// Everything one report needs, kept across reports.
struct Reporter {
    watched: Vec<Watched>,
    next_id: NsId,
    /// `--all-netns`: look for namespaces added or removed before each report.
    rescan: bool,
    /// Namespaces `--all-netns` could not open, not tried again.
    unopenable: HashSet<(u64, u64)>,
    /// The sampler's namespaces, when it runs.
    targets: Option<Targets>,
    shared_peaks: Arc<Mutex<Peaks>>,
    peaks: Peaks,
    prev: Previous,
    owners: Option<OwnerCache>,
    filter: Filter,
    /// The filter flags given, for the warning when they match no listener.
    filter_flags: Option<String>,
    opts: ReportOptions,
    read_opts: Options,
    encoder: Box<dyn Encoder>,
    sink: Sink,
    buf: Vec<u8>,
    warnings: Warnings,
    /// Reports written (or attempted): the first failure to write is fatal, later ones not.
    written: u64,
}

impl Reporter {
    /// Reads everything and returns the encoded report in `self.buf`.
    fn collect(&mut self) {
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as i64)
            .unwrap_or(0);
        if self.rescan {
            self.rescan_namespaces();
        }
        for w in &mut self.watched {
            w.src.read(&self.read_opts, &mut self.warnings, &mut w.snap);
        }
        if let Ok(mut shared) = self.shared_peaks.lock() {
            shared.take_into(&mut self.peaks);
        }
        // The report's own reading is a sample too: peaks are right even with --sample 0.
        self.peaks.begin_sample();
        for w in &self.watched {
            self.peaks.count_round(w.id);
            for s in &w.snap.sockets {
                self.peaks
                    .observe(w.id, s.endpoint(), s.inode, s.depth, s.limit);
            }
        }
        if let Some(cache) = &mut self.owners {
            let inodes: Vec<u32> = self
                .watched
                .iter()
                .flat_map(|w| w.snap.sockets.iter().map(|s| s.inode))
                .collect();
            if let Some(denied) = cache.refresh(&inodes, owners::scan_proc) {
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
        }
        let readings: Vec<NsReading> = self
            .watched
            .iter()
            .map(|w| NsReading {
                id: w.id,
                name: w.src.netns.name.as_str(),
                snap: &w.snap,
            })
            .collect();
        let empty = OwnerCache::default();
        let owners = self.owners.as_ref().unwrap_or(&empty);
        let ctx = report::Context {
            peaks: &self.peaks,
            owners,
            filter: &self.filter,
            opts: &self.opts,
            timestamp,
        };
        let built = report::build(&readings, &ctx, &mut self.prev);
        if let Some(flags) = &self.filter_flags {
            let matched = built.omitted
                + built
                    .metrics
                    .iter()
                    .filter(|m| m.name == crate::metric::LISTENER)
                    .count();
            let seen: usize = self.watched.iter().map(|w| w.snap.sockets.len()).sum();
            if matched == 0 {
                self.warnings.once(
                    "no-match",
                    format!(
                        "no listener matches {flags} (listening sockets seen: {seen}): only acceptq_netns is reported"
                    ),
                );
            }
        }
        if built.omitted > 0 {
            self.warnings.once(
                "max-listeners",
                format!(
                    "{} listener rows left out by --max-listeners {}: those dropping now, then the deepest, are reported; acceptq_netns.listeners_omitted counts them each report",
                    built.omitted, self.opts.max_listeners
                ),
            );
        }
        self.buf.clear();
        self.encoder.encode(&built.metrics, &mut self.buf);
    }

    /// Starts watching `ns`: opens its sources, then the sampler's socket there.
    fn watch(&mut self, ns: Netns) -> io::Result<()> {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let identity = netns::identity_of(&ns);
        let (name, file) = (ns.name.clone(), ns.file.clone());
        let src = NsSources::open(ns, &mut self.warnings)?;
        self.watched.push(Watched {
            id,
            identity,
            src,
            snap: NetnsSnapshot::default(),
        });
        if let Some(targets) = &self.targets {
            match DiagSocket::open(file) {
                Ok(sock) => {
                    if let Ok(mut t) = targets.lock() {
                        t.push(Target::new(id, name, sock));
                    }
                }
                Err(e) => self.warnings.once(
                    &format!("sampler-open-{name}"),
                    format!("sampler: netns {name}: cannot open sock_diag ({e}); peaks come from reports only"),
                ),
            }
        }
        Ok(())
    }

    /// `--all-netns`: follows `ip netns add` and `del`. A watched namespace is dropped when its
    /// name is gone or now names another namespace (deleted and re-created); names not watched
    /// yet are opened, except those that failed before (each failure said once per kind).
    fn rescan_namespaces(&mut self) {
        // (its `netns` tag, its identity, its name in /run/netns, which may not be UTF-8)
        type Named = (String, Option<(u64, u64)>, std::ffi::OsString);
        let now: Vec<Named> = netns::list_named()
            .into_iter()
            .map(|n| (netns::named_tag(&n), netns::named_identity(&n), n))
            .collect();
        let same = |w: &Watched, (name, identity, _): &Named| {
            &w.src.netns.name == name && w.identity == *identity
        };
        let before = self.watched.len();
        self.watched
            .retain(|w| w.src.netns.file.is_none() || now.iter().any(|n| same(w, n)));
        if self.watched.len() != before {
            let live: Vec<NsId> = self.watched.iter().map(|w| w.id).collect();
            if let Some(Ok(mut t)) = self.targets.as_ref().map(|t| t.lock()) {
                t.retain(|x| live.contains(&x.id));
            }
        }
        if self.unopenable.len() > MAX_UNOPENABLE {
            self.unopenable.clear();
        }
        for entry in &now {
            let (name, identity, raw) = entry;
            let watched = self
                .watched
                .iter()
                .any(|w| same(w, entry) || (identity.is_some() && w.identity == *identity));
            if watched || identity.is_some_and(|i| self.unopenable.contains(&i)) {
                continue;
            }
            let opened = netns::resolve_named(raw)
                .map_err(|e| (e.source.kind(), e.listed().to_string()))
                .and_then(|ns| {
                    self.watch(ns).map_err(|e| {
                        (
                            e.kind(),
                            format!("netns {name}: cannot open its sources: {e}"),
                        )
                    })
                });
            if let Err((kind, msg)) = opened {
                if let Some(i) = identity {
                    self.unopenable.insert(*i);
                }
                self.warnings.once(
                    &format!("netns-open-{kind:?}"),
                    format!(
                        "{msg} (not retried; other namespaces failing the same way are not named)"
                    ),
                );
            }
        }
    }

    /// Waits `limit`, or less when stdout (being written to) loses its reader.
    fn wait(&self, limit: Duration) -> Wake {
        output::wait(self.sink.is_stdout(), None, Some(limit))
    }

    /// One report, written. `Ok(false)`: stdout is closed, time to exit quietly.
    fn report(&mut self) -> Result<bool, RunError> {
        self.collect();
        self.written += 1;
        match self.sink.write(&self.buf) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(false),
            // The first report proves the output works (and is the only one of --once).
            Err(e) if self.written == 1 => Err(RunError::Fatal(e.to_string())),
            Err(e) => {
                warn::error(&format!("report not written: {e}"));
                Ok(true)
            }
        }
    }
}

pub fn run(args: Args) -> Result<(), RunError> {
    args.validate().map_err(RunError::Usage)?;
    let sink = args.output.as_deref().map_or_else(Sink::stdout, Sink::file);
    sink.check().map_err(|e| RunError::Fatal(e.to_string()))?;
    let mut warnings = Warnings::default();
    let interval = resolve_interval(&args, &mut warnings);
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
    if args.signal == Signal::Stdin && args.format == Format::Collectd {
        return Err(RunError::Usage(
            "--signal stdin does not go with --format collectd: collectd closes our stdin at once; \
             acceptq reports every COLLECTD_INTERVAL on its own"
                .into(),
        ));
    }
    let namespaces = resolve_namespaces(&args)?;
    let netns_tag = args.all_netns || namespaces.len() > 1;

    // A plain --once reports a single reading: there is nothing to sample between reports.
    let one_reading = args.once && args.window.is_none();
    let sampling = !args.sample_period().is_zero() && !one_reading;
    crate::metric::check_user_tags(&args.tags, args.format == Format::Collectd)
        .map_err(RunError::Usage)?;
    let tags = args.tags.clone();
    let encoder: Box<dyn Encoder> = match args.format {
        Format::Influx => Box::new(Influx::new(tags)),
        Format::Json => Box::new(JsonLines::new(tags)),
        Format::Prometheus => Box::new(Prometheus::new(tags)),
        Format::Collectd => {
            // Only `host` passes check_user_tags here: it is the identifier's host.
            let host = tags.into_iter().next().map(|(_, v)| v);
            if host.is_some() && args.hostname.is_some() {
                return Err(RunError::Usage(
                    "--tag host=... and --hostname both name the collectd host: give one".into(),
                ));
            }
            let host = host.unwrap_or_else(|| collectd_host(&args));
            Box::new(Collectd::new(&host, interval))
        }
    };
    let mut reporter = Reporter {
        watched: Vec::with_capacity(namespaces.len()),
        next_id: 0,
        rescan: args.all_netns,
        unopenable: HashSet::new(),
        targets: sampling.then(|| Arc::new(Mutex::new(Vec::new()))),
        shared_peaks: Arc::new(Mutex::new(Peaks::default())),
        peaks: Peaks::default(),
        prev: Previous::default(),
        owners: (!args.no_process).then(OwnerCache::default),
        filter: Filter {
            ports: args.ports.clone(),
            exclude_ports: args.exclude_ports.clone(),
            addresses: args.addresses.clone(),
            processes: args.processes.clone(),
        },
        filter_flags: args.filter_flags(),
        opts: ReportOptions {
            per_socket: args.per_socket,
            max_listeners: usize::try_from(args.max_listeners).unwrap_or(usize::MAX),
            netns_tag,
            unit_tag: args.unit,
        },
        read_opts: Options {
            syn_queue: !args.no_syn_queue,
        },
        encoder,
        sink,
        buf: Vec::with_capacity(64 * 1024),
        warnings,
        written: 0,
    };
    for ns in namespaces {
        let name = ns.name.clone();
        reporter
            .watch(ns)
            .map_err(|e| RunError::Fatal(format!("netns {name}: cannot open its sources: {e}")))?;
    }
    let _sampler = match &reporter.targets {
        Some(targets) => {
            match Sampler::start(
                targets.clone(),
                args.sample_period(),
                reporter.shared_peaks.clone(),
            ) {
                Ok(s) => Some(s),
                Err(e) => {
                    reporter
                        .warnings
                        .once("sampler-start", format!("sampler off: {e}"));
                    None
                }
            }
        }
        None => None,
    };

    if args.once {
        if let Some(window) = args.window {
            // A silent first reading sets the baseline; the report then covers the window.
            reporter.collect();
            if reporter.wait(window) == Wake::StdoutGone {
                return Ok(());
            }
        }
        reporter.report()?;
        return Ok(());
    }
    if args.signal == Signal::Stdin {
        return stdin_loop(&mut reporter);
    }
    // collectd closes our stdin at once: EOF there means nothing, so it is never read.
    interval_loop(&mut reporter, interval)
}

/// Telegraf execd: a report per line on stdin; EOF is Telegraf stopping us. A line is counted
/// by its newline whatever its bytes, and never kept, so a long or binary line costs no memory.
fn stdin_loop(reporter: &mut Reporter) -> Result<(), RunError> {
    let stdin = io::stdin();
    let fd = stdin.as_raw_fd();
    let mut stdin = stdin.lock();
    // At least as large as std's own stdin buffer (8 KiB), so a read takes all it holds and
    // never leaves bytes there that poll cannot see.
    let mut chunk = vec![0u8; 64 * 1024];
    // Bytes of a line whose newline has not come yet.
    let mut open_line = false;
    loop {
        if output::wait(reporter.sink.is_stdout(), Some(fd), None) == Wake::StdoutGone {
            return Ok(());
        }
        let n = match stdin.read(&mut chunk) {
            Ok(n) => n,
            Err(e)
                if e.kind() == io::ErrorKind::Interrupted
                    || e.kind() == io::ErrorKind::WouldBlock =>
            {
                continue
            }
            Err(e) => return Err(RunError::Fatal(format!("reading stdin: {e}"))),
        };
        if n == 0 {
            // A last line without its newline still asked for a report.
            if open_line {
                reporter.report()?;
            }
            return Ok(());
        }
        for _ in 0..lines_ended(&chunk[..n], &mut open_line) {
            if !reporter.report()? {
                return Ok(());
            }
        }
    }
}

/// The lines `chunk` of stdin ends (its newlines); `open` says whether bytes of a line not yet
/// ended were read, in this chunk or an earlier one. Bytes are never decoded or kept.
fn lines_ended(chunk: &[u8], open: &mut bool) -> usize {
    let ended = chunk.iter().filter(|b| **b == b'\n').count();
    *open = match chunk.iter().rposition(|b| *b == b'\n') {
        Some(last) => last + 1 < chunk.len(),
        None => *open || !chunk.is_empty(),
    };
    ended
}

fn interval_loop(reporter: &mut Reporter, interval: Duration) -> Result<(), RunError> {
    let mut next = Instant::now();
    loop {
        if !reporter.report()? {
            return Ok(());
        }
        let now = Instant::now();
        next += interval;
        while next <= now {
            next += interval; // a slow report skips ticks rather than bunching reports
        }
        if reporter.wait(next - now) == Wake::StdoutGone {
            return Ok(());
        }
    }
}

fn resolve_interval(args: &Args, warnings: &mut Warnings) -> Duration {
    if let Some(i) = args.interval {
        return i;
    }
    if args.format == Format::Collectd {
        if let Ok(v) = std::env::var("COLLECTD_INTERVAL") {
            match crate::cli::parse_interval(&v) {
                Ok(d) => return d,
                Err(e) => warnings.once(
                    "collectd-interval",
                    format!("COLLECTD_INTERVAL: {e}; using 10s"),
                ),
            }
        }
    }
    DEFAULT_INTERVAL
}

fn collectd_host(args: &Args) -> String {
    if let Some(h) = &args.hostname {
        return h.clone();
    }
    if let Ok(h) = std::env::var("COLLECTD_HOSTNAME") {
        if !h.is_empty() {
            return h;
        }
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

fn resolve_namespaces(args: &Args) -> Result<Vec<Netns>, RunError> {
    // --all-netns starts from our own; the first report's rescan adds the named ones.
    if args.netns.is_empty() {
        return Ok(vec![netns::own()]);
    }
    let mut out: Vec<Netns> = Vec::new();
    for spec in &args.netns {
        let ns = netns::resolve(spec)?;
        if out.iter().any(|o| o.name == ns.name) {
            return Err(RunError::Usage(format!("--netns {spec} given twice")));
        }
        out.push(ns);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stdin_lines_are_counted_by_newline_whatever_their_bytes() {
        let mut open = false;
        assert_eq!(lines_ended(b"\n\xff\n", &mut open), 2);
        assert!(!open);
        assert_eq!(lines_ended(b"\xc3", &mut open), 0);
        assert!(open, "a line begun");
        assert_eq!(lines_ended(b"\x28", &mut open), 0);
        assert!(open, "still the same line");
        assert_eq!(lines_ended(b"\n\n", &mut open), 2);
        assert!(!open);
        assert_eq!(lines_ended(b"\nab", &mut open), 1);
        assert!(open);
    }
}
