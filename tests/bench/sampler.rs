//! The sampler's CPU at `--sample 100ms`, gated: `acceptq --signal stdin` idle between reports,
//! its sampler thread's on-CPU time (schedstat) over a window, for
//! - the bench namespace's 1 000 listeners, idle, then with one listener of ours taking about 50
//!   connections a second;
//! - 1, 10 and 50 namespaces of 20 listeners each (`--netns` once per namespace: the targets
//!   `--all-netns` would give, without the other namespaces of the machine), idle and with one
//!   busy listener in the first.
//!
//! The baseline is what the dumps the gate let through cost when done bare: the same LISTEN
//! dump of the same namespaces every 100 ms (cold, as the sampler runs it) on a thread of ours
//! that does nothing else, during the same window, its on-CPU time wake-ups included, times the
//! share of samples that dumped (acceptq says its counts at exit under `ACCEPTQ_DEBUG_SAMPLER`).
//!
//! Targets: idle 1 000 listeners < 0.1 % of one core; busy within 1.2x of the baseline; 10 and
//! 50 idle namespaces < 0.5 %.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use acceptq::source::inet_diag::{Record, FAMILIES, STATE_LISTEN};
use acceptq::source::netdev::RxPackets;
use acceptq::source::snmp::PassiveOpens;
use acceptq::source::sock_diag::DiagSocket;

const SAMPLE_EVERY: Duration = Duration::from_millis(100);
const PER_NS: usize = 20;
const BUSY_EVERY: Duration = Duration::from_millis(20);
const TARGET_IDLE_PCT: f64 = 0.1;
const TARGET_BUSY_RATIO: f64 = 1.2;
const TARGET_MANY_PCT: f64 = 0.5;
/// Cold reads of /proc/net/snmp (and of /proc/net/dev) timed, 100 ms apart.
const CHECK_READS: usize = 40;

/// What the sampler measurement hands back to the bench's table and checks.
pub struct SamplerResult {
    rows: Vec<Row>,
    check_cold: Duration,
    check_warm: Duration,
    /// The same for the first tier's /proc/net/dev.
    dev_cold: Duration,
    dev_warm: Duration,
    pub clean_exit: bool,
    checks: Vec<(String, bool)>,
}

struct Row {
    what: String,
    pct: f64,
    samples: u64,
    dumps: u64,
    /// Share of one core the dumps let through cost bare; every sample dumped bare.
    baseline_pct: f64,
    ungated_pct: f64,
}

impl SamplerResult {
    pub fn print(&self) {
        println!("sampler CPU, gated: `acceptq --signal stdin --sample 100ms`, idle between reports; sampler thread on-CPU time (schedstat)");
        println!();
        println!("| namespaces watched | sampler thread | samples dumped | bare dumps it let through (baseline) | every sample dumped bare |");
        println!("|---|---|---|---|---|");
        for r in &self.rows {
            println!(
                "| {} | **{:.3} %** | {} of {} | {:.3} % | {:.3} % |",
                r.what, r.pct, r.dumps, r.samples, r.baseline_pct, r.ungated_pct
            );
        }
        println!();
        println!(
            "gate check, first tier (one /proc/net/dev read + sum of rx_packets): {:.1} µs cold (100 ms apart, median), {:.1} µs warm",
            self.dev_cold.as_secs_f64() * 1e6,
            self.dev_warm.as_secs_f64() * 1e6
        );
        println!(
            "gate check, second tier when the first moved (one /proc/net/snmp read + parse): {:.1} µs cold (100 ms apart, median), {:.1} µs warm",
            self.check_cold.as_secs_f64() * 1e6,
            self.check_warm.as_secs_f64() * 1e6
        );
    }

    pub fn checks(&self) -> Vec<(String, bool)> {
        self.checks.clone()
    }
}

