//! Faults around a running acceptq, each with the exact behaviour it must keep: a reader that
//! goes away mid-report, a stop signal mid-sample or mid-report, `/proc` it may not read, a
//! namespace that goes away, a listener replaced between reports, and an `--output` whose
//! directory vanishes or whose disk fills.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::exposition::check_exposition;
use crate::support::*;

tests![
    stdout_closed_after_the_first_line_of_a_long_report_exits_0_saying_nothing,
    sigterm_and_sigint_mid_sample_and_mid_report_exit_0_with_only_whole_lines,
    sigterm_and_sigint_while_starting_exit_0_at_once_and_a_netns_fifo_never_blocks,
    owners_unreadable_as_nobody_are_left_out_with_one_warning_over_many_reports,
    a_watched_namespace_deleted_mid_run_is_said_once_and_the_rest_keeps_reporting,
    a_namespace_whose_last_process_exits_leaves_all_netns_reporting_the_rest,
    a_listener_replaced_on_its_port_gets_no_delta_and_never_a_negative_one,
    namespace_counters_lower_after_a_namespace_is_replaced_at_its_name_carry_no_delta,
    a_vanished_output_directory_is_one_error_and_fresh_reports_when_it_returns,
    a_full_disk_keeps_the_old_output_whole_with_one_error_and_resumes,
];

/// Listeners on 127.0.0.1 (ports the kernel picks, backlog 8) in one process, with the file
/// limit raised to hold them: prints `ok PORT...`, then waits for stdin to close.
const MANY_LISTENERS: &str = r#"
import resource, socket, sys
n = int(sys.argv[1])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
held = []
for _ in range(n):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    held.append(s)
print("ok " + " ".join(str(s.getsockname()[1]) for s in held), flush=True)
sys.stdin.read()
"#;

/// A namespace holding `n` listeners; returns it with their holder and ports.
fn many_listeners(tag: &str, n: usize) -> (Netns, Helper, Vec<u16>) {
    let ns = Netns::new(tag);
    let mut h = Helper::spawn(ns.cmd("python3", &["-c", MANY_LISTENERS, &n.to_string()]));
    let ports = h.expect("ok").iter().map(|p| p.parse().unwrap()).collect();
    (ns, h, ports)
}

fn stderr_of(tmp: &TempDir) -> String {
    std::fs::read_to_string(tmp.join("stderr")).unwrap_or_default()
}

/// Every line of `out` a JSON metric, and the last one ended: no partial line.
fn assert_whole_json_lines(out: &str, what: &str) -> usize {
    assert!(
        out.is_empty() || out.ends_with('\n'),
        "{what}: output ends mid-line: {:?}",
        &out[out.len().saturating_sub(200)..]
    );
    for line in out.lines() {
        serde_json::from_str::<Json>(line)
            .unwrap_or_else(|e| panic!("{what}: not a whole JSON line ({e}): {line:?}"));
    }
    out.lines().count()
}

