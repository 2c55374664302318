//! `acceptq check`: the verdict a person at the terminal gets, and its exit status, against
//! queues the kernel really filled in a namespace.

use std::process::Command;
use std::time::Duration;

use serde_json::Value as Json;

use crate::support::*;

tests![
    healthy_listener_exits_0_and_says_what_was_checked,
    overflow_capped_by_the_backlog_exits_1_and_says_raise_the_backlog,
    overflow_capped_by_somaxconn_says_raise_both,
    syn_queue_overflow_with_syncookies_off_is_named_on_its_listener,
    reuseport_group_with_one_full_socket_is_uneven_balancing,
    json_format_is_one_document_with_the_same_verdicts,
    overflow_of_a_listener_closed_between_readings_is_told_from_the_namespace,
    a_sample_longer_than_the_window_is_refused_with_status_2,
    ctrl_c_answers_early_for_the_time_watched
];

/// What a finished `acceptq check` said.
pub(crate) struct Answer {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Answer {
    /// The one line of stdout containing `what`.
    pub fn line(&self, what: &str) -> &str {
        let found: Vec<&str> = self.stdout.lines().filter(|l| l.contains(what)).collect();
        assert_eq!(
            found.len(),
            1,
            "one line with {what:?} in:\n{}",
            self.stdout
        );
        found[0]
    }
}

/// Runs `acceptq check args` in `ns`, calling `during` once it has started (to keep traffic
/// coming inside the window); bounded, never hangs.
pub(crate) fn check(ns: &Netns, args: &[&str], during: impl FnOnce()) -> Answer {
    check_after(ns, args, Duration::from_millis(300), during)
}

/// Runs `acceptq check args` in `ns`, calling `during` once it has run for `after`.
pub(crate) fn check_after(
    ns: &Netns,
    args: &[&str],
    after: Duration,
    during: impl FnOnce(),
) -> Answer {
    let mut all = vec!["check"];
    all.extend_from_slice(args);
    let child = Piped::spawn(&mut ns.cmd(acceptq(), &all));
    std::thread::sleep(after);
    during();
    let out = child.wait(STEP).expect("acceptq check ends by itself");
    note!(
        "acceptq check {args:?}: {}\n{}{}",
        out.status,
        out.stdout,
        out.stderr
    );
    Answer {
        code: out.status.code(),
        stdout: out.stdout,
        stderr: out.stderr,
    }
}

/// A listener holding 3 connections of its 16 and never dropping: status 0, and the answer
/// says how many listeners were watched and which was deepest, with its peak and limit, and
/// notes how long its connections waited. A closed stdout ends it quietly with status 0.
fn healthy_listener_exits_0_and_says_what_was_checked() {
    let test = "check::healthy_listener_exits_0_and_says_what_was_checked";
    if !netns_gate(test) {
        return;
    }
    let (ns, mut d, _, port) = queued_listener("chk-ok", 16, 3, false);
    let comm = comm_of(d.pid());
    let a = check(&ns, &["--duration", "1s"], || {});
    assert_eq!(a.code, Some(0), "{}{}", a.stdout, a.stderr);
    let first = a.stdout.lines().next().unwrap_or_default();
    assert_eq!(
        first,
        format!(
            "No overflow seen in 1 s on 1 listener (deepest: 127.0.0.1:{port} {comm}, peak 3 \
             of 16)."
        )
    );
    a.line("Namespace counters: no overflow, listen drop or syncookie counted in 1 s");
    // Its 3 connections were queued before the check began and never accepted.
    let slow = a.line("a connection waited");
    assert!(
        slow.starts_with(&format!("127.0.0.1:{port} ({comm}, pid ")),
        "{slow}"
    );
    assert!(
        slow.contains("(peak 3 of 16) though the queue never filled"),
        "{slow}"
    );

    // Nobody reads the answer: no panic, status 0.
    let out = Piped::spawn_stdout_closed(&mut ns.cmd(acceptq(), &["check", "--duration", "1s"]))
        .wait(STEP)
        .expect("ends");
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
}

/// A `listen(2)` socket that never accepts, with clients arriving during the window, in a
/// namespace whose net.core.somaxconn is 1024: the answer names the address, port, process and
/// pid, the peak (limit + 1) and limit, the drops, and the backlog as the cap; status 1.
fn overflow_capped_by_the_backlog_exits_1_and_says_raise_the_backlog() {
    let test = "check::overflow_capped_by_the_backlog_exits_1_and_says_raise_the_backlog";
    if !netns_gate(test) {
        return;
    }
    let ns = Netns::new("chk-bl");
    ns.sysctl("net.core.somaxconn", "1024");
    let mut d = ns.driver();
    let (id, port) = d.listen("127.0.0.1", 0, 2, false);
    d.connect(id, 10);
    settle(&ns, port, true);
    let pid = d.pid();
    let comm = comm_of(pid);
    let a = check(&ns, &["--duration", "2s"], || d.connect(id, 10));
    assert_eq!(a.code, Some(1), "{}{}", a.stdout, a.stderr);
    let line = a.line("accept queue full");
    let head = format!("127.0.0.1:{port} ({comm}, pid {pid}): accept queue full in ");
    assert!(line.starts_with(&head), "{line}");
    assert!(line.contains(", peak 3 of 2 "), "{line}");
    assert!(line.contains("packets dropped in 2 s"), "{line}");
    assert!(
        line.contains(
            "Its limit is 2 = the backlog passed to listen() (net.core.somaxconn is 1024): \
             raise the application's backlog"
        ),
        "{line}"
    );
    assert!(!a.stdout.contains("No overflow seen"), "{}", a.stdout);
    a.line("Namespace counters: ListenOverflows +");
}

/// The same overflow with net.core.somaxconn 4 below the `listen(64)` backlog: the limit is 4,
/// the sysctl's, and the answer says to raise both.
fn overflow_capped_by_somaxconn_says_raise_both() {
    let test = "check::overflow_capped_by_somaxconn_says_raise_both";
    if !netns_gate(test) {
        return;
    }
    let ns = Netns::new("chk-sx");
    ns.sysctl("net.core.somaxconn", "4");
    let mut d = ns.driver();
    let (id, port) = d.listen("127.0.0.1", 0, 64, false);
    d.connect(id, 12);
    settle(&ns, port, true);
    let a = check(&ns, &["--duration", "2s"], || d.connect(id, 10));
    assert_eq!(a.code, Some(1), "{}{}", a.stdout, a.stderr);
    let line = a.line("accept queue full");
    assert!(line.starts_with(&format!("127.0.0.1:{port} (")), "{line}");
    assert!(line.contains(", peak 5 of 4 "), "{line}");
    assert!(
        line.contains(
            "Its limit is 4 = net.core.somaxconn, which caps the backlog passed to listen(): \
             raise both net.core.somaxconn and the application's backlog"
        ),
        "{line}"
    );
}

/// Syncookies off and the clients' final ACK dropped (nftables): a `listen(4)` socket's SYN
/// queue fills with 4 requests and further SYNs are dropped (TCPReqQFullDrop). The answer
/// blames that listener's SYN queue, not its accept queue, and names the causes.
fn syn_queue_overflow_with_syncookies_off_is_named_on_its_listener() {
    let test = "check::syn_queue_overflow_with_syncookies_off_is_named_on_its_listener";
    if !netns_gate(test) || !skip_unless(have("nft"), test, "needs nft (nftables)") {
        return;
    }
    let ns = Netns::new("chk-syn");
    ns.sysctl("net.ipv4.tcp_syncookies", "0");
    let mut d = ns.driver();
    let (id, port) = d.listen("127.0.0.1", 0, 4, false);
    ns.drop_final_acks(&[port]);
    d.connect(id, 8);
    let dropped = wait_for(Duration::from_secs(5), || {
        (ns.tcpext("TCPReqQFullDrop") > 0).then_some(())
    });
    assert!(dropped.is_some(), "the SYN queue never overflowed");
    let before = ns.tcpext("TCPReqQFullDrop");
    let pid = d.pid();
    let a = check(&ns, &["--duration", "2s"], || d.connect(id, 8));
    assert!(
        ns.tcpext("TCPReqQFullDrop") > before,
        "no SYN dropped in the window"
    );
    assert_eq!(a.code, Some(1), "{}{}", a.stdout, a.stderr);
    let line = a.line("SYN queue full");
    let head = format!(
        "127.0.0.1:{port} ({}, pid {pid}): SYN queue full (peak ",
        comm_of(pid)
    );
    assert!(line.starts_with(&head), "{line}");
    // The SYN queue holds its limit, or one more on recent kernels (as the accept queue does).
    let peak = &line[head.len()..];
    assert!(
        peak.starts_with("4 half-open requests, limit 4): ")
            || peak.starts_with("5 half-open requests, limit 4): "),
        "{line}"
    );
    assert!(
        line.contains("SYNs dropped in its namespace in 2 s"),
        "{line}"
    );
    assert!(line.contains("packets dropped by this listener"), "{line}");
    assert!(line.contains("net.ipv4.tcp_syncookies is 0"), "{line}");
    assert!(
        line.contains("a SYN flood, or a burst larger than the SYN queue"),
        "{line}"
    );
    assert!(!a.stdout.contains("accept queue full"), "{}", a.stdout);
    assert!(!a.stdout.contains("never seen full"), "{}", a.stdout);
    a.line("TCPReqQFullDrop +");
}

/// Three SO_REUSEPORT sockets on one port, one `listen(1)` full and dropping, two `listen(64)`
/// with room: the answer says the balancing is uneven and which socket overflowed; status 1.
fn reuseport_group_with_one_full_socket_is_uneven_balancing() {
    let test = "check::reuseport_group_with_one_full_socket_is_uneven_balancing";
    if !netns_gate(test) {
        return;
    }
    let ns = Netns::new("chk-rp");
    let mut d = ns.driver();
    let (full, port) = d.listen("127.0.0.1", 0, 1, true);
    d.connect(full, 10);
    settle(&ns, port, true);
    d.listen("127.0.0.1", port, 64, true);
    d.listen("127.0.0.1", port, 64, true);
    let a = check(&ns, &["--duration", "2s"], || d.connect(full, 9));
    assert_eq!(a.code, Some(1), "{}{}", a.stdout, a.stderr);
    let line = a.line("uneven SO_REUSEPORT balancing");
    assert!(
        line.starts_with(&format!(
            "127.0.0.1:{port}: uneven SO_REUSEPORT balancing in 2 s: socket "
        )),
        "{line}"
    );
    assert!(
        line.contains(" of 3 full or dropping while sockets "),
        "{line}"
    );
    let full_line = a.line("accept queue full");
    assert!(
        full_line.contains(" of 3, "),
        "names the socket: {full_line}"
    );
    assert!(full_line.contains(", peak 2 of 1 "), "{full_line}");
}

/// `--format json`: one document, the outcome and every verdict as an object with the
/// listener's address, port, process and the figures behind the text.
fn json_format_is_one_document_with_the_same_verdicts() {
    let test = "check::json_format_is_one_document_with_the_same_verdicts";
    if !netns_gate(test) {
        return;
    }
    let (ns, mut d, id, port) = queued_listener("chk-json", 2, 10, true);
    let pid = d.pid();
    let a = check(&ns, &["--duration", "1s", "--format", "json"], || {
        d.connect(id, 5)
    });
    assert_eq!(a.code, Some(1), "{}{}", a.stdout, a.stderr);
    assert_eq!(a.stdout.lines().count(), 1, "one document: {}", a.stdout);
    let doc: Json = serde_json::from_str(&a.stdout).expect("valid JSON");
    assert_eq!(doc["status"], "overflow");
    assert_eq!(doc["listeners"], 1);
    assert_eq!(doc["duration_seconds"], 1.0);
    let verdicts = doc["verdicts"].as_array().unwrap();
    let o = verdicts
        .iter()
        .find(|v| v["kind"] == "accept_queue_overflow")
        .unwrap_or_else(|| panic!("no overflow verdict: {doc}"));
    assert_eq!(o["severity"], "critical");
    assert_eq!(o["address"], "127.0.0.1");
    assert_eq!(o["port"], port);
    assert_eq!(o["pid"], pid);
    assert_eq!(o["process"], comm_of(pid).as_str());
    assert_eq!(o["figures"]["limit"], 2);
    assert_eq!(o["figures"]["peak"], 3);
    assert_eq!(o["figures"]["cap"], "backlog");
    assert!(o["figures"]["drops"].as_u64().unwrap() > 0, "{o}");
    assert!(o["text"]
        .as_str()
        .unwrap()
        .starts_with(&format!("127.0.0.1:{port} ")));
    assert!(verdicts.iter().any(|v| v["kind"] == "namespace"), "{doc}");
}

/// A listener opened, overflowed and closed between two readings leaves only the namespace's
/// counters: the answer says no listener shows them and why; status 1.
fn overflow_of_a_listener_closed_between_readings_is_told_from_the_namespace() {
    let test = "check::overflow_of_a_listener_closed_between_readings_is_told_from_the_namespace";
    if !netns_gate(test) {
        return;
    }
    let ns = Netns::new("chk-gone");
    let mut d = ns.driver();
    let (_, quiet) = d.listen("127.0.0.1", 0, 16, false);
    let a = check(&ns, &["--duration", "2s"], || {
        // The baseline is taken; the next reading is a second after it.
        let (id, port) = d.listen("127.0.0.1", 0, 1, false);
        d.connect(id, 10);
        let dropped = wait_for(Duration::from_millis(500), || {
            (ns.ss_drops(port) > 0).then_some(())
        });
        assert!(dropped.is_some(), "the listen(1) socket never dropped");
        d.send(&format!("close {id}"));
    });
    assert_eq!(a.code, Some(1), "{}{}", a.stdout, a.stderr);
    let line = a.line("accept-queue overflows (ListenOverflows)");
    assert!(line.starts_with("This namespace: "), "{line}");
    assert!(
        line.contains("but no watched listener was seen full or dropping"),
        "{line}"
    );
    assert!(line.contains("takes its drops with it"), "{line}");
    assert!(!a.stdout.contains("No overflow seen"), "{}", a.stdout);
    assert!(!a.stdout.contains(&format!(":{quiet} ")), "{}", a.stdout);
}

/// A usage error is status 2, not 1 (which says a queue overflowed).
fn a_sample_longer_than_the_window_is_refused_with_status_2() {
    let out = Command::new(acceptq())
        .args(["check", "--duration", "1s", "--sample", "2s"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--sample 2s is longer than --duration 1s"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}

/// Ctrl-C during a 30 s window ends it at once with the answer for the time watched, as `ping`
/// answers with its summary: the full queue is named, its status is 1, and the answer says the
/// seconds watched, not the 30 asked for.
fn ctrl_c_answers_early_for_the_time_watched() {
    let test = "check::ctrl_c_answers_early_for_the_time_watched";
    if !netns_gate(test) {
        return;
    }
    let (ns, _d, _, port) = queued_listener("chk-int", 2, 3, false);
    let child = Piped::spawn(&mut ns.cmd(acceptq(), &["check", "--duration", "30s"]));
    std::thread::sleep(Duration::from_millis(2500));
    // `ip netns exec` execs acceptq in its own place: the child is acceptq.
    // SAFETY: kill with a pid we own and a valid signal number.
    assert_eq!(
        unsafe { libc::kill(child.child.id() as i32, libc::SIGINT) },
        0
    );
    let Finished {
        status,
        stdout,
        stderr,
    } = child.wait(Duration::from_secs(5)).expect("answers at once");
    note!("after SIGINT: {status}\n{stdout}{stderr}");
    assert_eq!(status.code(), Some(1), "{stdout}{stderr}");
    let line = stdout
        .lines()
        .find(|l| l.starts_with(&format!("127.0.0.1:{port} ")))
        .unwrap_or_else(|| panic!("the full listener is named: {stdout}"));
    assert!(line.contains("peak 3 of 2"), "{line}");
    assert!(
        !stdout.contains("30 s"),
        "the answer covers the time watched: {stdout}"
    );
    assert!(
        stdout.contains(" in 2") || stdout.contains(" in 3"),
        "{stdout}"
    );
}
