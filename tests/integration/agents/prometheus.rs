//! Prometheus: `promtool check metrics`, and a node_exporter textfile reader that must never
//! see half a `.prom` file.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::overflowing;
use crate::support::formats::check_exposition;
use crate::support::*;

tests![promtool_check_metrics_passes, output_file_is_never_partial];

fn promtool_check_metrics_passes() {
    let test = "agents::prometheus::promtool_check_metrics_passes";
    if !(netns_gate(test)
        && skip_unless(have("promtool"), test, "needs promtool (Debian prometheus)"))
    {
        return;
    }
    let (ns, _driver, port) = overflowing("prom");
    let out = ns.acceptq(&["--format", "prometheus", "--once"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    check_exposition(&text).unwrap();
    assert!(
        text.contains(&format!(
            "acceptq_listener_queue_depth{{address=\"127.0.0.1\",port=\"{port}\""
        )),
        "{text}"
    );

    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = promtool.stdin.take().unwrap();
    let feeder = {
        let text = text.clone();
        std::thread::spawn(move || stdin.write_all(text.as_bytes()))
    };
    let mut so = promtool.stdout.take().unwrap();
    let mut se = promtool.stderr.take().unwrap();
    let out_thread = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = so.read_to_string(&mut s);
        s
    });
    let err_thread = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = se.read_to_string(&mut s);
        s
    });
    let status = wait_or_kill(&mut promtool, Duration::from_secs(20)).expect("promtool hung");
    feeder.join().unwrap().unwrap();
    let (pout, perr) = (out_thread.join().unwrap(), err_thread.join().unwrap());
    for line in pout.lines().chain(perr.lines()) {
        note!("agents: promtool said: {line}");
    }
    assert!(
        status.success(),
        "promtool check metrics: {status}\n{pout}{perr}\n{text}"
    );
    note!("agents: prometheus promtool suite ran");
}

fn output_file_is_never_partial() {
    // No root, no daemon: acceptq watches our own namespace.
    let dir = TempDir::new("prom");
    let target = dir.join("acceptq.prom");
    let mut child = Command::new(acceptq())
        .args([
            "--format",
            "prometheus",
            "--interval",
            "100ms",
            "--output",
            target.to_str().unwrap(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(dir.file("stderr"))
        .spawn()
        .unwrap();

    let reader = {
        let target = target.clone();
        std::thread::spawn(move || {
            let end = Instant::now() + Duration::from_secs(3);
            let (mut reads, mut files) = (0usize, std::collections::BTreeSet::new());
            let mut seen_file = false;
            while Instant::now() < end {
                // Read through one open file and stat that same file: inode and mtime tell one
                // replacement from the next (the content alone may not change, and a freed
                // inode number is soon reused).
                let read = fs::File::open(&target).and_then(|mut f| {
                    let mut text = String::new();
                    f.read_to_string(&mut text)?;
                    let m = f.metadata()?;
                    Ok((text, (m.ino(), m.mtime(), m.mtime_nsec())))
                });
                match read {
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound && !seen_file => {}
                    Err(e) => return Err(format!("read {} failed: {e}", target.display())),
                    Ok((text, id)) => {
                        seen_file = true;
                        reads += 1;
                        check_exposition(&text)
                            .map_err(|e| format!("read {reads}: partial or bad: {e}"))?;
                        files.insert(id);
                    }
                }
            }
            let distinct = files.len();
            Ok((reads, distinct))
        })
    };
    let result = reader.join().unwrap();
    let still_running = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    let _ = child.wait();
    let stderr = fs::read_to_string(dir.join("stderr")).unwrap_or_default();
    assert!(still_running, "acceptq --output exited: {stderr}");
    let (reads, distinct) = result.unwrap_or_else(|e| panic!("{e}\nstderr: {stderr}"));
    assert!(reads > 100, "only {reads} reads");
    assert!(
        distinct >= 10,
        "the file was replaced only {distinct} times in 3 s at --interval 100ms ({reads} reads)"
    );
    note!("agents: prometheus textfile suite ran ({reads} reads, {distinct} distinct files)");
}