/// Namespaces of our own: each held by a parked thread that made it (`unshare`), named by that
/// thread's `/proc/PID/task/TID/ns/net`, with [`PER_NS`] idle listeners; all gone when the
/// threads end (no mount, nothing to clean up after a kill).
struct Namespaces {
    paths: Vec<String>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    /// The first namespace's busy listener, when asked: its port and the accepting thread.
    busy: Option<(TcpListener, JoinHandle<()>)>,
}

impl Namespaces {
    fn new(n: usize, busy: bool) -> Result<Self, String> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut paths = Vec::new();
        let mut threads = Vec::new();
        let mut busy_listener = None;
        for i in 0..n {
            let (tx, rx) = mpsc::channel();
            let flag = stop.clone();
            let with_busy = busy && i == 0;
            threads.push(std::thread::spawn(move || {
                // SAFETY: unshare changes only this thread's network namespace.
                if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                    let _ = tx.send(Err(format!("unshare: {}", std::io::Error::last_os_error())));
                    return;
                }
                // SAFETY: gettid has no preconditions.
                let tid = unsafe { libc::syscall(libc::SYS_gettid) };
                let path = format!("/proc/{}/task/{tid}/ns/net", std::process::id());
                let up = Command::new("nsenter")
                    .arg(format!("--net={path}"))
                    .args(["ip", "link", "set", "lo", "up"])
                    .status();
                if !up.is_ok_and(|s| s.success()) {
                    let _ = tx.send(Err("nsenter ... ip link set lo up failed".to_string()));
                    return;
                }
                let idle: Vec<TcpListener> = (0..PER_NS - usize::from(with_busy))
                    .filter_map(|_| TcpListener::bind("127.0.0.1:0").ok())
                    .collect();
                let listener = with_busy
                    .then(|| TcpListener::bind("127.0.0.1:0").ok())
                    .flatten();
                let port = listener
                    .as_ref()
                    .and_then(|l| l.local_addr().ok())
                    .map(|a| a.port());
                let _ = tx.send(Ok((path, idle.len(), listener)));
                match port {
                    // The clients must be made in the namespace: this thread is.
                    Some(port) => client_loop(port, &flag),
                    None => {
                        while !flag.load(Ordering::Relaxed) {
                            std::thread::park_timeout(Duration::from_millis(200));
                        }
                    }
                }
                drop(idle);
            }));
            let (path, count, listener) =
                rx.recv().map_err(|e| format!("namespace thread: {e}"))??;
            if count + usize::from(listener.is_some()) != PER_NS {
                return Err(format!("namespace {i}: {count} listeners bound"));
            }
            if let Some(l) = listener {
                busy_listener = Some(l);
            }
            paths.push(path);
        }
        let busy = match busy_listener {
            Some(l) => {
                let acceptor = accept_loop(&l, &stop)?;
                Some((l, acceptor))
            }
            None => None,
        };
        Ok(Namespaces {
            paths,
            stop,
            threads,
            busy,
        })
    }

    /// Our own (the bench's) namespace, with one busy listener of ours when asked.
    fn own(busy: bool) -> Result<Self, String> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        let mut held = None;
        if busy {
            let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
            let port = l.local_addr().map_err(|e| e.to_string())?.port();
            let flag = stop.clone();
            threads.push(std::thread::spawn(move || client_loop(port, &flag)));
            let acceptor = accept_loop(&l, &stop)?;
            held = Some((l, acceptor));
        }
        Ok(Namespaces {
            paths: Vec::new(),
            stop,
            threads,
            busy: held,
        })
    }

    /// acceptq's flags naming these namespaces (none: its own).
    fn flags(&self) -> Vec<String> {
        self.paths
            .iter()
            .flat_map(|p| ["--netns".to_string(), p.clone()])
            .collect()
    }

    /// A sock_diag socket in each namespace (ours when none were made).
    fn sockets(&self) -> Result<Vec<DiagSocket>, String> {
        if self.paths.is_empty() {
            return Ok(vec![DiagSocket::open(None).map_err(|e| e.to_string())?]);
        }
        self.paths
            .iter()
            .map(|p| {
                let f = File::open(p).map_err(|e| format!("{p}: {e}"))?;
                DiagSocket::open(Some(Arc::new(f))).map_err(|e| format!("{p}: {e}"))
            })
            .collect()
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            t.thread().unpark();
            let _ = t.join();
        }
        if let Some((_listener, acceptor)) = self.busy.take() {
            let _ = acceptor.join();
        }
    }
}

