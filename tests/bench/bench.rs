//! The cost benchmark's measuring program. `tests/bench/run.sh` runs it inside a network
//! namespace that holds the load; everything it measures is in that namespace.
//!
//!     acceptq-bench ACCEPTQ_BINARY EXPECTED_LISTENERS SAMPLER_SECONDS BARE_NETNS EMPTY_NETNS
//!
//! BARE_NETNS and EMPTY_NETNS are paths of namespaces holding the same listeners and no
//! connection, and nothing at all (see `process.rs`).
//!
//! Prints one table and exits 1 when a target is missed:
//! - the sampler's targets (see sampler.rs);
//! - one LISTEN dump (either kind) is not slower than a whole `ss -ltn` run;
//! - the accept-queue children dump (one listener with a non-empty queue, port-filtered) finds
//!   its queued connections (the separate path, kept for kernels that refuse the one walk);
//! - the one walk a report makes instead (request sockets and that listener's children, both
//!   families in one request) finds them too and costs less than the two dumps it replaces;
//! - the whole-process comparisons and the report's cost per row of `process.rs`.

mod process;

use std::io::Write;
use std::process::{Command, ExitCode, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use acceptq::sampler::{sample_once, Target};
use acceptq::source::inet_diag::{
    LocalPorts, Record, FAMILIES, STATES_ESTABLISHED_CHILD, STATE_LISTEN, STATE_NEW_SYN_RECV,
};
use acceptq::source::proc_tcp;
use acceptq::source::sock_diag::{DiagSocket, Dumped};
use acceptq::state::Peaks;

const DUMP_ITERATIONS: usize = 1000;
const SS_RUNS: usize = 50;
const PROC_RUNS: usize = 15;
const ONCE_RUNS: usize = 30;
const COLD_RUNS: usize = 30;
/// Dumps that walk the whole established hash (children, SYN queue): ms each, so fewer.
const EHASH_ITERATIONS: usize = 200;
/// Connections left waiting in the one listener whose queue is not empty.
const QUEUED: usize = 5;
const SAMPLE_EVERY: Duration = Duration::from_millis(100);

mod sampler;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 6 {
        eprintln!(
            "usage: acceptq-bench ACCEPTQ_BINARY EXPECTED_LISTENERS SAMPLER_SECONDS BARE_NETNS EMPTY_NETNS"
        );
        return ExitCode::from(2);
    }
    let acceptq = &args[1];
    let expected: usize = args[2].parse().expect("EXPECTED_LISTENERS");
    let sampler_secs: u64 = args[3].parse().expect("SAMPLER_SECONDS");
    let namespaces = (args[4].as_str(), args[5].as_str());
    match run(
        acceptq,
        expected,
        Duration::from_secs(sampler_secs),
        namespaces,
    ) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("bench: {e}");
            ExitCode::from(2)
        }
    }
}

/// Median and the thread's user/system CPU over all iterations.
struct Timing {
    median: Duration,
    p90: Duration,
    user: Duration,
    sys: Duration,
    n: usize,
}

impl Timing {
    fn user_share(&self) -> f64 {
        let total = self.user + self.sys;
        if total.is_zero() {
            0.0
        } else {
            self.user.as_secs_f64() / total.as_secs_f64()
        }
    }
}

fn time_iterations(n: usize, mut f: impl FnMut()) -> Timing {
    for _ in 0..n.min(20) {
        f();
    }
    let mut times = Vec::with_capacity(n);
    let (u0, s0) = thread_cpu();
    for _ in 0..n {
        let t = Instant::now();
        f();
        times.push(t.elapsed());
    }
    let (u1, s1) = thread_cpu();
    times.sort();
    Timing {
        median: times[n / 2],
        p90: times[n * 9 / 10],
        user: u1 - u0,
        sys: s1 - s0,
        n,
    }
}

fn thread_cpu() -> (Duration, Duration) {
    // SAFETY: getrusage writes one rusage into the zeroed value we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
    (tv(ru.ru_utime), tv(ru.ru_stime))
}

