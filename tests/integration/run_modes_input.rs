//! Run modes at their edges: flags that would do nothing, closed and non-blocking stdout, odd
//! stdin, filters matching nothing, namespace errors, and bad input as an unprivileged user.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

tests![
    flags_that_would_do_nothing_exit_2_with_the_reason,
    sample_under_10ms_exits_2_and_0_still_turns_it_off,
    a_file_that_is_no_network_namespace_is_called_so,
    interval_mode_exits_within_1s_of_stdout_closing,
    stdin_mode_exits_within_1s_of_stdout_closing,
    window_exits_within_1s_of_stdout_closing,
    non_utf8_stdin_lines_each_get_a_report,
    a_64_mib_stdin_line_costs_no_memory,
    nonblocking_stdout_pipe_gets_whole_lines_and_reports,
    a_filter_matching_no_listener_says_so_once,
    missing_output_directory_is_the_only_message_as_nobody,
    joining_a_namespace_unprivileged_names_cap_sys_admin,
    an_output_that_is_no_regular_file_is_refused_and_kept,
    an_output_symlink_has_its_target_replaced,
    an_output_name_of_255_bytes_is_written,
    a_vanished_output_directory_is_said_once_and_its_return_once,
    a_bad_collectd_hostname_is_said_once_and_the_systems_used,
    a_namespace_name_that_is_not_utf8_can_be_given_to_netns,
    sigterm_and_sigint_end_the_run_with_status_0_and_whole_lines,
    as_pid_1_of_a_pid_namespace_sigterm_still_ends_the_run
];

/// Runs acceptq with `args`; expects `code`, nothing on stdout, and every stderr line an
/// `E! ` error, one of them containing `needle`.
fn refused(args: &[&str], code: i32, needle: &str) {
    let out = bounded(Command::new(acceptq()).args(args));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
    assert!(err.lines().all(|l| l.starts_with("E! ")), "{args:?}: {err}");
    assert!(err.contains(needle), "{args:?}: want {needle:?} in {err}");
    assert!(out.stdout.is_empty(), "{args:?}");
}

/// Runs `cmd` to its end, or kills it after STEP: a flag accepted by mistake may run forever.
fn bounded(cmd: &mut Command) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipes = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let readers = std::thread::spawn(move || {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let _ = pipes.0.read_to_end(&mut out);
        let _ = pipes.1.read_to_end(&mut err);
        (out, err)
    });
    let status = wait_or_kill(&mut child, STEP);
    let (stdout, stderr) = readers.join().unwrap();
    let status = status.unwrap_or_else(|| {
        panic!(
            "{cmd:?} still running after {STEP:?}: {}",
            String::from_utf8_lossy(&stderr)
        )
    });
    Output {
        status,
        stdout,
        stderr,
    }
}

fn flags_that_would_do_nothing_exit_2_with_the_reason() {
    refused(
        &["--interval", "-5s"],
        2,
        "invalid value '-5s' for '--interval <DUR>': \"-5s\": a duration cannot be negative",
    );
    refused(
        &["--interval", "1ms"],
        2,
        "\"1ms\" is too short: at least 100ms",
    );
    refused(
        &["--once", "--interval", "5s"],
        2,
        "--interval does nothing with --once",
    );
    refused(
        &["--signal", "stdin", "--interval", "5s"],
        2,
        "--interval does nothing with --signal stdin",
    );
    refused(
        &["--once", "--hostname", "web1"],
        2,
        "--hostname names the host in collectd identifiers and does nothing without --format collectd",
    );
    for bad in ["", "web 1", "a/b"] {
        refused(
            &["--once", "--format", "collectd", "--hostname", bad],
            2,
            &format!("--hostname {bad:?}: a collectd host is 1 to 127 bytes"),
        );
    }
    refused(
        &["--once", "--port", "0"],
        2,
        "--port 0 matches no listener: a listening socket has a port from 1 to 65535",
    );
    refused(
        &["--interval", "1s", "--sample", "2s"],
        2,
        "--sample 2s is longer than --interval 1s",
    );
    refused(
        &["--once", "--window", "200ms", "--sample", "1s"],
        2,
        "--sample 1s is longer than --window 200ms",
    );
}

fn sample_under_10ms_exits_2_and_0_still_turns_it_off() {
    refused(
        &["--sample", "1us"],
        2,
        "\"1us\" is too short: at least 10ms, or 0 to turn sampling off",
    );
    refused(&["--sample", "9ms"], 2, "at least 10ms");
    let out = bounded(Command::new(acceptq()).args([
        "--once",
        "--window",
        "50ms",
        "--sample",
        "0",
        "--no-process",
    ]));
    assert!(out.status.success(), "{out:?}");
}