/// About 50 connections a second to `port`, each closed at once.
fn client_loop(port: u16, stop: &AtomicBool) {
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let _ = TcpStream::connect(("127.0.0.1", port));
        next += BUSY_EVERY;
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
}

/// Accepts and closes every connection of `l` on a thread, so its queue stays short. accept
/// waits at most 200 ms (SO_RCVTIMEO), so the thread sees `stop` from any namespace.
fn accept_loop(l: &TcpListener, stop: &Arc<AtomicBool>) -> Result<JoinHandle<()>, String> {
    let l = l.try_clone().map_err(|e| e.to_string())?;
    let timeout = libc::timeval {
        tv_sec: 0,
        tv_usec: 200_000,
    };
    // SAFETY: setsockopt reads one timeval we own, on a socket we hold.
    let rc = unsafe {
        libc::setsockopt(
            l.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&timeout as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(format!("SO_RCVTIMEO: {}", std::io::Error::last_os_error()));
    }
    let flag = stop.clone();
    Ok(std::thread::spawn(move || {
        while !flag.load(Ordering::Relaxed) {
            let _ = l.accept();
        }
    }))
}

/// On-CPU ns of the calling thread, exact at the call (its schedstat is brought up to date only
/// when it is switched out, so it would miss a dump run without sleeping).
fn own_thread_ns() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// On-CPU ns of `pid`'s sampler thread.
fn sampler_ns(pid: u32) -> Result<u64, String> {
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).map_err(|e| e.to_string())? {
        let dir = task.map_err(|e| e.to_string())?.path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if comm.trim() == "acceptq-sampler" {
            return std::fs::read_to_string(dir.join("schedstat"))
                .ok()
                .and_then(|s| s.split_whitespace().next()?.parse().ok())
                .ok_or_else(|| "sampler schedstat".to_string());
        }
    }
    Err(format!("acceptq {pid} has no sampler thread"))
}

