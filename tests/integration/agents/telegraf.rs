//! Telegraf, by contract: not installable here, so a harness does what `inputs.execd` does with
//! the command of `conf/telegraf.conf` (a newline per interval, each written within 1 s; stdin
//! closed to stop, SIGTERM 5 s later; stderr logged at the level of its prefix), and what
//! `inputs.exec` does with `conf/telegraf-exec.conf` (one run, killed after 5 s).

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::INSTALLED;
use crate::support::formats::strict_influx;
use crate::support::*;

tests![
    execd_one_report_per_newline_and_exit_0_on_eof,
    exec_fallback_once_parses_strictly,
];

/// The value of the first uncommented `key = value` line of a TOML snippet.
pub fn toml_setting(text: &str, key: &str) -> Option<String> {
    text.lines().map(str::trim).find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (!l.starts_with('#') && k.trim() == key).then(|| v.trim().to_string())
    })
}

/// The strings of a TOML array, nested or not: `["a", "b"]`, `[["a", "b"]]`. Only what the
/// snippets use: double-quoted strings without escapes.
pub fn toml_strings(value: &str) -> Vec<String> {
    assert!(
        !value.contains('\\') && !value.contains('\''),
        "keep the snippet's strings plain: {value}"
    );
    value
        .split('"')
        .skip(1)
        .step_by(2)
        .map(String::from)
        .collect()
}

/// A snippet's argv with the binary replaced by the one under test.
pub fn substitute(argv: &[String]) -> Vec<String> {
    assert_eq!(
        argv.first().map(String::as_str),
        Some(INSTALLED),
        "{argv:?}"
    );
    let mut out = argv.to_vec();
    out[0] = acceptq().to_string();
    out
}

/// A stderr line is logged at the level of its prefix; Telegraf logs any other as an error.
fn telegraf_level(line: &str) -> Option<&'static str> {
    [
        ("E! ", "error"),
        ("W! ", "warn"),
        ("I! ", "info"),
        ("D! ", "debug"),
    ]
    .iter()
    .find(|(p, _)| line.starts_with(p))
    .map(|(_, l)| *l)
}

