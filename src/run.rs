//! The run modes: the interval loop, one report per stdin line (Telegraf execd), collectd's
//! exec mode, `--once` and `--once --window`.

use std::io::{self, BufRead};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::cli::{Args, Format, Signal};
use crate::encode::{
    collectd::Collectd, influx::Influx, json::JsonLines, prometheus::Prometheus, Encoder,
};
use crate::filter::Filter;
use crate::output::Sink;
use crate::report::{self, NsReading, ReportOptions};
use crate::sampler::Sampler;
use crate::snapshot::NetnsSnapshot;
use crate::source::netns::{self, Netns};
use crate::source::owners::{self, OwnerCache};
use crate::source::sock_diag::DiagSocket;
use crate::source::{NsSources, Options};
use crate::state::{Peaks, Previous};
use crate::warn::{self, Warnings};

const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);

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

/// Everything one report needs, kept across reports.
struct Reporter {
    sources: Vec<NsSources>,
    snaps: Vec<NetnsSnapshot>,
    shared_peaks: Arc<Mutex<Peaks>>,
    peaks: Peaks,
    prev: Previous,
    owners: Option<OwnerCache>,
    filter: Filter,
    opts: ReportOptions,
    read_opts: Options,
    encoder: Box<dyn Encoder>,
    sink: Sink,
    buf: Vec<u8>,
    warnings: Warnings,
    reports: u64,
}

impl Reporter {
    /// Reads everything and returns the encoded report in `self.buf`.
    fn collect(&mut self) {
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as i64)
            .unwrap_or(0);
        for (src, snap) in self.sources.iter_mut().zip(self.snaps.iter_mut()) {
            src.read(&self.read_opts, &mut self.warnings, snap);
        }
        if let Ok(mut shared) = self.shared_peaks.lock() {
            shared.take_into(&mut self.peaks);
        }
        // The report's own reading is a sample too: peaks are right even with --sample 0.
        self.peaks.begin_sample();
        for (ns, snap) in self.snaps.iter().enumerate() {
            for s in &snap.sockets {
                self.peaks
                    .observe(ns as u16, s.addr, s.port, s.inode, s.depth, s.limit);
            }
        }
        if let Some(cache) = &mut self.owners {
            let inodes: Vec<u32> = self
                .snaps
                .iter()
                .flat_map(|s| s.sockets.iter().map(|s| s.inode))
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
            .sources
            .iter()
            .zip(&self.snaps)
            .map(|(src, snap)| NsReading {
                name: src.netns.name.as_str(),
                snap,
            })
            .collect();
        let empty = OwnerCache::default();
        let owners = self.owners.as_ref().unwrap_or(&empty);
        let built = report::build(
            &readings,
            &self.peaks,
            owners,
            &self.filter,
            &self.opts,
            &mut self.prev,
            timestamp,
        );
        if built.omitted > 0 {
            self.warnings.once(
                "max-listeners",
                format!(
                    "{} listener rows left out by --max-listeners {}: the deepest and most-dropping are reported; acceptq_netns.listeners_omitted counts them each report",
                    built.omitted, self.opts.max_listeners
                ),
            );
        }
        self.buf.clear();
        self.encoder.encode(&built.metrics, &mut self.buf);
        self.reports += 1;
    }

    /// One report, written. `Ok(false)`: stdout is closed, time to exit quietly.
    fn report(&mut self) -> Result<bool, RunError> {
        self.collect();
        match self.sink.write(&self.buf) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(false),
            Err(e) if self.reports == 1 => Err(RunError::Fatal(e.to_string())),
            Err(e) => {
                warn::error(&format!("report not written: {e}"));
                Ok(true)
            }
        }
    }
}