/// Per sample, the on-CPU time of a thread that only dumps every namespace bare (no
/// extension, the families that have listeners) every 100 ms for `window`, wake-ups included,
/// as the sampler thread's own time includes them. Run on the calling thread, while acceptq
/// samples the same namespaces: both see the machine as it is then.
fn bare_dump_cost(socks: &mut [DiagSocket], window: Duration) -> Result<Duration, String> {
    let mut records: Vec<Record> = Vec::with_capacity(4096);
    let mut families = Vec::new();
    for s in socks.iter_mut() {
        let mut has = Vec::new();
        for f in FAMILIES {
            records.clear();
            s.append_family(f, STATE_LISTEN, false, &mut records)
                .map_err(|e| e.to_string())?;
            has.push(!records.is_empty());
        }
        families.push(has);
    }
    // Half a period away from acceptq's samples, roughly: the two walks do not warm each other.
    std::thread::sleep(SAMPLE_EVERY / 2);
    let end = Instant::now() + window;
    let mut next = Instant::now();
    let mut ticks = 0u64;
    let t0 = own_thread_ns();
    while Instant::now() < end {
        for (s, has) in socks.iter_mut().zip(&families) {
            records.clear();
            for (f, yes) in FAMILIES.into_iter().zip(has) {
                if *yes {
                    s.append_family(f, STATE_LISTEN, false, &mut records)
                        .map_err(|e| e.to_string())?;
                }
            }
        }
        ticks += 1;
        next += SAMPLE_EVERY;
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    let spent = own_thread_ns() - t0;
    Ok(Duration::from_nanos(spent / ticks.max(1)))
}

/// One of the gate's checks (`read`: one read and its parse), cold and warm.
fn check_cost(
    mut read: impl FnMut() -> Result<(), String>,
) -> Result<(Duration, Duration), String> {
    read()?;
    let mut cold = Vec::with_capacity(CHECK_READS);
    for _ in 0..CHECK_READS {
        std::thread::sleep(SAMPLE_EVERY);
        let t = Instant::now();
        read()?;
        cold.push(t.elapsed());
    }
    cold.sort();
    let t = Instant::now();
    for _ in 0..1000 {
        read()?;
    }
    Ok((cold[CHECK_READS / 2], t.elapsed() / 1000))
}

struct Run {
    pct: f64,
    samples: u64,
    dumps: u64,
    clean_exit: bool,
}

/// Listening sockets in the bench's own namespace, both families.
fn listening_here() -> Result<usize, String> {
    let mut sock = DiagSocket::open(None).map_err(|e| e.to_string())?;
    let mut records: Vec<Record> = Vec::new();
    sock.dump_into(STATE_LISTEN, false, &mut records)
        .map_err(|e| e.to_string())?;
    Ok(records.len())
}

/// Runs `acceptq --signal stdin --sample 100ms FLAGS` for `window` after a second of start-up,
/// and returns its sampler thread's share of one core and its counts.
fn run_acceptq<T>(
    acceptq: &str,
    flags: &[String],
    window: Duration,
    rows: usize,
    during: impl FnOnce(Duration) -> T,
) -> Result<(Run, T), String> {
    let mut child = Command::new(acceptq)
        .args(["--signal", "stdin", "--sample", "100ms"])
        .args(flags)
        .env("ACCEPTQ_DEBUG_SAMPLER", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{acceptq}: {e}"))?;
    let out = child.stdout.take().unwrap();
    let drain = std::thread::spawn(move || {
        BufReader::new(out)
            .lines()
            .map_while(Result::ok)
            .filter(|l| l.starts_with("acceptq_listener"))
            .count()
    });
    let err = child.stderr.take().unwrap();
    let said = std::thread::spawn(move || {
        BufReader::new(err)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<String>>()
    });
    std::thread::sleep(Duration::from_secs(1));
    let pid = child.id();
    let (n0, t0) = (sampler_ns(pid)?, Instant::now());
    let meanwhile = during(window);
    let (n1, t1) = (sampler_ns(pid)?, Instant::now());
    let mut clean_exit = true;
    let mut stdin = child.stdin.take().unwrap();
    clean_exit &= stdin.write_all(b"\n").is_ok();
    drop(stdin);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match child.try_wait() {
            Ok(Some(st)) => {
                clean_exit &= st.success();
                break;
            }
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                clean_exit = false;
                break;
            }
        }
    }
    let seen = drain.join().unwrap_or(0);
    if !clean_exit || seen < rows {
        eprintln!("bench: acceptq {flags:?}: exit not clean or {seen} listener rows of {rows}");
    }
    clean_exit &= seen >= rows;
    let mut samples = 0;
    let mut dumps = 0;
    for line in said.join().unwrap_or_default() {
        if let Some((s, d)) = counts(&line) {
            samples += s;
            dumps += d;
        } else {
            eprintln!("{line}");
        }
    }
    let run = Run {
        pct: (n1 - n0) as f64 / 1e9 / (t1 - t0).as_secs_f64() * 100.0,
        samples,
        dumps,
        clean_exit,
    };
    Ok((run, meanwhile))
}

/// `D! [acceptq] sampler: netns NAME: S samples, D dumps, ...` → (S, D).
fn counts(line: &str) -> Option<(u64, u64)> {
    let rest = line.strip_prefix("D! [acceptq] sampler: netns ")?;
    let mut words = rest.rsplit(": ").next()?.split_whitespace();
    let s = words.next()?.parse().ok()?;
    words.next()?;
    let d = words.next()?.parse().ok()?;
    Some((s, d))
}

