//! `acceptq check` against what hostile or unusual hosts produce: process names that hold a
//! newline, thousands of listeners, filters that match nothing, an SO_REUSEPORT socket that
//! closes in the middle of the window.

use std::io::Write;
use std::time::{Duration, Instant};

use crate::check::{check, check_after};
use crate::support::*;

tests![
    a_process_name_holding_a_newline_cannot_forge_a_verdict_line,
    thousands_of_listeners_are_all_checked_and_none_is_called_closed,
    a_filter_matching_nothing_warns_in_the_words_of_check,
    a_reuseport_socket_closing_mid_window_keeps_its_own_verdict,
    somaxconn_raised_after_listen_is_named_as_a_possible_cap,
    a_deferred_accept_server_serving_well_is_not_an_overflow,
    a_duration_shorter_than_the_default_sample_names_the_default
];

/// Listeners held by processes this test shapes; one command per run, answers "ok ...",
/// then waits for lines on stdin ("close": the full socket of `reuseport` closes; EOF: exit).
const HOLDER: &str = r#"
import ctypes, os, signal, socket, sys
libc = ctypes.CDLL(None)
def name(n):
    libc.prctl(15, ctypes.c_char_p(n), 0, 0, 0)
def clients(port, n, keep):
    for _ in range(n):
        c = socket.socket(); c.setblocking(False)
        try: c.connect(("127.0.0.1", port))
        except BlockingIOError: pass
        keep.append(c)
keep = []
mode = sys.argv[1]
if mode == "named":
    name(bytes.fromhex(sys.argv[2]))
    s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(2)
    clients(s.getsockname()[1], 10, keep)
    print("ok", s.getsockname()[1], os.getpid(), flush=True)
elif mode == "many":
    for _ in range(int(sys.argv[2])):
        s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(16); keep.append(s)
    print("ok", flush=True)
elif mode == "deferred":
    import threading, time
    s = socket.socket(); s.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, 5)
    s.bind(("127.0.0.1", 0)); s.listen(128)
    def serve():
        while True:
            c, _ = s.accept(); c.recv(100); c.close()
    threading.Thread(target=serve, daemon=True).start()
    print("ok", s.getsockname()[1], flush=True)
    # Clients as a browser's: connect, then send the request.
    for line in sys.stdin:
        for _ in range(int(line)):
            c = socket.create_connection(s.getsockname()); c.sendall(b"GET / HTTP/1.0\r\n\r\n")
            c.recv(1); c.close(); time.sleep(0.02)
        print("ok", flush=True)
    sys.exit(0)
elif mode == "reuseport":
    def bound(port):
        s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        s.bind(("127.0.0.1", port)); return s
    a = bound(0); b = bound(a.getsockname()[1])
    # The lower inode is socket 0 of the group: make it the full one, so that its closing
    # moves the other socket into its rank.
    full, room = sorted([a, b], key=lambda s: os.fstat(s.fileno()).st_ino)
    full.listen(1); room.listen(64)
    port = full.getsockname()[1]
    pid = os.fork()
    if pid == 0:
        # Not a reader of stdin: the parent's commands are the parent's.
        name(b"roomy"); full.close()
        signal.pause(); os._exit(0)
    name(b"stuck"); room.close()
    clients(port, 12, keep)
    print("ok", port, os.getpid(), pid, flush=True)
    for line in sys.stdin:
        if line.strip() == "close":
            full.close(); print("ok", flush=True)
    os.kill(pid, signal.SIGKILL); os.waitpid(pid, 0)
    sys.exit(0)
sys.stdin.read()
"#;

/// HOLDER in a namespace; on drop its stdin closes and it has 5 s to end by itself (a
/// reuseport holder reaps its forked child then), before it is killed.
struct Holder(Helper);

impl Holder {
    /// Starts HOLDER in `ns` and returns its first answer's words after "ok" (3000 listeners
    /// take a while on a loaded machine: up to a STEP).
    fn start(ns: &Netns, args: &[&str]) -> (Holder, Vec<String>) {
        let mut all = vec!["-c", HOLDER];
        all.extend_from_slice(args);
        let mut h = Holder(Helper::spawn(ns.cmd("python3", &all)));
        let words = h.0.expect("ok");
        (h, words)
    }

    fn send(&mut self, line: &str) -> Vec<String> {
        let stdin = self.0.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
        self.0.expect("ok")
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        self.0.stdin.take();
        if wait_or_kill(&mut self.0.child, Duration::from_secs(5)).is_none() {
            note!("check_attack: the holder did not end on EOF");
        }
    }
}