fn execd_one_report_per_newline_and_exit_0_on_eof() {
    let text = conf("telegraf.conf");
    assert!(text.contains("[[inputs.execd]]"), "{text}");
    assert_eq!(toml_setting(&text, "signal").as_deref(), Some("\"STDIN\""));
    assert_eq!(
        toml_setting(&text, "data_format").as_deref(),
        Some("\"influx\"")
    );
    let argv = substitute(&toml_strings(
        &toml_setting(&text, "command").expect("command in conf/telegraf.conf"),
    ));

    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();

    // Telegraf's side: a writer with a 1 s deadline per newline, a line reader on stdout, and
    // a logger on stderr.
    let (tick_tx, tick_rx) = mpsc::channel::<bool>();
    let (wrote_tx, wrote_rx) = mpsc::channel::<std::io::Result<()>>();
    let writer = std::thread::spawn(move || {
        let mut stdin = stdin;
        // `false` closes stdin, as Telegraf does to stop the process.
        while let Ok(true) = tick_rx.recv() {
            let r = stdin.write_all(b"\n").and_then(|_| stdin.flush());
            if wrote_tx.send(r).is_err() {
                return;
            }
        }
    });
    let (line_tx, line_rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line_tx.send(line).is_err() {
                break;
            }
        }
    });
    let logger = std::thread::spawn(move || {
        let (mut logged, mut unprefixed) = (Vec::new(), Vec::new());
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            match telegraf_level(&line) {
                Some(level) => logged.push(format!("telegraf would log at {level}: {line}")),
                None => unprefixed.push(line),
            }
        }
        (logged, unprefixed)
    });

    let interval = Duration::from_millis(300);
    let ticks = 6;
    let mut lines: Vec<String> = Vec::new();
    let mut reports = 0;
    let is_report_end =
        |l: &String| l.starts_with("acceptq_netns ") || l.starts_with("acceptq_netns,");
    let mut next = Instant::now();
    for tick in 1..=ticks {
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        next += interval;
        tick_tx.send(true).unwrap();
        match wrote_rx.recv_timeout(Duration::from_secs(1)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("writing the newline failed: {e}"),
            Err(_) => {
                let _ = child.kill();
                panic!("the newline write missed Telegraf's 1 s deadline");
            }
        }
        // Exactly one report answers each newline.
        let end = Instant::now() + Duration::from_secs(2);
        while reports < tick {
            let left = end.saturating_duration_since(Instant::now());
            match line_rx.recv_timeout(left) {
                Ok(l) => {
                    if is_report_end(&l) {
                        reports += 1;
                    }
                    lines.push(l);
                }
                Err(_) => {
                    let _ = child.kill();
                    panic!("no report 2 s after newline {tick}; got {reports}: {lines:#?}");
                }
            }
        }
    }
    // Nothing unasked-for arrives.
    std::thread::sleep(interval);
    lines.extend(line_rx.try_iter());
    let netns_lines = lines.iter().filter(|l| is_report_end(l)).count();
    assert_eq!(
        netns_lines, ticks,
        "one acceptq_netns per newline: {lines:#?}"
    );

    // Stop as Telegraf does: close stdin, then 5 s before SIGTERM.
    let closed_at = Instant::now();
    tick_tx.send(false).unwrap();
    let status = wait_or_kill(&mut child, Duration::from_secs(5));
    let status =
        status.expect("acceptq still running 5 s after stdin closed: Telegraf would SIGTERM it");
    assert!(status.success(), "exit status on EOF: {status}");
    note!("agents: execd exit {:?} after EOF", closed_at.elapsed());
    writer.join().unwrap();
    reader.join().unwrap();
    lines.extend(line_rx.try_iter());
    let (logged, unprefixed) = logger.join().unwrap();
    for line in logged {
        note!("agents: {line}");
    }
    let netns_lines = lines.iter().filter(|l| is_report_end(l)).count();
    assert_eq!(netns_lines, ticks, "reports after stdin closed: {lines:#?}");
    assert!(
        unprefixed.is_empty(),
        "stderr lines without a level prefix: {unprefixed:#?}"
    );

    let text = lines.join("\n") + "\n";
    let problems = strict_influx(&text);
    assert!(problems.is_empty(), "{problems:#?}");
    note!(
        "agents: telegraf execd suite ran ({ticks} newlines, {} lines)",
        lines.len()
    );
}

fn exec_fallback_once_parses_strictly() {
    let text = conf("telegraf-exec.conf");
    assert!(text.contains("[[inputs.exec]]"), "{text}");
    assert_eq!(
        toml_setting(&text, "data_format").as_deref(),
        Some("\"influx\""),
        "inputs.exec defaults to json"
    );
    // A command may be one string that Telegraf splits at spaces (the snippet quotes nothing).
    let words: Vec<String> = toml_strings(
        &toml_setting(&text, "commands").expect("commands in conf/telegraf-exec.conf"),
    )
    .iter()
    .flat_map(|c| c.split_whitespace().map(String::from))
    .collect();
    let argv = substitute(&words);
    assert!(argv.iter().any(|a| a == "--once"), "{argv:?}");

    let dir = TempDir::new("exec");
    // Files, not pipes: nothing can block while we wait with inputs.exec's 5 s timeout.
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(dir.file("stdout"))
        .stderr(dir.file("stderr"))
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = wait_or_kill(&mut child, Duration::from_secs(5))
        .expect("acceptq --once outran inputs.exec's 5 s timeout");
    let stdout = fs::read_to_string(dir.join("stdout")).unwrap();
    let stderr = fs::read_to_string(dir.join("stderr")).unwrap();
    assert!(status.success(), "{status}: {stderr}");
    for line in stderr.lines() {
        assert!(
            telegraf_level(line).is_some(),
            "stderr without level: {line}"
        );
    }
    let problems = strict_influx(&stdout);
    assert!(problems.is_empty(), "{problems:#?}\n{stdout}");
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.starts_with("acceptq_netns"))
            .count(),
        1,
        "{stdout}"
    );
    note!(
        "agents: telegraf exec suite ran ({:?}, {} lines)",
        started.elapsed(),
        stdout.lines().count()
    );
}