/// One configuration: acceptq over `ns`, then its bare-dump baseline.
fn measure_one(
    acceptq: &str,
    what: String,
    ns: &Namespaces,
    window: Duration,
    rows: usize,
    clean: &mut bool,
) -> Result<Row, String> {
    let mut socks = ns.sockets()?;
    let (run, bare) = run_acceptq(acceptq, &ns.flags(), window, rows, |w| {
        bare_dump_cost(&mut socks, w)
    })?;
    *clean &= run.clean_exit;
    let per_sample = bare?.as_secs_f64();
    let ungated_pct = per_sample / SAMPLE_EVERY.as_secs_f64() * 100.0;
    let share = if run.samples == 0 {
        1.0
    } else {
        run.dumps as f64 / run.samples as f64
    };
    eprintln!(
        "== sampler: {what}: {:.3} %, {} of {} samples dumped",
        run.pct, run.dumps, run.samples
    );
    Ok(Row {
        what,
        pct: run.pct,
        samples: run.samples,
        dumps: run.dumps,
        baseline_pct: ungated_pct * share,
        ungated_pct,
    })
}

/// Every configuration, in one run.
pub fn measure(acceptq: &str, window: Duration, expected: usize) -> Result<SamplerResult, String> {
    let mut rows = Vec::new();
    let mut clean = true;
    let mut checks = Vec::new();
    let mut snmp = PassiveOpens::open().map_err(|e| format!("/proc/net/snmp: {e}"))?;
    let (check_cold, check_warm) = check_cost(|| snmp.read().map(drop).map_err(|e| e.to_string()))?;
    let mut dev = RxPackets::open().map_err(|e| format!("/proc/net/dev: {e}"))?;
    let (dev_cold, dev_warm) = check_cost(|| dev.read().map(drop).map_err(|e| e.to_string()))?;

    // The listeners of this namespace are the load's, which lives a bounded time: a load gone
    // is a setup error, not acceptq's report missing rows.
    let held = listening_here()?;
    if held < expected {
        return Err(format!(
            "only {held} of the load's {expected} listeners are left in this namespace: the load ended before the sampler's turn"
        ));
    }
    let idle = Namespaces::own(false)?;
    let r = measure_one(
        acceptq,
        format!("1 (this one: {expected} listeners), idle"),
        &idle,
        window,
        expected,
        &mut clean,
    )?;
    drop(idle);
    checks.push((
        format!(
            "sampler, {expected} listeners, idle: {:.3} % < {TARGET_IDLE_PCT} % of one core",
            r.pct
        ),
        r.pct < TARGET_IDLE_PCT,
    ));
    rows.push(r);

    let busy = Namespaces::own(true)?;
    let r = measure_one(
        acceptq,
        format!("1 (this one: {expected} listeners), one listener taking ~50 connections/s"),
        &busy,
        window,
        expected,
        &mut clean,
    )?;
    drop(busy);
    checks.push((
        format!(
            "sampler, {expected} listeners, one busy: {:.3} % within {TARGET_BUSY_RATIO}x of its dumps done bare ({:.3} %)",
            r.pct, r.baseline_pct
        ),
        r.pct <= TARGET_BUSY_RATIO * r.baseline_pct,
    ));
    rows.push(r);

    for n in [1usize, 10, 50] {
        for busy in [false, true] {
            let ns = Namespaces::new(n, busy)?;
            let what = format!(
                "{n} x {PER_NS} listeners{}",
                if busy {
                    ", one taking ~50 connections/s"
                } else {
                    ", idle"
                }
            );
            let r = measure_one(acceptq, what, &ns, window, n * PER_NS, &mut clean)?;
            drop(ns);
            if !busy && n >= 10 {
                checks.push((
                    format!(
                        "sampler, {n} idle namespaces: {:.3} % < {TARGET_MANY_PCT} % of one core",
                        r.pct
                    ),
                    r.pct < TARGET_MANY_PCT,
                ));
            }
            rows.push(r);
        }
    }
    Ok(SamplerResult {
        rows,
        check_cold,
        check_warm,
        dev_cold,
        dev_warm,
        clean_exit: clean,
        checks,
    })
}