pub fn run(args: Args) -> Result<(), RunError> {
    let mut warnings = Warnings::default();
    let interval = resolve_interval(&args, &mut warnings);
    let namespaces = resolve_namespaces(&args, &mut warnings)?;

    let mut sources = Vec::with_capacity(namespaces.len());
    for ns in &namespaces {
        let name = ns.name.clone();
        sources.push(
            NsSources::open(ns.clone(), &mut warnings).map_err(|e| {
                RunError::Fatal(format!("netns {name}: cannot open its sources: {e}"))
            })?,
        );
    }
    let shared_peaks = Arc::new(Mutex::new(Peaks::default()));
    let _sampler = start_sampler(&args, &namespaces, &shared_peaks, &mut warnings);

    let encoder: Box<dyn Encoder> = match args.format {
        Format::Influx => Box::new(Influx),
        Format::Json => Box::new(JsonLines),
        Format::Prometheus => Box::new(Prometheus),
        Format::Collectd => Box::new(Collectd::new(&collectd_host(&args), interval)),
    };
    let mut reporter = Reporter {
        snaps: vec![NetnsSnapshot::default(); sources.len()],
        sources,
        shared_peaks,
        peaks: Peaks::default(),
        prev: Previous::default(),
        owners: (!args.no_process).then(OwnerCache::default),
        filter: Filter {
            ports: args.ports.clone(),
            exclude_ports: args.exclude_ports.clone(),
            addresses: args.addresses.clone(),
            processes: args.processes.clone(),
        },
        opts: ReportOptions {
            per_socket: args.per_socket,
            max_listeners: usize::try_from(args.max_listeners).unwrap_or(usize::MAX),
            netns_tag: namespaces.len() > 1,
        },
        read_opts: Options {
            syn_queue: !args.no_syn_queue,
        },
        encoder,
        sink: args.output.as_deref().map_or(Sink::Stdout, Sink::file),
        buf: Vec::with_capacity(64 * 1024),
        warnings,
        reports: 0,
    };

    if args.once {
        if let Some(window) = args.window {
            // A silent first reading sets the baseline; the report then covers the window.
            reporter.collect();
            std::thread::sleep(window);
        }
        reporter.report()?;
        return Ok(());
    }
    if args.signal == Signal::Stdin && args.format != Format::Collectd {
        return stdin_loop(&mut reporter);
    }
    // collectd closes our stdin at once: EOF there means nothing, so it is never read.
    interval_loop(&mut reporter, interval)
}

/// Telegraf execd: a report per line on stdin; EOF is Telegraf stopping us.
fn stdin_loop(reporter: &mut Reporter) -> Result<(), RunError> {
    let stdin = io::stdin();
    let mut line = String::new();
    loop {
        line.clear();
        match stdin.lock().read_line(&mut line) {
            Ok(0) => return Ok(()),
            Ok(_) => {
                if !reporter.report()? {
                    return Ok(());
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(RunError::Fatal(format!("reading stdin: {e}"))),
        }
    }
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
        std::thread::sleep(next - now);
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

fn resolve_namespaces(args: &Args, warnings: &mut Warnings) -> Result<Vec<Netns>, RunError> {
    if args.all_netns {
        let (list, problems) = netns::all_named();
        for p in problems {
            warnings.once(&p, p.clone());
        }
        return Ok(list);
    }
    if args.netns.is_empty() {
        return Ok(vec![Netns {
            name: netns::OWN_NAME.to_string(),
            file: None,
        }]);
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

fn start_sampler(
    args: &Args,
    namespaces: &[Netns],
    peaks: &Arc<Mutex<Peaks>>,
    warnings: &mut Warnings,
) -> Option<Sampler> {
    if args.sample.is_zero() || (args.once && args.window.is_none()) {
        return None;
    }
    let mut sockets = Vec::with_capacity(namespaces.len());
    for ns in namespaces {
        match DiagSocket::open(ns.file.clone()) {
            Ok(s) => sockets.push((ns.name.clone(), s)),
            Err(e) => {
                warnings.once(
                    "sampler-open",
                    format!(
                        "sampler off: cannot open sock_diag ({e}); peaks come from reports only"
                    ),
                );
                return None;
            }
        }
    }
    match Sampler::start(sockets, args.sample, peaks.clone()) {
        Ok(s) => Some(s),
        Err(e) => {
            warnings.once("sampler-start", format!("sampler off: {e}"));
            None
        }
    }
}