fn a_file_that_is_no_network_namespace_is_called_so() {
    refused(
        &["--once", "--netns", "/etc/passwd"],
        2,
        "--netns /etc/passwd: /etc/passwd is not a network namespace",
    );
}

// ---------------------------------------------------------------------------------------------
// A closed stdout ends acceptq at once, whatever it is waiting for.

/// Reads the first line of `child`'s stdout on this thread (so dropping it really closes the
/// pipe), killing the child if none comes within STEP.
fn first_line(child: &mut Child) -> String {
    let pid = child.id();
    let (cancel, cancelled) = std::sync::mpsc::channel::<()>();
    let guard = std::thread::spawn(move || {
        if cancelled.recv_timeout(STEP) == Err(std::sync::mpsc::RecvTimeoutError::Timeout) {
            // SAFETY: kill has no memory effects; the child is not reaped before we are joined.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    });
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    let _ = stdout.read_line(&mut line);
    drop(cancel);
    guard.join().unwrap();
    line
}

/// Waits for `child` after its stdout was closed; it must exit 0 within a second.
fn exits_at_once(child: &mut Child, closed: Instant, what: &str) {
    let status = wait_or_kill(child, Duration::from_secs(5));
    let took = closed.elapsed();
    let status = status.unwrap_or_else(|| panic!("{what}: still running 5 s after stdout closed"));
    assert_eq!(status.code(), Some(0), "{what}");
    assert!(
        took < Duration::from_secs(1),
        "{what}: took {took:?} to notice stdout closed"
    );
}

fn interval_mode_exits_within_1s_of_stdout_closing() {
    let mut child = Reaped(
        Command::new(acceptq())
            .args(["--interval", "1h", "--no-process", "--format", "json"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let line = first_line(&mut child.0);
    assert!(line.starts_with('{'), "{line}");
    exits_at_once(&mut child.0, Instant::now(), "--interval 1h");
}

fn stdin_mode_exits_within_1s_of_stdout_closing() {
    let mut child = Reaped(
        Command::new(acceptq())
            .args(["--signal", "stdin", "--no-process", "--format", "json"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // stdin stays open and silent: only stdout closing can end the run.
    let mut stdin = child.0.stdin.take().unwrap();
    stdin.write_all(b"\n").unwrap();
    let line = first_line(&mut child.0);
    assert!(line.starts_with('{'), "{line}");
    exits_at_once(&mut child.0, Instant::now(), "--signal stdin");
    drop(stdin);
}

fn window_exits_within_1s_of_stdout_closing() {
    let mut child = Reaped(
        Command::new(acceptq())
            .args(["--once", "--window", "1h", "--no-process"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // Let the baseline reading happen, so the wait is what is tested.
    std::thread::sleep(Duration::from_millis(200));
    drop(child.0.stdout.take());
    exits_at_once(&mut child.0, Instant::now(), "--once --window 1h");
}

// ---------------------------------------------------------------------------------------------
// stdin: a line is a line, whatever its bytes and length.

fn non_utf8_stdin_lines_each_get_a_report() {
    let mut child = Piped::spawn(
        Command::new(acceptq())
            .args(["--signal", "stdin", "--no-process", "--port", "1"])
            .stdin(Stdio::piped()),
    );
    // Three lines (the last without its newline) in bytes no UTF-8 reader accepts.
    child
        .child
        .stdin
        .take()
        .unwrap()
        .write_all(b"\n\xff\xfe\n\xc3\x28")
        .unwrap();
    let Finished {
        status,
        stdout,
        stderr,
    } = child.wait(STEP).expect("exits on EOF");
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("E! "), "{stderr}");
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.starts_with("acceptq_netns"))
            .count(),
        3,
        "one report per line: {stdout}"
    );
}

/// Peak resident memory of a live process, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

fn a_64_mib_stdin_line_costs_no_memory() {
    let mut child = Reaped(
        Command::new(acceptq())
            .args([
                "--signal",
                "stdin",
                "--no-process",
                "--format",
                "json",
                "--port",
                "1",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut stdin = child.0.stdin.take().unwrap();
    let stdout = Lines::new(child.0.stdout.take().unwrap());
    let writer = std::thread::spawn(move || {
        let chunk = vec![b'x'; 1 << 20];
        for _ in 0..64 {
            stdin.write_all(&chunk).unwrap();
        }
        stdin.write_all(b"\n").unwrap();
        stdin
    });
    let line = stdout.expect(STEP, "the report the long line asked for");
    assert!(line.contains("acceptq_netns"), "{line}");
    let stdin = writer.join().unwrap();
    let peak = peak_rss_kib(child.0.id());
    assert!(
        peak < 32 * 1024,
        "peak RSS {peak} KiB after a 64 MiB line: the line was kept"
    );
    drop(stdin);
    let status = wait_or_kill(&mut child.0, STEP).expect("exits on EOF");
    assert!(status.success(), "{status}");
}

// ---------------------------------------------------------------------------------------------
// A non-blocking stdout gets whole reports.

fn nonblocking_stdout_pipe_gets_whole_lines_and_reports() {
    let test = "nonblocking_stdout_pipe_gets_whole_lines_and_reports";
    if !netns_gate(test) {
        return;
    }
    let ns = Netns::new("nonblock");
    let mut d = ns.driver();
    // Enough listeners that one report is far above PIPE_BUF (4096 bytes), the size up to
    // which the kernel writes to a pipe all or nothing.
    for _ in 0..40 {
        d.listen("127.0.0.1", 0, 8, false);
    }
    let script = repo().join("tests/support/nonblocking_reader.py");
    let out = ns
        .cmd(
            "python3",
            &[
                script.to_str().unwrap(),
                acceptq(),
                "--format",
                "json",
                "--interval",
                "100ms",
                "--no-process",
            ],
        )
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}{err}");
    let words: Vec<u64> = said
        .strip_prefix("ok ")
        .unwrap_or_else(|| panic!("{said}{err}"))
        .split_whitespace()
        .map(|w| w.parse().unwrap())
        .collect();
    let (reports, biggest) = (words[1], words[2]);
    assert!(reports >= 5, "only {reports} reports: {said}{err}");
    assert!(
        biggest > 4096,
        "a report of {biggest} bytes never splits in a pipe: the test proves nothing"
    );
    assert!(!err.contains("E! "), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Filters that match nothing say so.

fn run_once(args: &[&str]) -> Output {
    let mut all = vec!["--once", "--format", "json"];
    all.extend_from_slice(args);
    Command::new(acceptq()).args(&all).output().unwrap()
}

fn a_filter_matching_no_listener_says_so_once() {
    for (args, flags) in [
        (&["--no-process", "--port", "1"][..], "--port 1"),
        (
            &["--no-process", "--address", "192.0.2.*"],
            "--address 192.0.2.*",
        ),
        (
            &["--process", "no-such-process-aq"],
            "--process no-such-process-aq",
        ),
    ] {
        let out = run_once(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {err}");
        let report = json_lines(&out.stdout);
        assert_eq!(report.len(), 1, "only acceptq_netns: {report:?}");
        let said: Vec<&str> = err
            .lines()
            .filter(|l| l.contains("no listener matches"))
            .collect();
        assert_eq!(said.len(), 1, "{args:?}: {err}");
        assert!(
            said[0].starts_with(&format!("W! [acceptq] no listener matches {flags} (")),
            "{said:?}"
        );
    }
    // A filter that matches says nothing.
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port().to_string();
    let out = run_once(&["--no-process", "--port", &port]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("no listener matches"), "{err}");
    assert_eq!(json_lines(&out.stdout).len(), 2);
}

// ---------------------------------------------------------------------------------------------
// As an unprivileged user.

/// `setpriv` and the nobody user and nogroup group, to run acceptq unprivileged.
fn nobody_gate(test: &str) -> bool {
    let known = |db: &str, name: &str| {
        Command::new("getent")
            .args([db, name])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    netns_gate(test)
        && skip_unless(
            have("setpriv") && known("passwd", "nobody") && known("group", "nogroup"),
            test,
            "needs setpriv (util-linux), the nobody user and the nogroup group",
        )
}

/// The acceptq binary as a path `nobody` can execute: the build's own when every directory on
/// the way is searchable by others, else a mode-755 copy in `tmp`.
fn binary_for_nobody(tmp: &TempDir) -> PathBuf {
    let bin = Path::new(acceptq());
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode();
    let reachable = bin.ancestors().skip(1).all(|d| mode(d) & 0o001 != 0);
    if reachable && mode(bin) & 0o005 == 0o005 {
        return bin.to_path_buf();
    }
    let copy = tmp.0.join("acceptq");
    std::fs::copy(bin, &copy).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
    copy
}

/// Runs `bin args` as nobody inside `ns`.
fn as_nobody(ns: &Netns, bin: &Path, args: &[&str]) -> Output {
    let mut all = vec![
        "--reuid=nobody",
        "--regid=nogroup",
        "--clear-groups",
        bin.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    ns.cmd("setpriv", &all).output().unwrap()
}

fn missing_output_directory_is_the_only_message_as_nobody() {
    let test = "missing_output_directory_is_the_only_message_as_nobody";
    if !nobody_gate(test) {
        return;
    }
    // A listener of root's that nobody cannot attribute: reading /proc would warn.
    let ns = Netns::new("out-nobody");
    let mut d = ns.driver();
    d.listen("127.0.0.1", 0, 8, false);
    let tmp = TempDir::new("out-nobody");
    let bin = binary_for_nobody(&tmp);
    let out = as_nobody(
        &ns,
        &bin,
        &["--once", "--output", "/nonexistent-dir-acceptq/x.prom"],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(
        err.lines().collect::<Vec<_>>(),
        vec![
            "E! [acceptq] --output /nonexistent-dir-acceptq/x.prom: cannot write a file in \
             /nonexistent-dir-acceptq: No such file or directory (os error 2)"
        ]
    );
}

fn joining_a_namespace_unprivileged_names_cap_sys_admin() {
    let test = "joining_a_namespace_unprivileged_names_cap_sys_admin";
    if !nobody_gate(test) {
        return;
    }
    let ns = Netns::new("join-nobody");
    let tmp = TempDir::new("join-nobody");
    let bin = binary_for_nobody(&tmp);
    // From our own namespace, as acceptq would be run: `ip netns exec` would join it first.
    let out = Command::new("setpriv")
        .args([
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            bin.to_str().unwrap(),
            "--once",
            "--netns",
            &ns.name,
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(
        err.trim_end(),
        format!(
            "E! [acceptq] --netns {0}: cannot join /run/netns/{0}: Operation not permitted \
             (os error 1) (joining another network namespace needs CAP_SYS_ADMIN)",
            ns.name
        )
    );

    let out = Command::new("setpriv")
        .args([
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            bin.to_str().unwrap(),
            "--once",
            "--all-netns",
            "--no-process",
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.lines()
            .any(|l| l.starts_with("W! [acceptq] --all-netns: netns ")
                && l.contains(": cannot join /run/netns/")
                && l.contains("needs CAP_SYS_ADMIN")),
        "{err}"
    );
    assert!(!err.contains("--netns"), "a flag never given: {err}");
}

// ---------------------------------------------------------------------------------------------
// `--output` replaces a regular file only, and says an outage once.

fn mknod(path: &Path, kind: &str, extra: &[&str]) -> bool {
    Command::new("mknod")
        .args(["-m", "666", path.to_str().unwrap(), kind])
        .args(extra)
        .status()
        .is_ok_and(|s| s.success())
}

fn an_output_that_is_no_regular_file_is_refused_and_kept() {
    // Made here, never the real /dev nodes: a mistake would replace the system's /dev/null.
    let tmp = TempDir::new("out-special");
    let fifo = tmp.join("ff");
    assert!(mknod(&fifo, "p", &[]), "mknod p");
    let mut cases = vec![(fifo, "is a FIFO, not a regular file")];
    let null = tmp.join("nulldev");
    if mknod(&null, "c", &["1", "3"]) {
        cases.push((null, "is a character device, not a regular file"));
    } else {
        note!("not root: the character device case is left out");
    }
    let link = tmp.join("link.prom");
    std::os::unix::fs::symlink(&cases[0].0, &link).unwrap();
    let via_link = format!("links to {}, which is a FIFO", cases[0].0.display());
    cases.push((link.clone(), via_link.as_str()));
    for (path, what) in &cases {
        let before = std::fs::symlink_metadata(path).unwrap().file_type();
        refused(
            &["--once", "--no-process", "--output", path.to_str().unwrap()],
            1,
            &format!("--output {}: {what}", path.display()),
        );
        let after = std::fs::symlink_metadata(path).unwrap().file_type();
        assert_eq!(before, after, "{} was replaced", path.display());
    }
    assert_eq!(
        std::fs::read_dir(&tmp.0).unwrap().count(),
        cases.len(),
        "no temp file left behind"
    );
}

fn an_output_symlink_has_its_target_replaced() {
    let tmp = TempDir::new("out-link");
    let real = tmp.join("real.prom");
    std::fs::write(&real, "").unwrap();
    let link = tmp.join("link.prom");
    std::os::unix::fs::symlink("real.prom", &link).unwrap();
    let out = bounded(Command::new(acceptq()).args([
        "--once",
        "--no-process",
        "--format",
        "prometheus",
        "--output",
        link.to_str().unwrap(),
    ]));
    assert!(out.status.success(), "{out:?}");
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    let text = std::fs::read_to_string(&real).unwrap();
    assert!(
        text.contains("# TYPE acceptq_netns_somaxconn gauge"),
        "{text}"
    );
}

fn an_output_name_of_255_bytes_is_written() {
    let tmp = TempDir::new("out-long");
    let file = tmp.join(&format!("{}.prom", "n".repeat(250)));
    let out = bounded(Command::new(acceptq()).args([
        "--once",
        "--no-process",
        "--format",
        "prometheus",
        "--output",
        file.to_str().unwrap(),
    ]));
    assert!(out.status.success(), "{out:?}");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.contains("# TYPE acceptq_netns_somaxconn gauge"),
        "{text}"
    );
    assert_eq!(
        std::fs::read_dir(&tmp.0).unwrap().count(),
        1,
        "temp file left behind"
    );
}

fn a_vanished_output_directory_is_said_once_and_its_return_once() {
    let logs = TempDir::new("out-gone-log");
    let tmp = TempDir::new("out-gone");
    let dir = tmp.join("textfile");
    std::fs::create_dir(&dir).unwrap();
    let file = dir.join("acceptq.prom");
    let mut child = Reaped(
        Command::new(acceptq())
            .args([
                "--no-process",
                "--format",
                "prometheus",
                "--interval",
                "100ms",
                "--sample",
                "0",
                "--output",
                file.to_str().unwrap(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(logs.file("err"))
            .spawn()
            .unwrap(),
    );
    assert!(wait_for(STEP, || file.exists().then_some(())).is_some());
    std::fs::remove_dir_all(&dir).unwrap();
    // 15 reports or so fail meanwhile.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(child.0.try_wait().unwrap().is_none(), "acceptq gave up");
    std::fs::create_dir(&dir).unwrap();
    assert!(
        wait_for(STEP, || file.exists().then_some(())).is_some(),
        "reports resume once the directory is back"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(child.0.try_wait().unwrap().is_none(), "acceptq gave up");
    drop(child);
    let err = std::fs::read_to_string(logs.join("err")).unwrap();
    // Only what is said of the output counts: this runs in the host's namespace, whose other
    // listeners (other tests', the host's) may bring warnings of their own.
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("--output")).collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(
        lines[0].starts_with(&format!(
            "E! [acceptq] report not written: --output {}: No such file or directory",
            file.display()
        )),
        "{err}"
    );
    assert_eq!(
        lines[1],
        format!(
            "I! [acceptq] --output {}: reports are written again",
            file.display()
        )
    );
}

fn a_bad_collectd_hostname_is_said_once_and_the_systems_used() {
    let system = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let system = system.trim();
    for bad in ["web 1", "a/b"] {
        let out = bounded(
            Command::new(acceptq())
                .args(["--once", "--format", "collectd", "--no-process"])
                .env("COLLECTD_HOSTNAME", bad),
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{err}");
        // Under collectd a warning is a notification on stdout: stderr is logged as an error.
        assert!(!err.contains("COLLECTD_HOSTNAME"), "{err}");
        let text = String::from_utf8_lossy(&out.stdout);
        let said: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("COLLECTD_HOSTNAME"))
            .collect();
        assert_eq!(said.len(), 1, "{text}");
        let escaped = format!("{bad:?}")
            .replace('\\', "\\\\")
            .replace('"', "\\\"");
        assert!(
            said[0].starts_with("PUTNOTIF severity=warning time=")
                && said[0].contains(&format!(
                    " host={system} plugin=acceptq message=\"COLLECTD_HOSTNAME {escaped}: "
                ))
                && said[0].ends_with("; using the system's host name\""),
            "{text}"
        );
        assert!(
            text.lines()
                .all(|l| l.starts_with(&format!("PUTVAL \"{system}/acceptq-"))
                    || l.starts_with("PUTNOTIF ")),
            "{text}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// `--netns` takes any name `--all-netns` would watch.

/// An `ip netns` namespace of any bytes, deleted when the test ends.
struct RawNetns(std::ffi::OsString);

impl Drop for RawNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del"])
            .arg(&self.0)
            .status();
    }
}

fn a_namespace_name_that_is_not_utf8_can_be_given_to_netns() {
    use std::os::unix::ffi::OsStringExt;
    if !netns_gate("run_modes_input::a_namespace_name_that_is_not_utf8_can_be_given_to_netns") {
        return;
    }
    let mut name = b"aqx-bad\xffns".to_vec();
    name.extend_from_slice(std::process::id().to_string().as_bytes());
    let ns = RawNetns(std::ffi::OsString::from_vec(name));
    run_ok(Command::new("ip").args(["netns", "add"]).arg(&ns.0));
    let out = bounded(
        Command::new(acceptq())
            .args(["--once", "--no-process", "--format", "json", "--netns"])
            .arg(&ns.0)
            .args(["--netns", "/proc/self/ns/net"]),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let want = format!("/run/netns/aqx-bad\\xffns{}", std::process::id());
    let tags: Vec<String> = json_lines(&out.stdout)
        .iter()
        .filter(|m| m["name"] == "acceptq_netns")
        .map(|m| m["tags"]["netns"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(tags, [want.as_str(), "/proc/self/ns/net"], "{err}");
}

/// Sends `signal` to `pid` and waits up to 1 s for `child` to exit; returns its status.
fn signalled(child: &mut Child, pid: u32, signal: i32) -> std::process::ExitStatus {
    // SAFETY: kill has no memory preconditions.
    unsafe { libc::kill(pid as libc::pid_t, signal) };
    let sent = Instant::now();
    let status = wait_or_kill(child, Duration::from_secs(5)).expect("acceptq exits");
    assert!(
        sent.elapsed() < Duration::from_secs(1),
        "took {:?} to exit",
        sent.elapsed()
    );
    status
}

fn sigterm_and_sigint_end_the_run_with_status_0_and_whole_lines() {
    for signal in [libc::SIGTERM, libc::SIGINT] {
        let mut child = Reaped(
            Command::new(acceptq())
                .args(["--interval", "1h", "--no-process", "--format", "json"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let mut out = BufReader::new(child.0.stdout.take().unwrap());
        let mut first = String::new();
        out.read_line(&mut first).unwrap();
        // Read on while the signal lands: a host with many listeners has a report larger than
        // the pipe, and a reader that stops would hold acceptq in its stop grace.
        let reader = std::thread::spawn(move || {
            let mut rest = String::new();
            out.read_to_string(&mut rest).map(|_| rest)
        });
        let pid = child.0.id();
        let status = signalled(&mut child.0, pid, signal);
        assert!(status.success(), "signal {signal}: {status:?}");
        let rest = reader.join().unwrap().unwrap();
        for line in first.lines().chain(rest.lines()) {
            serde_json::from_str::<Json>(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        }
        let mut err = String::new();
        child
            .0
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        // Nothing goes wrong; the host's own listeners may bring a warning of their own.
        assert!(!err.contains("E! "), "signal {signal}: {err}");
    }
}

/// A container run without an init: the kernel ignores signals pid 1 has no handler for.
fn as_pid_1_of_a_pid_namespace_sigterm_still_ends_the_run() {
    let test = "run_modes_input::as_pid_1_of_a_pid_namespace_sigterm_still_ends_the_run";
    if !(skip_unless(is_root(), test, "needs root to make a pid namespace")
        && skip_unless(have("unshare"), test, "needs unshare (util-linux)"))
    {
        return;
    }
    let mut child = Reaped(
        Command::new("unshare")
            .args(["--pid", "--fork", "--kill-child", acceptq()])
            .args(["--interval", "1h", "--no-process", "--format", "json"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut out = BufReader::new(child.0.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    // acceptq is the only child of unshare, and pid 1 inside.
    let inner = std::fs::read_to_string(format!("/proc/{}/task/{0}/children", child.0.id()))
        .unwrap()
        .trim()
        .parse::<u32>()
        .unwrap();
    let status_of = std::fs::read_to_string(format!("/proc/{inner}/status")).unwrap();
    assert!(
        status_of
            .lines()
            .any(|l| l.starts_with("NSpid:") && l.ends_with("\t1")),
        "{status_of}"
    );
    // Drained while the signal lands, as above.
    let reader = std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    let status = signalled(&mut child.0, inner, libc::SIGTERM);
    assert!(status.success(), "{status:?}");
    reader.join().unwrap().unwrap();
}