/// `prctl(PR_SET_NAME)` takes any bytes: a process named "a\nNo overflow" whose queue overflows
/// must not start a line of the answer that reads as a verdict of its own. Its name is shown
/// with the newline written `\x0a`, on the one line of its verdict; JSON carries the same text.
fn a_process_name_holding_a_newline_cannot_forge_a_verdict_line() {
    let test = "check_attack::a_process_name_holding_a_newline_cannot_forge_a_verdict_line";
    if !netns_gate(test) {
        return;
    }
    let ns = Netns::new("atk-nl");
    let hex: String = b"a\nNo overflow"
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let (_h, words) = Holder::start(&ns, &["named", &hex]);
    let (port, pid) = (&words[0], &words[1]);
    let a = check(&ns, &["--duration", "1s"], || {});
    assert_eq!(a.code, Some(1), "{}{}", a.stdout, a.stderr);
    for line in a.stdout.lines() {
        assert!(
            line.starts_with("127.0.0.1:") || line.starts_with("Namespace counters:"),
            "a line the process name started: {line:?}"
        );
    }
    let full = a.line("accept queue full");
    assert!(
        full.starts_with(&format!(
            "127.0.0.1:{port} (a\\x0aNo overflow, pid {pid}): accept queue full"
        )),
        "{full}"
    );
    let a = check(&ns, &["--duration", "1s", "--format", "json"], || {});
    let doc: serde_json::Value = serde_json::from_str(&a.stdout).expect("valid JSON");
    let v = doc["verdicts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["kind"] == "accept_queue_overflow" || v["kind"] == "accept_queue_full")
        .unwrap_or_else(|| panic!("{doc}"));
    assert_eq!(v["process"], "a\\x0aNo overflow", "{v}");
    assert!(!v["text"].as_str().unwrap().contains('\n'), "{v}");
}

/// 3000 idle listeners: every one is checked (the agents' 1000-row cap is not check's), none is
/// said to have closed, no warning names a flag check does not have, and the answer comes
/// within the window plus a little.
fn thousands_of_listeners_are_all_checked_and_none_is_called_closed() {
    let test = "check_attack::thousands_of_listeners_are_all_checked_and_none_is_called_closed";
    if !netns_gate(test) {
        return;
    }
    let ns = Netns::new("atk-many");
    let (_h, _) = Holder::start(&ns, &["many", "3000"]);
    let start = Instant::now();
    let a = check(&ns, &["--duration", "2s"], || {});
    let took = start.elapsed();
    note!("3000 listeners, --duration 2s: answered in {took:?}");
    assert_eq!(a.code, Some(0), "{}{}", a.stdout, a.stderr);
    assert_eq!(
        a.stdout.lines().next().unwrap_or_default(),
        "No overflow seen in 2 s on 3000 listeners (every queue stayed empty)."
    );
    assert!(!a.stdout.contains("closed"), "{}", a.stdout);
    assert!(!a.stderr.contains("max-listeners"), "{}", a.stderr);
    assert!(took < Duration::from_secs(6), "{took:?}");
}

/// `--port` matching no listener: the warning says what check still watches, not what an
/// agent's report would carry (`acceptq_netns` means nothing to a person at the terminal).
fn a_filter_matching_nothing_warns_in_the_words_of_check() {
    let test = "check_attack::a_filter_matching_nothing_warns_in_the_words_of_check";
    if !netns_gate(test) {
        return;
    }
    let ns = Netns::new("atk-nomatch");
    let mut d = ns.driver();
    d.listen("127.0.0.1", 0, 16, false);
    let a = check(&ns, &["--duration", "1s", "--port", "1"], || {});
    assert_eq!(a.code, Some(0), "{}{}", a.stdout, a.stderr);
    assert!(
        a.stderr.contains(
            "no listener matches --port 1 (listening sockets seen: 1): only the namespace \
             counters are watched"
        ),
        "{}",
        a.stderr
    );
    assert!(!a.stderr.contains("acceptq_netns"), "{}", a.stderr);
    assert!(
        a.stdout
            .starts_with("No overflow seen in 1 s on 0 listeners: no listener matches --port 1."),
        "{}",
        a.stdout
    );
}

/// An SO_REUSEPORT group of two: socket 0 (`listen(1)`, process "stuck") full and dropping,
/// socket 1 (`listen(64)`, process "roomy") with room. "stuck" closes its socket a second
/// into the window, and "roomy"'s moves into rank 0. The overflow stays stuck's, with its limit
/// of 1, and is marked closed; roomy is never blamed nor given stuck's figures.
fn a_reuseport_socket_closing_mid_window_keeps_its_own_verdict() {
    let test = "check_attack::a_reuseport_socket_closing_mid_window_keeps_its_own_verdict";
    if !netns_gate(test) {
        return;
    }
    let ns = Netns::new("atk-rpclose");
    let (mut h, words) = Holder::start(&ns, &["reuseport"]);
    let (port, stuck, roomy) = (&words[0], &words[1], &words[2]);
    let port: u16 = port.parse().unwrap();
    settle(&ns, port, true);
    let a = check_after(
        &ns,
        &["--duration", "3s"],
        Duration::from_millis(1300),
        || {
            h.send("close");
        },
    );
    assert_eq!(a.code, Some(1), "{}{}", a.stdout, a.stderr);
    let full = a.line("accept queue full");
    assert!(
        full.contains(&format!("stuck, pid {stuck}, closed during the check)")),
        "{full}"
    );
    assert!(full.contains(", peak 2 of 1 "), "{full}");
    for line in a.stdout.lines() {
        assert!(
            !line.contains("accept queue full") || !line.contains(&format!("pid {roomy}")),
            "the socket with room is blamed: {line}"
        );
        assert!(!line.contains(" of 64 (a full queue"), "{line}");
    }
}

/// net.core.somaxconn 4 when the server calls `listen(64)`, raised to 4096 afterwards (the
/// first move of many in an incident): the kernel keeps the limit of 4, which then looks like
/// a backlog of 4. The answer must not only say "raise the application's backlog" (it is 64):
/// it says that a sysctl raised after listen() still caps it until a restart.
fn somaxconn_raised_after_listen_is_named_as_a_possible_cap() {
    let test = "check_attack::somaxconn_raised_after_listen_is_named_as_a_possible_cap";
    if !netns_gate(test) {
        return;
    }
    let ns = Netns::new("atk-sxup");
    ns.sysctl("net.core.somaxconn", "4");
    let mut d = ns.driver();
    let (id, port) = d.listen("127.0.0.1", 0, 64, false);
    ns.sysctl("net.core.somaxconn", "4096");
    d.connect(id, 12);
    settle(&ns, port, true);
    let a = check(&ns, &["--duration", "1s"], || {});
    assert_eq!(a.code, Some(1), "{}{}", a.stdout, a.stderr);
    let line = a
        .stdout
        .lines()
        .find(|l| l.contains("accept queue full"))
        .unwrap_or_else(|| panic!("{}", a.stdout));
    assert!(line.contains(", peak 5 of 4 "), "{line}");
    assert!(
        line.contains(
            "if net.core.somaxconn was raised after the application called listen(), the old \
             value still caps it: restart it"
        ),
        "{line}"
    );
}

/// A TCP_DEFER_ACCEPT listener (nginx's `listen ... deferred`) that accepts every connection at
/// once: the kernel counts each client's bare final ACK as a drop of the listener, but nothing
/// is lost to a queue (ListenDrops stays still). The answer says so as a note, status 0.
fn a_deferred_accept_server_serving_well_is_not_an_overflow() {
    let test = "check_attack::a_deferred_accept_server_serving_well_is_not_an_overflow";
    if !netns_gate(test) {
        return;
    }
    let ns = Netns::new("atk-defer");
    let (mut h, words) = Holder::start(&ns, &["deferred"]);
    let port: u16 = words[0].parse().unwrap();
    let a = check_after(
        &ns,
        &["--duration", "2s"],
        Duration::from_millis(200),
        || {
            h.send("20");
        },
    );
    assert!(ns.ss_drops(port) > 0, "the deferred ACKs were not counted");
    assert_eq!(ns.tcpext("ListenDrops"), 0);
    assert_eq!(a.code, Some(0), "{}{}", a.stdout, a.stderr);
    assert!(
        a.stdout
            .starts_with("No overflow seen in 2 s on 1 listener"),
        "{}",
        a.stdout
    );
    let line = a
        .stdout
        .lines()
        .find(|l| l.contains("packets dropped"))
        .unwrap_or_else(|| panic!("the drops are explained: {}", a.stdout));
    assert!(
        line.contains("so no connection was lost to a full queue"),
        "{line}"
    );
}

/// `--duration 50ms` alone: refused with status 2, in terms of the flags given (the user typed
/// no --sample: the message says the default is the one too long).
fn a_duration_shorter_than_the_default_sample_names_the_default() {
    let out = std::process::Command::new(acceptq())
        .args(["check", "--duration", "50ms"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "--duration 50ms is shorter than the sampling period (100ms by default): no sample \
             would fall in the window; give a longer --duration, or a --sample of at most 50ms"
        ),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}