fn tv(t: libc::timeval) -> Duration {
    Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

fn run(
    acceptq: &str,
    expected: usize,
    sampler_window: Duration,
    (bare, empty): (&str, &str),
) -> Result<bool, String> {
    let mut ok = true;
    let mut checks: Vec<(String, bool)> = Vec::new();
    let loaded = process::Netns::current()?;
    let (bare, empty) = (process::Netns::open(bare)?, process::Netns::open(empty)?);

    // --- in-process LISTEN dumps -------------------------------------------------------------
    let mut diag = DiagSocket::open(None).map_err(|e| format!("open sock_diag: {e}"))?;
    let mut records: Vec<Record> = Vec::with_capacity(4096);
    diag.dump_into(STATE_LISTEN, true, &mut records)
        .map_err(|e| format!("dump: {e}"))?;
    let listeners = records.len();
    if listeners < expected {
        return Err(format!(
            "the dump saw {listeners} listeners, the load holds {expected}: wrong namespace?"
        ));
    }
    let with_mem = time_iterations(DUMP_ITERATIONS, || {
        diag.dump_into(STATE_LISTEN, true, &mut records).unwrap();
    });
    let no_ext = time_iterations(DUMP_ITERATIONS, || {
        diag.dump_into(STATE_LISTEN, false, &mut records).unwrap();
    });
    // The same dump 100 ms apart, as the sampler runs it: caches go cold in between.
    let mut cold_times = Vec::with_capacity(COLD_RUNS);
    let (cu0, cs0) = thread_cpu();
    for _ in 0..COLD_RUNS {
        std::thread::sleep(SAMPLE_EVERY);
        let t = Instant::now();
        diag.dump_into(STATE_LISTEN, false, &mut records).unwrap();
        cold_times.push(t.elapsed());
    }
    let (cu1, cs1) = thread_cpu();
    cold_times.sort();
    let cold = Timing {
        median: cold_times[COLD_RUNS / 2],
        p90: cold_times[COLD_RUNS * 9 / 10],
        user: cu1 - cu0,
        sys: cs1 - cs0,
        n: COLD_RUNS,
    };
    // The sampler's whole step: dump without extension + Peaks update under the lock.
    let mut targets = vec![Target::new(
        0,
        "bench".to_string(),
        DiagSocket::open(None).map_err(|e| format!("open sock_diag: {e}"))?,
    )];
    let peaks = Mutex::new(Peaks::default());
    let sample = time_iterations(DUMP_ITERATIONS, || {
        sample_once(&mut targets, &mut records, &peaks);
    });
    // The Peaks update alone, on the records of the last dump.
    let observe = time_iterations(DUMP_ITERATIONS, || {
        let mut p = peaks.lock().unwrap();
        p.begin_sample();
        p.count_round(0);
        for r in records.iter() {
            p.observe(0, r.endpoint(), r.inode, r.rqueue, Some(r.wqueue));
        }
    });

    // --- accept-queue children dump (queue_wait_max) ------------------------------------------
    // One listener of our own with connections that are never accepted, next to the load's
    // 1 000 idle listeners and 20 000 established connections.
    let waiting = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    let waiting_port = waiting.local_addr().map_err(|e| e.to_string())?.port();
    let queued: Vec<std::net::TcpStream> = (0..QUEUED)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", waiting_port)))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("connect: {e}"))?;
    // What a report asks when one listener's queue is not empty: that port, in the request.
    let mut ports = LocalPorts::default();
    ports.set(&[waiting_port]);
    let mut children = 0usize;
    // What a report's first children dump asks: ESTABLISHED and CLOSE_WAIT, both families.
    let (families, states) = (&FAMILIES[..], STATES_ESTABLISHED_CHILD);
    diag.dump_children(families, &ports, states, None, &mut |d| {
        if let Dumped::Record(r) = d {
            if r.inode == 0 && r.tcp_info.and_then(|t| t.last_data_sent).is_some() {
                children += 1;
            }
        }
    })
    .map_err(|e| format!("children dump: {e}"))?;
    let wait_dump = time_iterations(EHASH_ITERATIONS, || {
        diag.dump_children(families, &ports, states, None, &mut |_| {})
            .unwrap();
    });
    let mut wait_cold_times = Vec::with_capacity(COLD_RUNS);
    for _ in 0..COLD_RUNS {
        std::thread::sleep(SAMPLE_EVERY);
        let t = Instant::now();
        diag.dump_children(families, &ports, states, None, &mut |_| {})
            .unwrap();
        wait_cold_times.push(t.elapsed());
    }
    wait_cold_times.sort();
    // With several such ports the filter is a bytecode program, run on every established socket.
    let mut program = LocalPorts::default();
    program.set_program(&[waiting_port]);
    let wait_program = time_iterations(EHASH_ITERATIONS, || {
        diag.dump_children(families, &program, states, None, &mut |_| {})
            .unwrap();
    });
    // Without any filter every established socket would be filled with its tcp_info.
    let mut unfiltered_records = 0usize;
    let unfiltered = time_iterations(EHASH_ITERATIONS / 4, || {
        unfiltered_records = 0;
        diag.dump_children(families, &LocalPorts::default(), states, None, &mut |d| {
            if let Dumped::Record(_) = d {
                unfiltered_records += 1
            }
        })
        .unwrap();
    });
    // The SYN-queue dump walks the same hash: the report's other per-report dump, as it was
    // made per family, and as a report makes it now with no queue holding connections.
    let syn_dump = time_iterations(EHASH_ITERATIONS, || {
        diag.dump(STATE_NEW_SYN_RECV, false, None, &mut |_| {})
            .unwrap();
    });
    let any_port = LocalPorts::default();
    let syn_one_walk = time_iterations(EHASH_ITERATIONS, || {
        diag.dump_both_families(STATE_NEW_SYN_RECV, &any_port, false, None, &mut |_| {})
            .unwrap();
    });
    // What a report makes while a queue holds connections: both jobs in one walk.
    let mut requests_and_children = LocalPorts::default();
    requests_and_children.set_with_request_sockets(&[waiting_port]);
    let one_walk_states = STATE_NEW_SYN_RECV | STATES_ESTABLISHED_CHILD;
    let mut one_walk_children = 0usize;
    diag.dump_both_families(
        one_walk_states,
        &requests_and_children,
        true,
        None,
        &mut |r| {
            if r.inode == 0 && r.tcp_info.and_then(|t| t.last_data_sent).is_some() {
                one_walk_children += 1;
            }
        },
    )
    .map_err(|e| format!("one walk: {e}"))?;
    let one_walk = time_iterations(EHASH_ITERATIONS, || {
        diag.dump_both_families(
            one_walk_states,
            &requests_and_children,
            true,
            None,
            &mut |_| {},
        )
        .unwrap();
    });

    // --- ss -ltn as a process ----------------------------------------------------------------
    let ss_out = Command::new("ss")
        .args(["-ltnH"])
        .output()
        .map_err(|e| format!("ss: {e}"))?;
    let ss_rows = String::from_utf8_lossy(&ss_out.stdout).lines().count();
    let mut ss_times = Vec::with_capacity(SS_RUNS);
    for i in 0..SS_RUNS + 3 {
        let t = Instant::now();
        let st = Command::new("ss")
            .arg("-ltn")
            .stdout(Stdio::null())
            .status()
            .map_err(|e| format!("ss: {e}"))?;
        let el = t.elapsed();
        if !st.success() {
            return Err(format!("ss -ltn: {st}"));
        }
        if i >= 3 {
            ss_times.push(el);
        }
    }
    ss_times.sort();
    let ss = ss_times[SS_RUNS / 2];

    // --- /proc/net/tcp + tcp6 read and parse (acceptq's fallback, through procfs) -------------
    let files = proc_tcp::open();
    if files.iter().any(Option::is_none) {
        return Err("cannot open /proc/thread-self/net/tcp{,6}".into());
    }
    let mut socks = Vec::new();
    proc_tcp::read(&files, &mut socks).map_err(|e| format!("/proc/net/tcp: {e}"))?;
    let proc_listeners = socks.len();
    let proc_rows: usize = ["tcp", "tcp6"]
        .iter()
        .map(|f| {
            std::fs::read_to_string(format!("/proc/thread-self/net/{f}"))
                .map(|t| t.lines().count().saturating_sub(1))
                .unwrap_or(0)
        })
        .sum();
    let proc = time_iterations(PROC_RUNS, || {
        proc_tcp::read(&files, &mut socks).unwrap();
    });

    // --- acceptq --once as a process: wall time and peak RSS ---------------------------------
    let check = Command::new(acceptq)
        .args(["--once", "--format", "json"])
        .output()
        .map_err(|e| format!("{acceptq}: {e}"))?;
    let once_rows = String::from_utf8_lossy(&check.stdout)
        .lines()
        .filter(|l| l.contains("\"acceptq_listener\""))
        .count();
    if !check.status.success() || once_rows < expected {
        return Err(format!(
            "acceptq --once: {} with {once_rows} listener rows; stderr: {}",
            check.status,
            String::from_utf8_lossy(&check.stderr)
        ));
    }
    let once = run_once(acceptq, &["--once"])?;
    let once_np = run_once(acceptq, &["--once", "--no-process"])?;
    let once_np_nw = run_once(acceptq, &["--once", "--no-process", "--no-queue-wait"])?;

    // The sampler is measured over the load alone, as before this listener existed.
    drop(queued);
    drop(waiting);

    // --- whole processes against ss, /proc/net/tcp and nstat; the report's cost per row ----
    println!();
    checks.extend(process::compare(
        acceptq,
        expected,
        &loaded,
        &bare,
        &empty,
        // CPU, as the processes are measured: on a shared machine the wall time also holds
        // the waits for a core.
        (with_mem.user + with_mem.sys) / with_mem.n as u32,
    )?);

    // --- sampler CPU at 100 ms ---------------------------------------------------------------
    let cpu = sampler::measure(acceptq, sampler_window, expected)?;

    // --- table -------------------------------------------------------------------------------
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    println!();
    println!(
        "acceptq cost benchmark: {listeners} listeners seen by sock_diag, {proc_rows} rows in /proc/net/tcp{{,6}} ({proc_listeners} listening), {ss_rows} rows from ss -ltn"
    );
    println!();
    println!("| measurement | median | p90 | notes |");
    println!("|---|---|---|---|");
    let row = |name: &str, t: &Timing, note: String| {
        println!("| {name} | {} | {} | {note} |", ms(t.median), ms(t.p90));
    };
    row(
        "acceptq LISTEN dump, SKMEMINFO (report)",
        &with_mem,
        format!(
            "{} iterations, in-process; CPU {:.0} % user / {:.0} % kernel",
            with_mem.n,
            100.0 * with_mem.user_share(),
            100.0 * (1.0 - with_mem.user_share())
        ),
    );
    row(
        "acceptq LISTEN dump, no extension (sampler)",
        &no_ext,
        format!(
            "{} iterations; CPU {:.0} % user / {:.0} % kernel",
            no_ext.n,
            100.0 * no_ext.user_share(),
            100.0 * (1.0 - no_ext.user_share())
        ),
    );
    row(
        "same, 100 ms apart (cold, as the sampler runs it)",
        &cold,
        format!(
            "{} iterations; CPU {:.0} % user / {:.0} % kernel",
            cold.n,
            100.0 * cold.user_share(),
            100.0 * (1.0 - cold.user_share())
        ),
    );
    row(
        "sampler step (sample_once: dump + Peaks)",
        &sample,
        format!("{} iterations", sample.n),
    );
    row(
        "Peaks update only (lock + observe x listeners)",
        &observe,
        format!("{} iterations", observe.n),
    );
    row(
        "acceptq children dump, one port in the request, tcp_info (queue_wait_max)",
        &wait_dump,
        format!(
            "{} iterations, one port, {children} queued children found; cold (100 ms apart): median {}, p90 {}",
            wait_dump.n,
            ms(wait_cold_times[COLD_RUNS / 2]),
            ms(wait_cold_times[COLD_RUNS * 9 / 10])
        ),
    );
    row(
        "same, the port in a bytecode filter (several ports)",
        &wait_program,
        format!("{} iterations", wait_program.n),
    );
    row(
        "same dump without any port filter",
        &unfiltered,
        format!(
            "{} iterations, {unfiltered_records} records with tcp_info",
            unfiltered.n
        ),
    );
    row(
        "SYN-queue dump (TCP_NEW_SYN_RECV), one request per family, for comparison",
        &syn_dump,
        format!(
            "{} iterations; walks the same established hash, once per family",
            syn_dump.n
        ),
    );
    row(
        "SYN-queue dump, both families in one request (a report with no queue holding connections)",
        &syn_one_walk,
        format!("{} iterations; one walk", syn_one_walk.n),
    );
    row(
        "one walk: request sockets + the queued port's children, both families (a report while a queue holds connections)",
        &one_walk,
        format!(
            "{} iterations; {one_walk_children} queued children found; replaces the two dumps above it",
            one_walk.n
        ),
    );
    println!(
        "| `ss -ltn` as a process | {} | {} | {SS_RUNS} runs, wall time |",
        ms(ss),
        ms(ss_times[SS_RUNS * 9 / 10])
    );
    row(
        "/proc/net/tcp + tcp6 read + parse (procfs)",
        &proc,
        format!("{} iterations, in-process", proc.n),
    );
    for (args, o) in [
        ("--once", &once),
        ("--once --no-process", &once_np),
        ("--once --no-process --no-queue-wait", &once_np_nw),
    ] {
        let rss = if o.rss_kib < 0 {
            "n/a (no /usr/bin/time: apt install time)".to_string()
        } else {
            format!(
                "{:.1} MiB (max of 3, /usr/bin/time)",
                o.rss_kib as f64 / 1024.0
            )
        };
        println!(
            "| `acceptq {args}` as a process | {} | {} | {ONCE_RUNS} runs, wall time; peak RSS {rss} |",
            ms(o.median),
            ms(o.p90),
        );
    }
    println!();
    println!("| ratio | value |");
    println!("|---|---|");
    println!(
        "| ss -ltn / acceptq dump (SKMEMINFO) | {:.1}x |",
        ratio(ss, with_mem.median)
    );
    println!(
        "| ss -ltn / acceptq dump (no extension) | {:.1}x |",
        ratio(ss, no_ext.median)
    );
    println!(
        "| /proc/net/tcp{{,6}} / acceptq dump (SKMEMINFO) | {:.0}x |",
        ratio(proc.median, with_mem.median)
    );
    println!(
        "| /proc/net/tcp{{,6}} / acceptq dump (no extension) | {:.0}x |",
        ratio(proc.median, no_ext.median)
    );
    println!();
    cpu.print();
    println!();

    checks.extend(cpu.checks());
    checks.push((
        format!(
            "LISTEN dump with SKMEMINFO ({}) not slower than ss -ltn ({})",
            ms(with_mem.median),
            ms(ss)
        ),
        with_mem.median <= ss,
    ));
    checks.push((
        format!(
            "LISTEN dump without extension ({}) not slower than ss -ltn ({})",
            ms(no_ext.median),
            ms(ss)
        ),
        no_ext.median <= ss,
    ));
    checks.push((
        format!("the children dump found the {QUEUED} queued connections: {children}"),
        children == QUEUED,
    ));
    checks.push((
        format!("the one walk found the {QUEUED} queued connections: {one_walk_children}"),
        one_walk_children == QUEUED,
    ));
    checks.push((
        format!(
            "the one walk ({}) costs less than the SYN-queue dump ({}) and the children dump ({}) it replaces",
            ms(one_walk.median),
            ms(syn_dump.median),
            ms(wait_dump.median)
        ),
        one_walk.median < syn_dump.median + wait_dump.median,
    ));
    checks.push((
        format!(
            "acceptq --signal stdin exited 0 on EOF after a report with >= {expected} listener rows"
        ),
        cpu.clean_exit,
    ));
    for (what, pass) in &checks {
        println!("{} {what}", if *pass { "PASS" } else { "FAIL" });
        ok &= pass;
    }
    let _ = std::io::stdout().flush();
    Ok(ok)
}

struct Once {
    median: Duration,
    p90: Duration,
    rss_kib: i64,
}

/// Wall time (median, p90) of `acceptq ARGS` over [`ONCE_RUNS`] runs, and its peak RSS from
/// `/usr/bin/time` (the child's own `ru_maxrss` would count the forking bench process's pages,
/// which survive `exec` in that figure).
fn run_once(acceptq: &str, args: &[&str]) -> Result<Once, String> {
    let mut times = Vec::with_capacity(ONCE_RUNS);
    for i in 0..ONCE_RUNS + 3 {
        let t = Instant::now();
        let status = Command::new(acceptq)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|e| format!("{acceptq}: {e}"))?;
        let el = t.elapsed();
        if !status.success() {
            return Err(format!("acceptq {args:?}: {status}"));
        }
        if i >= 3 {
            times.push(el);
        }
    }
    times.sort();
    let mut rss_kib = -1i64;
    for _ in 0..3 {
        let Ok(out) = Command::new("/usr/bin/time")
            .args(["-f", "%M", acceptq])
            .args(args)
            .stdout(Stdio::null())
            .output()
        else {
            break;
        };
        let text = String::from_utf8_lossy(&out.stderr);
        match text
            .lines()
            .last()
            .and_then(|l| l.trim().parse::<i64>().ok())
        {
            Some(k) => rss_kib = rss_kib.max(k),
            None => break,
        }
    }
    Ok(Once {
        median: times[ONCE_RUNS / 2],
        p90: times[ONCE_RUNS * 9 / 10],
        rss_kib,
    })
}