/// A report of 1 000 listeners is some 250 KB, far beyond a pipe's 64 KiB: the reader closes
/// its end after one line while acceptq is still writing that report. acceptq ends quietly.
fn stdout_closed_after_the_first_line_of_a_long_report_exits_0_saying_nothing() {
    let test = "faults::stdout_closed_after_the_first_line_of_a_long_report_exits_0_saying_nothing";
    if !netns_gate(test) {
        return;
    }
    let (ns, _h, ports) = many_listeners("stdoutgone", 1000);
    let tmp = TempDir::new("stdoutgone");
    for format in ["json", "influx"] {
        let args = ["--interval", "1s", "--no-process", "--format", format];
        let mut child = Reaped(
            ns.cmd(acceptq(), &args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(tmp.file("stderr"))
                .spawn()
                .unwrap(),
        );
        let mut out = BufReader::new(child.0.stdout.take().unwrap());
        let mut first = String::new();
        out.read_line(&mut first).unwrap();
        assert!(first.ends_with('\n'), "{first:?}");
        // acceptq is blocked on the full pipe, mid-report, when its reader goes.
        std::thread::sleep(Duration::from_millis(200));
        drop(out);
        let closed = Instant::now();
        let status = wait_or_kill(&mut child.0, Duration::from_secs(5));
        note!(
            "{args:?}: {} listeners, exit {status:?} {:?} after the close",
            ports.len(),
            closed.elapsed()
        );
        assert_eq!(status.and_then(|s| s.code()), Some(0), "{args:?}");
        assert_eq!(stderr_of(&tmp), "", "{args:?}: stderr must stay empty");
    }
}

/// Sends `signal` to `child` and returns its exit code and everything it wrote.
fn stop_with(child: &mut Child, signal: i32, out: &mut impl Read) -> (Option<i32>, String) {
    // SAFETY: kill has no memory preconditions; the child is ours and not yet reaped.
    unsafe { libc::kill(child.id() as libc::pid_t, signal) };
    let mut text = String::new();
    out.read_to_string(&mut text).unwrap();
    let status = wait_or_kill(child, Duration::from_secs(5));
    (status.and_then(|s| s.code()), text)
}

/// 1 000 listeners sampled every 10 ms: a sample is about always in progress when the signal
/// comes. Mid-report: the reader stops reading until the pipe is full, so the signal finds
/// acceptq blocked in the middle of writing a report. Either way: status 0, and the output
/// holds only whole lines (the report begun is finished).
fn sigterm_and_sigint_mid_sample_and_mid_report_exit_0_with_only_whole_lines() {
    let test = "faults::sigterm_and_sigint_mid_sample_and_mid_report_exit_0_with_only_whole_lines";
    if !netns_gate(test) {
        return;
    }
    let (ns, _h, _ports) = many_listeners("sigmid", 1000);
    let tmp = TempDir::new("sigmid");
    for signal in [libc::SIGTERM, libc::SIGINT] {
        for mid_report in [false, true] {
            let what = format!("signal {signal}, mid-report {mid_report}");
            let mut child = Reaped(
                ns.cmd(
                    acceptq(),
                    &[
                        "--sample",
                        "10ms",
                        "--interval",
                        "300ms",
                        "--format",
                        "json",
                        "--no-process",
                    ],
                )
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(tmp.file("stderr"))
                .spawn()
                .unwrap(),
            );
            let mut out = BufReader::new(child.0.stdout.take().unwrap());
            let mut text = String::new();
            // The first line: the handlers are in place once a report went out.
            out.read_line(&mut text).unwrap();
            if !mid_report {
                // Read on, so no write blocks; signal between samples' ticks of 10 ms.
                let mut reader = out;
                let t = std::thread::spawn(move || {
                    let mut rest = String::new();
                    let _ = reader.read_to_string(&mut rest);
                    rest
                });
                std::thread::sleep(Duration::from_millis(457));
                // SAFETY: kill has no memory preconditions; the child is ours.
                unsafe { libc::kill(child.0.id() as libc::pid_t, signal) };
                let status = wait_or_kill(&mut child.0, Duration::from_secs(5));
                text.push_str(&t.join().unwrap());
                assert_eq!(status.and_then(|s| s.code()), Some(0), "{what}");
            } else {
                // Stop reading: the rest of the first report fills the pipe and blocks acceptq.
                std::thread::sleep(Duration::from_millis(200));
                let (code, rest) = stop_with(&mut child.0, signal, &mut out);
                text.push_str(&rest);
                assert_eq!(code, Some(0), "{what}");
            }
            let lines = assert_whole_json_lines(&text, &what);
            note!("{what}: {lines} whole lines");
            assert!(lines >= 1000, "{what}: the report begun was not finished");
            assert_eq!(stderr_of(&tmp), "", "{what}");
        }
    }
}

/// Whether `pid` catches SIGTERM (`SigCgt` of /proc/PID/status).
fn catches_sigterm(pid: u32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
        .is_some_and(|m| m & (1 << (libc::SIGTERM - 1)) != 0)
}

/// A stop while acceptq is most likely still starting (frozen the moment its handler is in
/// place): the process ends at once with status 0, rather than by the signal, with only whole
/// lines if any. And a `--netns` FIFO, which once blocked the start
/// forever in `open`, is now refused at once as no namespace.
fn sigterm_and_sigint_while_starting_exit_0_at_once_and_a_netns_fifo_never_blocks() {
    let tmp = TempDir::new("sigstart");
    let fifo = tmp.join("fifo");
    run_ok(Command::new("mkfifo").arg(&fifo));
    let out = Command::new(acceptq())
        .args(["--netns", fifo.to_str().unwrap(), "--once"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(
        said.contains(&format!("{} is not a network namespace", fifo.display())),
        "{said}"
    );
    assert!(out.stdout.is_empty());
    let test =
        "faults::sigterm_and_sigint_while_starting_exit_0_at_once_and_a_netns_fifo_never_blocks";
    if !netns_gate(test) {
        return;
    }
    let ns = Netns::new("sigstart");
    let mut d = ns.driver();
    d.listen("127.0.0.1", 0, 8, false);
    for signal in [libc::SIGTERM, libc::SIGINT] {
        // `ip netns exec` execs acceptq in place: the child is acceptq once it catches SIGTERM.
        let mut child = Reaped(
            ns.cmd(acceptq(), &["--format", "json"])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(tmp.file("stderr"))
                .spawn()
                .unwrap(),
        );
        let pid = child.0.id();
        // Frozen as soon as the handler shows, so the signal comes while it starts.
        let caught = wait_for(Duration::from_secs(5), || {
            catches_sigterm(pid).then(|| {
                // SAFETY: signals our own child.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGSTOP) };
            })
        });
        assert!(
            caught.is_some(),
            "signal {signal}: no handler while starting"
        );
        let mut out = child.0.stdout.take().unwrap();
        // SAFETY: signals our own child: the stop is pending when it runs again.
        unsafe {
            libc::kill(pid as libc::pid_t, signal);
            libc::kill(pid as libc::pid_t, libc::SIGCONT);
        }
        let mut text = String::new();
        out.read_to_string(&mut text).unwrap();
        let status = wait_or_kill(&mut child.0, Duration::from_secs(5));
        assert_eq!(status.and_then(|s| s.code()), Some(0), "signal {signal}");
        assert_whole_json_lines(&text, "a stop while starting");
        assert_eq!(stderr_of(&tmp), "", "signal {signal}");
    }
}

/// As nobody, the owners of root's listeners cannot be found: reports go on without `process`
/// and `pid`, and the reason is said once for the whole run, not once a report.
fn owners_unreadable_as_nobody_are_left_out_with_one_warning_over_many_reports() {
    let test =
        "faults::owners_unreadable_as_nobody_are_left_out_with_one_warning_over_many_reports";
    if !(netns_gate(test) && nobody_gate(test)) {
        return;
    }
    let tmp = TempDir::new("nobodyowners");
    let bin = binary_for_nobody(&tmp);
    let ns = Netns::new("nobodyowners");
    let mut d = ns.driver();
    let (id, port) = d.listen("127.0.0.1", 0, 4, false);
    d.connect(id, 2);
    // A new listener between reports asks for owners again: still no second warning.
    let mut args = AS_NOBODY.to_vec();
    args.extend_from_slice(&[
        bin.to_str().unwrap(),
        "--interval",
        "200ms",
        "--format",
        "json",
    ]);
    let mut child = Reaped(
        ns.cmd("setpriv", &args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(tmp.file("stderr"))
            .spawn()
            .unwrap(),
    );
    let lines = Lines::new(child.0.stdout.take().unwrap());
    let mut rows: Vec<Json> = Vec::new();
    let mut reports = 0;
    let mut late_port = None;
    while reports < 8 {
        let line = lines.expect(STEP, "a report line");
        let m: Json = serde_json::from_str(&line).unwrap();
        if m["name"] == "acceptq_netns" {
            reports += 1;
            if reports == 3 {
                late_port = Some(d.listen("127.0.0.1", 0, 4, false).1);
            }
        }
        rows.push(m);
    }
    drop(child);
    let late_port = late_port.unwrap();
    let ours: Vec<&Json> = rows
        .iter()
        .filter(|m| matches!(port_of(m), Some(p) if p == port || p == late_port))
        .collect();
    assert!(ours.len() >= 8 + 4, "{ours:?}");
    for m in &ours {
        assert!(
            m["tags"].get("process").is_none() && m["fields"].get("pid").is_none(),
            "an owner nobody cannot see was named: {m}"
        );
    }
    assert_eq!(
        field(
            ours.iter()
                .rev()
                .find(|m| port_of(m) == Some(port))
                .unwrap(),
            "queue_depth"
        ),
        Some(2)
    );
    let err = stderr_of(&tmp);
    let said: Vec<&str> = err.lines().collect();
    note!("stderr as nobody over {reports} reports: {err}");
    assert_eq!(said.len(), 1, "one warning for the whole run: {err}");
    assert!(
        said[0].starts_with("W! [acceptq] cannot read /proc/<pid>/fd of ")
            && said[0].contains("`process` and `pid` are left out"),
        "{err}"
    );
}

/// Reports of a multi-namespace JSON run, told apart by their timestamp (one per report): a
/// report is complete when the next one's first row arrives.
struct Reports {
    lines: Lines,
    pending: Option<Json>,
}

impl Reports {
    fn new(child: &mut Child) -> Reports {
        Reports {
            lines: Lines::new(child.stdout.take().unwrap()),
            pending: None,
        }
    }

    fn next(&mut self) -> Vec<Json> {
        let mut rows: Vec<Json> = self.pending.take().into_iter().collect();
        loop {
            let line = self.lines.expect(STEP, "a report");
            let m: Json = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
            if rows
                .first()
                .is_some_and(|f| f["timestamp"] != m["timestamp"])
            {
                self.pending = Some(m);
                return rows;
            }
            rows.push(m);
        }
    }

    /// The first report for which `pred` holds, within STEP.
    fn until(&mut self, what: &str, mut pred: impl FnMut(&[Json]) -> bool) -> Vec<Json> {
        let end = Instant::now() + STEP;
        loop {
            let r = self.next();
            if pred(&r) {
                return r;
            }
            assert!(Instant::now() < end, "no report {what} within {STEP:?}");
        }
    }
}

fn ns_rows<'a>(report: &'a [Json], name: &str) -> Vec<&'a Json> {
    report
        .iter()
        .filter(|m| m["tags"]["netns"] == name)
        .collect()
}

/// `ip netns del` of one of two `--netns` namespaces, while the sampler samples it every 10 ms
/// and reports come every 200 ms: no crash, one clear line that says what happened and what
/// acceptq does about it, and the other namespace keeps its rows.
fn a_watched_namespace_deleted_mid_run_is_said_once_and_the_rest_keeps_reporting() {
    let test =
        "faults::a_watched_namespace_deleted_mid_run_is_said_once_and_the_rest_keeps_reporting";
    if !netns_gate(test) {
        return;
    }
    let tmp = TempDir::new("nsdel");
    let (gone, mut gd) = {
        let ns = Netns::new("nsdel-a");
        let d = ns.driver();
        (ns, d)
    };
    let stays = Netns::new("nsdel-b");
    let mut sd = stays.driver();
    let (_, gport) = gd.listen("127.0.0.1", 0, 4, false);
    let (_, sport) = sd.listen("127.0.0.1", 0, 4, false);
    let mut child = Reaped(
        Command::new(acceptq())
            .args([
                "--netns",
                &gone.name,
                "--netns",
                &stays.name,
                "--interval",
                "200ms",
                "--sample",
                "10ms",
                "--format",
                "json",
                "--no-process",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(tmp.file("stderr"))
            .spawn()
            .unwrap(),
    );
    let mut reports = Reports::new(&mut child.0);
    reports.until("with the listener", |r| {
        ns_rows(r, &gone.name)
            .iter()
            .any(|m| port_of(m) == Some(gport))
    });
    // Its processes end and its name is deleted: nothing but acceptq holds it now.
    drop(gd);
    for pid in gone.pids() {
        // SAFETY: kill has no memory preconditions; the process is in the test's namespace.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    }
    run_ok(Command::new("ip").args(["netns", "del", &gone.name]));
    // Deleted already, and nothing left in it to kill: no second `ip netns del`.
    let gone = std::mem::ManuallyDrop::new(gone);
    let after = reports.until("without the listener", |r| {
        ns_rows(r, &gone.name)
            .iter()
            .all(|m| port_of(m) != Some(gport))
    });
    // Five more reports: the message is not repeated, and both namespaces are still rows.
    for _ in 0..5 {
        let r = reports.next();
        assert!(
            ns_rows(&r, &stays.name)
                .iter()
                .any(|m| port_of(m) == Some(sport)),
            "the other namespace lost its listener: {r:?}"
        );
        assert!(
            ns_rows(&r, &gone.name)
                .iter()
                .any(|m| m["name"] == "acceptq_netns"),
            "the namespace acceptq still holds is still reported: {r:?}"
        );
    }
    assert!(child.0.try_wait().unwrap().is_none(), "acceptq ended");
    drop(child);
    let err = stderr_of(&tmp);
    note!("after the deletion: {after:?}\nstderr: {err}");
    let said: Vec<&str> = err.lines().collect();
    assert_eq!(said.len(), 1, "{err}");
    assert_eq!(
        said[0],
        format!(
            "W! [acceptq] netns {0}: /run/netns/{0} is gone (ip netns del, or its process ended): still reporting the namespace opened through it, which lives while acceptq or a process in it holds it; restart acceptq to stop watching it",
            gone.name
        )
    );
}

/// `--all-netns` follows a namespace that only a process holds (no name): when the process
/// exits, mid-sample at 10 ms, the namespace goes from the report and everything else stays.
fn a_namespace_whose_last_process_exits_leaves_all_netns_reporting_the_rest() {
    let test = "faults::a_namespace_whose_last_process_exits_leaves_all_netns_reporting_the_rest";
    if !netns_gate(test) || !skip_unless(have("unshare"), test, "needs unshare (util-linux)") {
        return;
    }
    let tmp = TempDir::new("nsexit");
    let stays = Netns::new("nsexit");
    let mut sd = stays.driver();
    let (_, sport) = sd.listen("127.0.0.1", 0, 4, false);
    // A namespace of its own process: lo up, then the driver.
    let driver = repo().join("tests/support/driver.py");
    let mut held = Driver::start({
        let mut c = Command::new("unshare");
        c.args([
            "--net",
            "sh",
            "-c",
            &format!("ip link set lo up && exec python3 {}", driver.display()),
        ]);
        c
    });
    let (_, hport) = held.listen("127.0.0.1", 0, 4, false);
    let hpid = held.pid();
    let mut child = Reaped(
        Command::new(acceptq())
            .args([
                "--all-netns",
                "--interval",
                "200ms",
                "--sample",
                "10ms",
                "--format",
                "json",
                "--no-process",
                "--max-listeners",
                "100000",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(tmp.file("stderr"))
            .spawn()
            .unwrap(),
    );
    let mut reports = Reports::new(&mut child.0);
    let first = reports.until("with the listener", |r| {
        r.iter()
            .any(|m| port_of(m) == Some(hport) && m["name"] == "acceptq_listener")
    });
    let name = first.iter().find(|m| port_of(m) == Some(hport)).unwrap()["tags"]["netns"]
        .as_str()
        .unwrap()
        .to_string();
    drop(held);
    assert!(
        wait_for(STEP, || (!Path::new(&format!("/proc/{hpid}")).exists())
            .then_some(()))
        .is_some(),
        "the namespace's process did not end"
    );
    // Matched by its listener, not its name alone: the kernel may give the freed inode, and
    // so the name `ino-<inode>`, to a namespace made next (another test's).
    let held_there = |r: &[Json]| {
        r.iter()
            .any(|m| port_of(m) == Some(hport) && m["tags"]["netns"] == name.as_str())
    };
    reports.until("without the namespace", |r| !held_there(r));
    for _ in 0..3 {
        let r = reports.next();
        assert!(!held_there(&r), "{name} came back with its listener");
        assert!(
            ns_rows(&r, &stays.name)
                .iter()
                .any(|m| port_of(m) == Some(sport)),
            "the rest lost a listener: {:?}",
            ns_rows(&r, &stays.name)
        );
    }
    assert!(child.0.try_wait().unwrap().is_none(), "acceptq ended");
    drop(child);
    let err = stderr_of(&tmp);
    note!("namespace {name} gone; stderr: {err}");
    assert!(!err.contains("E! ") && !err.contains("panicked"), "{err}");
}

/// A listener closed and opened again on its port between two reports is another socket: its
/// drops (here fewer than the old one's) carry no `drops_delta` that report, never a negative
/// one or one against the old socket; the report after, the delta is back and the kernel's.
fn a_listener_replaced_on_its_port_gets_no_delta_and_never_a_negative_one() {
    let test = "faults::a_listener_replaced_on_its_port_gets_no_delta_and_never_a_negative_one";
    if !netns_gate(test) {
        return;
    }
    let (ns, mut d, id, port) = queued_listener("replaced", 1, 12, true);
    let mut live = Live::start(&ns, &["--no-process"]);
    live.report();
    // Drops grow with the clients' retransmitted SYNs.
    let old = wait_for(Duration::from_secs(10), || {
        let r = live.report();
        let row = listener(&r, port).clone();
        (field(&row, "drops").unwrap() >= 4).then_some(row)
    })
    .expect("the old listener dropped");
    assert!(field(&old, "drops_delta").is_some(), "{old}");
    d.send(&format!("close {id}"));
    d.send("reset");
    let (id2, again) = d.listen("127.0.0.1", port, 1, false);
    assert_eq!(again, port);
    d.connect(id2, 4);
    settle(&ns, port, true);
    let new = live.report();
    let row = listener(&new, port);
    let (old_drops, new_drops) = (field(&old, "drops").unwrap(), field(row, "drops").unwrap());
    note!("old socket: {old}\nnew socket: {row}");
    assert!(
        new_drops < old_drops,
        "the new socket should have fewer drops: {old_drops} then {new_drops}"
    );
    assert_eq!(
        field(row, "drops_delta"),
        None,
        "a delta for a replaced listener: {row}"
    );
    let before = ns.ss_drops(port);
    let next = live.report();
    let after = ns.ss_drops(port);
    let row = listener(&next, port);
    let delta = field(row, "drops_delta").expect("the delta is back the report after");
    let drops = field(row, "drops").unwrap();
    assert!(
        (before..=after).contains(&drops) && delta == drops - new_drops,
        "drops {drops} (kernel {before}..{after}), delta {delta} from {new_drops}"
    );
}

/// Overflows in a named namespace, then the namespace deleted and made again under the same
/// name with fewer: its kernel counters went backwards under one name. `--all-netns` reports
/// the new one with no `*_delta` (never a negative one, nor one against the old namespace), and
/// the report after, deltas again.
fn namespace_counters_lower_after_a_namespace_is_replaced_at_its_name_carry_no_delta() {
    let test =
        "faults::namespace_counters_lower_after_a_namespace_is_replaced_at_its_name_carry_no_delta";
    if !netns_gate(test) {
        return;
    }
    let (ns, d, _, port) = queued_listener("nsback", 1, 12, true);
    let name = ns.name.clone();
    let overflows = |ns: &Netns| ns.tcpext("ListenOverflows");
    assert!(
        wait_for(Duration::from_secs(10), || (overflows(&ns) >= 6)
            .then_some(()))
        .is_some(),
        "no overflows"
    );
    let mut aq = Reaped(
        Command::new(acceptq())
            .args([
                "--all-netns",
                "--signal",
                "stdin",
                "--format",
                "json",
                "--no-process",
                "--max-listeners",
                "100000",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut stdin = aq.0.stdin.take().unwrap();
    let stdout = Lines::new(aq.0.stdout.take().unwrap());
    let ns_row_of = |r: &[Json]| -> Json {
        r.iter()
            .find(|m| m["name"] == "acceptq_netns" && m["tags"]["netns"] == name.as_str())
            .unwrap_or_else(|| panic!("no acceptq_netns row for {name} among {} rows", r.len()))
            .clone()
    };
    ask_report(&mut stdin, &stdout);
    let old = ns_row_of(&ask_report(&mut stdin, &stdout));
    assert!(field(&old, "listen_overflows_delta").is_some(), "{old}");
    let old_overflows = field(&old, "listen_overflows").unwrap();
    assert!(old_overflows >= 6, "{old}");
    drop(d);
    drop(ns);
    let ns = Netns { name: name.clone() };
    run_ok(Command::new("ip").args(["netns", "add", &name]));
    run_ok(&mut ns.cmd("ip", &["link", "set", "lo", "up"]));
    let mut d = ns.driver();
    let (id, _) = d.listen("127.0.0.1", port, 1, false);
    d.connect(id, 3);
    settle(&ns, port, true);
    let new = ns_row_of(&ask_report(&mut stdin, &stdout));
    note!("old namespace: {old}\nnew namespace: {new}");
    let new_overflows = field(&new, "listen_overflows").unwrap();
    assert!(
        new_overflows < old_overflows,
        "{old_overflows} then {new_overflows}"
    );
    for (k, _) in new["fields"].as_object().unwrap() {
        assert!(
            !k.ends_with("_delta"),
            "{k} against the old namespace: {new}"
        );
    }
    let before = overflows(&ns);
    let next = ns_row_of(&ask_report(&mut stdin, &stdout));
    let after = overflows(&ns);
    let now = field(&next, "listen_overflows").unwrap();
    assert!(
        (before..=after).contains(&now),
        "{now} vs kernel {before}..{after}"
    );
    assert_eq!(
        field(&next, "listen_overflows_delta"),
        Some(now - new_overflows),
        "{next}"
    );
    drop(stdin);
    assert!(wait_or_kill(&mut aq.0, STEP).is_some_and(|s| s.success()));
}

/// Starts acceptq writing `--output file` every 100 ms as Prometheus text, in `ns` (the host's
/// listeners stay out of what is compared).
fn output_run(ns: &Netns, file: &Path, tmp: &TempDir) -> Reaped {
    Reaped(
        ns.cmd(
            acceptq(),
            &[
                "--no-process",
                "--format",
                "prometheus",
                "--interval",
                "100ms",
                "--sample",
                "0",
                "--output",
                file.to_str().unwrap(),
            ],
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(tmp.file("stderr"))
        .spawn()
        .unwrap(),
    )
}

/// The file's text once it holds a whole exposition different from `not` (a fresh report: each
/// has a listener's changing depth, see the callers).
fn fresh_exposition(file: &Path, not: &str) -> String {
    wait_for(STEP, || {
        let text = std::fs::read_to_string(file).ok()?;
        (text != not && check_exposition(&text).is_ok()).then_some(text)
    })
    .unwrap_or_else(|| panic!("no fresh report in {}", file.display()))
}

fn depth_in(text: &str, port: u16) -> u64 {
    let needle = format!("port=\"{port}\"");
    text.lines()
        .find(|l| l.starts_with("acceptq_listener_queue_depth{") && l.contains(&needle))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no depth for {port}: {text}"))
}

/// The directory of `--output` removed for 1.5 s (some fifteen reports): one error, no exit, and
/// when it is back the file comes back with reports taken since (the queue grew meanwhile).
fn a_vanished_output_directory_is_one_error_and_fresh_reports_when_it_returns() {
    let test = "faults::a_vanished_output_directory_is_one_error_and_fresh_reports_when_it_returns";
    if !netns_gate(test) {
        return;
    }
    let (ns, mut d, id, port) = queued_listener("outdir", 8, 1, false);
    let tmp = TempDir::new("outdir");
    let dir = tmp.join("textfile");
    std::fs::create_dir(&dir).unwrap();
    let file = dir.join("acceptq.prom");
    let mut child = output_run(&ns, &file, &tmp);
    let text = fresh_exposition(&file, "");
    assert_eq!(depth_in(&text, port), 1);
    std::fs::remove_dir_all(&dir).unwrap();
    d.connect(id, 2);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(child.0.try_wait().unwrap().is_none(), "acceptq gave up");
    std::fs::create_dir(&dir).unwrap();
    let text = fresh_exposition(&file, "");
    assert_eq!(depth_in(&text, port), 3, "a report from after the return");
    std::thread::sleep(Duration::from_millis(300));
    assert!(child.0.try_wait().unwrap().is_none(), "acceptq gave up");
    drop(child);
    said_once_then_written_again(
        &stderr_of(&tmp),
        &file,
        "No such file or directory (os error 2)",
    );
}

/// A tmpfs mounted for one test, unmounted however it ends.
struct Tmpfs(PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// `--output` on a 64 KiB tmpfs, filled to the last byte between reports: each report's temp
/// file fails with ENOSPC, the file the last good report left stays whole (the rename never
/// happens), one error is said, and once space returns fresh reports replace it.
fn a_full_disk_keeps_the_old_output_whole_with_one_error_and_resumes() {
    let test = "faults::a_full_disk_keeps_the_old_output_whole_with_one_error_and_resumes";
    if !netns_gate(test) || !skip_unless(have("mount"), test, "needs mount (util-linux)") {
        return;
    }
    let (ns, mut d, id, port) = queued_listener("diskfull", 8, 1, false);
    let tmp = TempDir::new("diskfull");
    let dir = tmp.join("small");
    std::fs::create_dir(&dir).unwrap();
    run_ok(Command::new("mount").args([
        "-t",
        "tmpfs",
        "-o",
        "size=64k",
        "acceptq-test",
        dir.to_str().unwrap(),
    ]));
    let _mount = Tmpfs(dir.clone());
    let file = dir.join("acceptq.prom");
    let mut child = output_run(&ns, &file, &tmp);
    let good = fresh_exposition(&file, "");
    // Fill every byte left: a filler grown until the file system refuses.
    let filler = dir.join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        let block = vec![0u8; 512];
        while f.write_all(&block).is_ok() {}
        while f.write_all(&block[..1]).is_ok() {}
    }
    let full_since = Instant::now();
    let kept = std::fs::read_to_string(&file).unwrap();
    check_exposition(&kept).unwrap();
    d.connect(id, 2);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(child.0.try_wait().unwrap().is_none(), "acceptq gave up");
    let during = std::fs::read_to_string(&file).unwrap();
    assert_eq!(during, kept, "the file changed while the disk was full");
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
    std::fs::remove_file(&filler).unwrap();
    let text = fresh_exposition(&file, &kept);
    assert_eq!(
        depth_in(&text, port),
        3,
        "a report from after the space returned"
    );
    note!(
        "full for {:?}; kept {} bytes ({} at first)",
        full_since.elapsed(),
        kept.len(),
        good.len()
    );
    std::thread::sleep(Duration::from_millis(300));
    drop(child);
    said_once_then_written_again(
        &stderr_of(&tmp),
        &file,
        "No space left on device (os error 28)",
    );
}

/// stderr holds exactly one error for the failing `--output` and one line for its return.
fn said_once_then_written_again(err: &str, file: &Path, why: &str) {
    let file = file.display();
    assert_eq!(
        err.lines().collect::<Vec<_>>(),
        [
            format!("E! [acceptq] report not written: --output {file}: {why} (said once; acceptq keeps trying each report)"),
            format!("I! [acceptq] --output {file}: reports are written again"),
        ],
        "{err}"
    );
}
