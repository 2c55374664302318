//! Whole-process comparisons: `acceptq --once` against what an operator would run instead
//! (`ss`, `nstat`, reading `/proc/net/tcp{,6}`), and the report's own cost per listener row.
//!
//! Three namespaces: the loaded one the bench runs in (listeners and established connections),
//! a bare one holding the same number of listeners and no connection, and an empty one. The
//! bench thread moves between them with `setns`, and every child it starts runs where it is.
//! Runs alternate between the commands compared, so a neighbour's load falls on all of them
//! alike; each figure is the median of the child's own CPU time (user + system, from
//! `RUSAGE_CHILDREN`): waiting for a shared core is not counted, only the work done.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs of each command; medians over them.
const RUNS: usize = 41;
const FORMATS: [&str; 4] = ["influx", "prometheus", "collectd", "json"];

pub const TARGET_VS_SS: f64 = 0.4;
pub const TARGET_VS_PROC: f64 = 15.0;
pub const TARGET_CONNECTIONS_INDEPENDENT: f64 = 1.1;
pub const TARGET_VS_TOOLS: f64 = 0.4;
pub const TARGET_US_PER_ROW: f64 = 0.5;

/// A network namespace to run children in.
pub struct Netns {
    file: File,
}

impl Netns {
    /// The namespace the bench thread is in now.
    pub fn current() -> Result<Netns, String> {
        Netns::open("/proc/thread-self/ns/net")
    }

    pub fn open(path: &str) -> Result<Netns, String> {
        let file = File::open(path).map_err(|e| format!("{path}: {e}"))?;
        Ok(Netns { file })
    }

