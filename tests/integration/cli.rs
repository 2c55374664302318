//! Run modes driven as the agents drive them, and bad input. These need no privilege: they
//! read acceptq's own namespace.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

tests![
    three_newlines_three_reports_then_exit_on_eof,
    default_mode_reports_at_once,
    collectd_mode_ignores_closed_stdin_and_keeps_reporting,
    closed_stdout_exits_zero_without_a_panic,
    bad_input_gets_a_clear_error,
    help_and_version_go_to_stdout,
    window_reports_deltas_over_the_window,
    output_file_is_replaced_whole
];

fn three_newlines_three_reports_then_exit_on_eof() {
    let mut child = Reaped(
        Command::new(acceptq())
            .args(["--signal", "stdin", "--no-process"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut stdin = child.0.stdin.take().unwrap();
    let stdout = Lines::new(child.0.stdout.take().unwrap());
    for n in 1..=3 {
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
        // Each report ends with its acceptq_netns line.
        while !stdout
            .expect(STEP, &format!("report {n}"))
            .starts_with("acceptq_netns")
        {}
    }
    let closed = Instant::now();
    drop(stdin);
    let status = wait_or_kill(&mut child.0, Duration::from_secs(5));
    assert!(
        closed.elapsed() < Duration::from_secs(1),
        "took {:?} to exit after EOF",
        closed.elapsed()
    );
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    assert_eq!(
        stdout.next(Duration::from_millis(100)),
        None,
        "no report without a newline"
    );
}

fn default_mode_reports_at_once() {
    let mut child = Reaped(
        Command::new(acceptq())
            .args(["--interval", "1h", "--no-process"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stdout = Lines::new(child.0.stdout.take().unwrap());
    let start = Instant::now();
    while !stdout
        .expect(STEP, "the first report")
        .starts_with("acceptq_netns")
    {}
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "first report took {:?}",
        start.elapsed()
    );
}

fn collectd_mode_ignores_closed_stdin_and_keeps_reporting() {
    let mut child = Reaped(
        Command::new(acceptq())
            .args(["--format", "collectd", "--no-process"])
            .env("COLLECTD_INTERVAL", "0.200")
            .env("COLLECTD_HOSTNAME", "test-host.example")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stdout = Lines::new(child.0.stdout.take().unwrap());
    let mut netns_lines = 0;
    let start = Instant::now();
    while netns_lines < 4 {
        let line = stdout.expect(STEP, "the next PUTVAL");
        assert!(
            line.starts_with("PUTVAL \"test-host.example/acceptq-"),
            "{line}"
        );
        assert!(line.contains(" interval=0.200 "), "{line}");
        assert!(line.len() < 1198);
        if line.contains("/acceptq-netns/gauge-somaxconn") {
            netns_lines += 1;
        }
    }
    assert!(
        child.0.try_wait().unwrap().is_none(),
        "still running with stdin closed"
    );
    assert!(
        start.elapsed() >= Duration::from_millis(550),
        "reports follow COLLECTD_INTERVAL"
    );
}

fn closed_stdout_exits_zero_without_a_panic() {
    // `acceptq --format json | head -n 1`. Filtered to a port nobody uses, so what the host
    // runs (other tests' listeners beyond --max-listeners, say) cannot put a warning on stderr.
    let mut child = Reaped(
        Command::new(acceptq())
            .args([
                "--format",
                "json",
                "--interval",
                "100ms",
                "--no-process",
                "--port",
                "1",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // Read on this thread, so that dropping the reader really closes the pipe; the first report
    // comes at once, and a hang would still end at the kill below.
    let pid = child.0.id();
    let (cancel, cancelled) = std::sync::mpsc::channel::<()>();
    let guard = std::thread::spawn(move || {
        if cancelled.recv_timeout(STEP) == Err(std::sync::mpsc::RecvTimeoutError::Timeout) {
            // SAFETY: kill has no memory effects; the child is not reaped before we are joined.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    });
    let mut stdout = BufReader::new(child.0.stdout.take().unwrap());
    let mut first = String::new();
    let _ = stdout.read_line(&mut first);
    drop(cancel);
    guard.join().unwrap();
    assert!(first.starts_with('{'), "{first}");
    drop(stdout);
    let status = wait_or_kill(&mut child.0, Duration::from_secs(3));
    let mut err = String::new();
    child
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = status.expect("acceptq kept running with stdout closed");
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(
        err.lines()
            .all(|l| l.contains("no listener matches --port 1")),
        "stderr: {err}"
    );
}

fn fails_with(args: &[&str], code: i32, needle: &str) {
    let out = Command::new(acceptq()).args(args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
    assert!(
        err.lines().all(|l| l.starts_with("E! ")),
        "{args:?}: every line has a level prefix: {err}"
    );
    assert!(err.contains(needle), "{args:?}: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(out.stdout.is_empty());
}

fn bad_input_gets_a_clear_error() {
    fails_with(&["--bogus"], 2, "--bogus");
    fails_with(&["--interval", "ten"], 2, "--interval");
    fails_with(&["--sample", "5 parsecs"], 2, "unknown unit");
    fails_with(&["--format", "xml"], 2, "xml");
    fails_with(&["--window", "5s"], 2, "--once");
    fails_with(
        &["--signal", "stdin", "--format", "collectd"],
        2,
        "--signal stdin",
    );
    fails_with(&["--interval", "100000h"], 2, "at most 24h");
    fails_with(
        &["--once", "--output", "/nonexistent-dir-acceptq/x.prom"],
        1,
        "--output /nonexistent-dir-acceptq/x.prom",
    );
}

fn help_and_version_go_to_stdout() {
    let out = Command::new(acceptq()).arg("--help").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("--signal"));
    let out = Command::new(acceptq()).arg("--version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("acceptq "));
}

fn window_reports_deltas_over_the_window() {
    let start = Instant::now();
    let out = Command::new(acceptq())
        .args(["--once", "--window", "300ms", "--format", "json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(start.elapsed() >= Duration::from_millis(300));
    let report = json_lines(&out.stdout);
    let n = netns_row(&report);
    assert!(
        n["fields"].get("listen_overflows_delta").is_some(),
        "window gives deltas: {n}"
    );
    assert_eq!(
        report
            .iter()
            .filter(|m| m["name"] == "acceptq_netns")
            .count(),
        1,
        "one report"
    );
}

fn output_file_is_replaced_whole() {
    let tmp = TempDir::new("out");
    let dir = &tmp.0;
    let file = dir.join("acceptq.prom");
    let out = Command::new(acceptq())
        .args([
            "--once",
            "--format",
            "prometheus",
            "--output",
            file.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty());
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.contains("# TYPE acceptq_netns_somaxconn gauge"),
        "{text}"
    );
    let leftovers: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "temp file left behind: {leftovers:?}");
}