    fn enter(&self) {
        // SAFETY: setns with a namespace fd we hold open; it changes only this thread's
        // network namespace (allowed in a multi-threaded process).
        let rc = unsafe { libc::setns(self.file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
    }
}

/// One command, where it runs, and its runs' CPU (user + system, and each) and wall times.
struct Job<'a> {
    ns: &'a Netns,
    /// Commands run one after the other, measured as one.
    argv: Vec<Vec<String>>,
    cpu: Vec<Duration>,
    user: Vec<Duration>,
    sys: Vec<Duration>,
    /// Minor page faults: fresh memory touched, exactly counted.
    faults: Vec<u64>,
    wall: Vec<Duration>,
}

impl<'a> Job<'a> {
    fn new(ns: &'a Netns, argv: &[&[&str]]) -> Job<'a> {
        Job {
            ns,
            argv: argv
                .iter()
                .map(|a| a.iter().map(|s| s.to_string()).collect())
                .collect(),
            cpu: Vec::with_capacity(RUNS),
            user: Vec::with_capacity(RUNS),
            sys: Vec::with_capacity(RUNS),
            faults: Vec::with_capacity(RUNS),
            wall: Vec::with_capacity(RUNS),
        }
    }

    fn run(&mut self, envs: &[(&str, &str)]) -> Result<(), String> {
        self.ns.enter();
        let (c0, f0) = (children_cpu(), children_faults());
        let t = Instant::now();
        for argv in &self.argv {
            let status = Command::new(&argv[0])
                .args(&argv[1..])
                .envs(envs.iter().copied())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map_err(|e| format!("{}: {e}", argv[0]))?;
            if !status.success() {
                return Err(format!("{argv:?}: {status}"));
            }
        }
        self.wall.push(t.elapsed());
        let c1 = children_cpu();
        self.user.push(c1.0 - c0.0);
        self.sys.push(c1.1 - c0.1);
        self.cpu.push(c1.0 + c1.1 - c0.0 - c0.1);
        self.faults.push(children_faults() - f0);
        Ok(())
    }

    fn cpu(&self) -> Duration {
        median(&self.cpu)
    }

    /// Means, not medians: the kernel splits a process's CPU time between user and system in
    /// the ratio of the timer ticks that found it in each, and a run of a few ms sees one tick
    /// or none, so one run's split is all or nothing; over many runs it averages out.
    fn user(&self) -> Duration {
        mean(&self.user)
    }

    fn sys(&self) -> Duration {
        mean(&self.sys)
    }

    fn faults(&self) -> u64 {
        let mut f = self.faults.clone();
        f.sort();
        f[f.len() / 2]
    }

    fn wall(&self) -> Duration {
        median(&self.wall)
    }
}

fn mean(v: &[Duration]) -> Duration {
    v.iter().sum::<Duration>() / v.len() as u32
}

fn median(v: &[Duration]) -> Duration {
    let mut s = v.to_vec();
    s.sort();
    s[s.len() / 2]
}

/// Minor page faults of every child waited for so far.
fn children_faults() -> u64 {
    // SAFETY: getrusage writes one rusage into the zeroed value we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    ru.ru_minflt as u64
}

/// User and system CPU of every child waited for so far.
fn children_cpu() -> (Duration, Duration) {
    // SAFETY: getrusage writes one rusage into the zeroed value we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    (tv(ru.ru_utime), tv(ru.ru_stime))
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// Measures, prints its tables and returns the checks (what, passed).
///
/// `dump`: the CPU of one in-process LISTEN dump with SKMEMINFO in this run (what the kernel
/// spends on a report's rows), taken off the per-row figure: what is left is acceptq's own.
pub fn compare(
    acceptq: &str,
    listeners: usize,
    loaded: &Netns,
    bare: &Netns,
    empty: &Netns,
    dump: Duration,
) -> Result<Vec<(String, bool)>, String> {
    let report = ["--once", "--no-process", "--no-syn-queue"];
    let with_format = |f: &'static str| -> Vec<&str> {
        let mut a = vec![acceptq];
        a.extend_from_slice(&report);
        a.extend_from_slice(&["--format", f]);
        a
    };
    let mut once_loaded = Job::new(loaded, &[&with_format("influx")]);
    let mut once_bare: Vec<Job> = FORMATS
        .iter()
        .map(|f| Job::new(bare, &[&with_format(f)]))
        .collect();
    let mut once_empty: Vec<Job> = FORMATS
        .iter()
        .map(|f| Job::new(empty, &[&with_format(f)]))
        .collect();
    let mut ss = Job::new(loaded, &[&["ss", "-ltn"]]);
    let mut cat = Job::new(loaded, &[&["cat", "/proc/net/tcp", "/proc/net/tcp6"]]);
    let mut full = Job::new(loaded, &[&[acceptq, "--once", "--no-process"]]);
    let mut tools = Job::new(
        loaded,
        &[
            &["ss", "-ltnm"],
            &["ss", "-tn", "state", "syn-recv"],
            // Absolute values (-a), zeros too (-z), and no history written (-s); the history
            // file named is a throwaway one in any case.
            &["nstat", "-asz"],
        ],
    );
    let history = std::env::temp_dir().join(format!("acceptq-bench-nstat-{}", std::process::id()));
    let history = history.to_string_lossy().into_owned();
    let envs = [("NSTAT_HISTORY", history.as_str())];
    for _ in 0..RUNS + 2 {
        once_loaded.run(&[])?;
        for j in once_bare.iter_mut().chain(once_empty.iter_mut()) {
            j.run(&[])?;
        }
        ss.run(&[])?;
        cat.run(&[])?;
        full.run(&[])?;
        tools.run(&envs)?;
    }
    let _ = std::fs::remove_file(&history);
    loaded.enter();

    println!(
        "whole processes, {listeners} listeners; median of {RUNS} runs each, CPU = the child's user + system time, runs interleaved"
    );
    println!();
    println!("| process | CPU | wall |");
    println!("|---|---|---|");
    let line = |name: &str, j: &Job| println!("| {name} | {} | {} |", ms(j.cpu()), ms(j.wall()));
    let per_row = |with: Duration, without: Duration, less: Duration| {
        (with.as_secs_f64() - without.as_secs_f64() - less.as_secs_f64()) * 1e6 / listeners as f64
    };
    line(
        "`acceptq --once --no-process --no-syn-queue`, with the established connections",
        &once_loaded,
    );
    line(
        "the same, in a namespace with the listeners only",
        &once_bare[0],
    );
    line("the same, in an empty namespace", &once_empty[0]);
    line("`ss -ltn`", &ss);
    line("`cat /proc/net/tcp /proc/net/tcp6`", &cat);
    line("`acceptq --once --no-process`", &full);
    line(
        "`ss -ltnm`; `ss -tn state syn-recv`; `nstat -asz`, one after the other",
        &tools,
    );
    println!();
    println!(
        "report cost per listener row: (CPU with {listeners} listeners - CPU in an empty namespace - CPU of the LISTEN dump, {}) / {listeners}",
        ms(dump)
    );
    println!();
    println!(
        "user: the process's user time less the empty namespace's (decoding the dump's records included); system: its system time less the empty namespace's and the dump's CPU (nearly all of it the kernel's); both means over the runs (the kernel splits a short process's time by timer ticks, so at a few ms per run these are rough); page faults: minor faults per row, median, exact"
    );
    println!();
    println!("| format | with listeners | empty | µs per row | user | system | page faults |");
    println!("|---|---|---|---|---|---|---|");
    let mut per_row_checks = Vec::new();
    for (i, f) in FORMATS.iter().enumerate() {
        let (with, without) = (&once_bare[i], &once_empty[i]);
        // Means of each part: they need not add up to the median of the whole.
        let us = per_row(with.cpu(), without.cpu(), dump);
        let user = per_row(with.user(), without.user(), Duration::ZERO);
        let sys = per_row(with.sys(), without.sys(), dump);
        let faults = (with.faults() as f64 - without.faults() as f64) / listeners as f64;
        println!(
            "| {f} | {} | {} | {us:.2} | {user:.2} | {sys:.2} | {faults:.3} |",
            ms(with.cpu()),
            ms(without.cpu())
        );
        per_row_checks.push((f, us));
    }
    println!();

    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    let mut checks = Vec::new();
    let r = ratio(once_loaded.cpu(), ss.cpu());
    checks.push((
        format!(
            "acceptq --once --no-process --no-syn-queue ({}) <= {TARGET_VS_SS} x ss -ltn ({}): {r:.2}x",
            ms(once_loaded.cpu()),
            ms(ss.cpu())
        ),
        r <= TARGET_VS_SS,
    ));
    let r = ratio(cat.cpu(), once_loaded.cpu());
    checks.push((
        format!(
            "reading /proc/net/tcp{{,6}} ({}) >= {TARGET_VS_PROC} x acceptq's report ({}): {r:.1}x",
            ms(cat.cpu()),
            ms(once_loaded.cpu())
        ),
        r >= TARGET_VS_PROC,
    ));
    let r = ratio(once_loaded.cpu(), once_bare[0].cpu());
    checks.push((
        format!(
            "acceptq's report with the connections ({}) within {TARGET_CONNECTIONS_INDEPENDENT} x without ({}): {r:.2}x",
            ms(once_loaded.cpu()),
            ms(once_bare[0].cpu())
        ),
        r <= TARGET_CONNECTIONS_INDEPENDENT,
    ));
    let r = ratio(full.cpu(), tools.cpu());
    checks.push((
        format!(
            "acceptq --once --no-process ({}) <= {TARGET_VS_TOOLS} x ss -ltnm + ss -tn state syn-recv + nstat -asz ({}): {r:.2}x",
            ms(full.cpu()),
            ms(tools.cpu())
        ),
        r <= TARGET_VS_TOOLS,
    ));
    for (f, us) in per_row_checks {
        checks.push((
            format!(
                "{f}: report cost {us:.2} µs per listener row (user + system) < {TARGET_US_PER_ROW}"
            ),
            us < TARGET_US_PER_ROW,
        ));
    }
    Ok(checks)
}
