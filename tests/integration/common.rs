//! Small helpers shared by the integration tests: the e2e gate, throwaway network namespaces,
//! the Python driver that holds listeners and clients, and running acceptq.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub fn acceptq() -> &'static str {
    env!("CARGO_BIN_EXE_acceptq")
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `ACCEPTQ_E2E=require` turns every skip into a failure (CI).
pub fn required() -> bool {
    std::env::var("ACCEPTQ_E2E").is_ok_and(|v| v == "require")
}

/// Returns false (and says why) when a test cannot run here; panics instead under
/// `ACCEPTQ_E2E=require`.
pub fn skip_unless(ok: bool, test: &str, reason: &str) -> bool {
    if ok {
        return true;
    }
    if required() {
        panic!("{test}: cannot run ({reason}) and ACCEPTQ_E2E=require");
    }
    eprintln!("SKIP {test}: {reason}");
    false
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

pub fn have(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
        .unwrap_or(false)
        || Path::new(program).is_file()
}

/// Gate for tests that make a network namespace: root, `ip` and `python3`.
pub fn netns_gate(test: &str) -> bool {
    skip_unless(is_root(), test, "needs root to create a network namespace")
        && skip_unless(have("ip"), test, "needs `ip` (iproute2)")
        && skip_unless(have("python3"), test, "needs python3 for the test driver")
        && skip_unless(
            have("ss"),
            test,
            "needs `ss` (iproute2) as the kernel's word to compare with",
        )
}

/// A network namespace made for one test, with loopback up; removed (with every process still
/// in it) on drop.
pub struct Netns {
    pub name: String,
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

impl Netns {
    pub fn new(tag: &str) -> Netns {
        let name = format!(
            "aq-{tag}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        run_ok(Command::new("ip").args(["netns", "add", &name]));
        let ns = Netns { name };
        run_ok(&mut ns.cmd("ip", &["link", "set", "lo", "up"]));
        ns
    }

    /// A command that runs `program args` inside this namespace.
    pub fn cmd(&self, program: &str, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]).args(args);
        c
    }

    pub fn sysctl(&self, key: &str, value: &str) {
        run_ok(&mut self.cmd("sysctl", &["-qw", &format!("{key}={value}")]));
    }

    /// A TcpExt counter read in this namespace, straight from the kernel.
    pub fn tcpext(&self, name: &str) -> u64 {
        let text = output_ok(&mut self.cmd("cat", &["/proc/net/netstat"]));
        let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
        let names: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
        let values: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
        let i = names
            .iter()
            .position(|n| *n == name)
            .unwrap_or_else(|| panic!("no TcpExt {name}"));
        values[i].parse().unwrap()
    }

    /// `sk_drops` of the listener(s) on `port`, as `ss -tlnm` prints it (`d<N>`): the kernel's
    /// word, to compare acceptq with.
    pub fn ss_drops(&self, port: u16) -> u64 {
        let text = output_ok(&mut self.cmd("ss", &["-tlnmH", &format!("sport = :{port}")]));
        text.split(|c: char| c == ',' || c == ')' || c.is_whitespace())
            .filter_map(|t| t.strip_prefix('d'))
            .filter_map(|n| n.parse::<u64>().ok())
            .sum()
    }

    pub fn driver(&self) -> Driver {
        Driver::start(self.cmd(
            "python3",
            &[repo().join("tests/support/driver.py").to_str().unwrap()],
        ))
    }

    /// Runs acceptq inside the namespace and returns its output.
    pub fn acceptq(&self, args: &[&str]) -> Output {
        self.cmd(acceptq(), args).output().expect("run acceptq")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Ok(out) = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
        {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-9", pid]).status();
            }
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

pub fn run_ok(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn output_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The Python driver (tests/support/driver.py) holding listeners and clients.
pub struct Driver {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines,
}

impl Driver {
    pub fn start(mut cmd: Command) -> Driver {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start driver");
        let stdin = child.stdin.take().unwrap();
        let stdout = Lines::new(child.stdout.take().unwrap());
        Driver {
            child,
            stdin,
            stdout,
        }
    }

    /// Sends one command and returns the words after `ok`.
    pub fn send(&mut self, command: &str) -> Vec<String> {
        writeln!(self.stdin, "{command}").unwrap();
        self.stdin.flush().unwrap();
        let line = self
            .stdout
            .expect(STEP, &format!("driver answer to {command}"));
        let words: Vec<String> = line.split_whitespace().map(String::from).collect();
        assert_eq!(
            words.first().map(String::as_str),
            Some("ok"),
            "driver: {command} -> {line}"
        );
        words[1..].to_vec()
    }

    /// Opens a listener and returns (id, port).
    pub fn listen(&mut self, addr: &str, port: u16, backlog: u32, reuseport: bool) -> (usize, u16) {
        let extra = if reuseport { " reuseport" } else { "" };
        let w = self.send(&format!("listen {addr} {port} {backlog}{extra}"));
        (w[0].parse().unwrap(), w[1].parse().unwrap())
    }

    pub fn connect(&mut self, id: usize, n: usize) {
        self.send(&format!("connect {id} {n}"));
    }

    pub fn accept(&mut self, id: usize) -> usize {
        self.send(&format!("accept {id}"))[0].parse().unwrap()
    }

    pub fn pid(&mut self) -> u32 {
        self.send("pid")[0].parse().unwrap()
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "quit");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One JSON report line, parsed.
pub type Json = serde_json::Value;

pub fn json_lines(stdout: &[u8]) -> Vec<Json> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect()
}

/// The `acceptq_listener` row for `port` (and optional extra tag) in a JSON report.
pub fn listener(report: &[Json], port: u16) -> &Json {
    report
        .iter()
        .find(|m| m["name"] == "acceptq_listener" && port_of(m) == Some(port))
        .unwrap_or_else(|| panic!("no listener on port {port} in {report:?}"))
}

pub fn netns_row(report: &[Json]) -> &Json {
    report
        .iter()
        .find(|m| m["name"] == "acceptq_netns")
        .expect("acceptq_netns row")
}

/// Polls `f` every 20 ms until it returns Some or `limit` passes.
pub fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A long-running `acceptq --signal stdin --format json` inside a namespace, driven as Telegraf's
/// execd drives it: a newline asks for a report.
pub struct Live {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Lines,
    /// stderr, read whole on a thread so the pipe never fills.
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl Live {
    pub fn start(ns: &Netns, extra: &[&str]) -> Live {
        let mut args = vec!["--signal", "stdin", "--format", "json"];
        args.extend_from_slice(extra);
        let mut child = ns
            .cmd(acceptq(), &args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start acceptq");
        let stdin = child.stdin.take();
        let stdout = Lines::new(child.stdout.take().unwrap());
        let mut err = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        Live {
            child,
            stdin,
            stdout,
            stderr: Some(stderr),
        }
    }

    /// Asks for one report and returns its metrics (a report ends with its acceptq_netns row).
    pub fn report(&mut self) -> Vec<Json> {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
        let mut out = Vec::new();
        loop {
            let line = self.stdout.expect(STEP, "the rest of a report");
            let v: Json =
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON: {line}: {e}"));
            let last = v["name"] == "acceptq_netns";
            out.push(v);
            if last {
                return out;
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Closes stdin (as Telegraf does to stop us) and waits up to `limit` for the exit status.
    pub fn close_and_wait(mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        drop(self.stdin.take());
        wait_or_kill(&mut self.child, limit)
    }

    /// Closes stdin (Telegraf stopping us) and returns the exit status and everything acceptq
    /// wrote to stderr.
    pub fn finish(mut self) -> (std::process::ExitStatus, String) {
        drop(self.stdin.take());
        let status = wait_or_kill(&mut self.child, STEP).expect("acceptq exits after EOF on stdin");
        let stderr = self
            .stderr
            .take()
            .map(|t| t.join().unwrap_or_default())
            .unwrap_or_default();
        (status, stderr)
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn int(v: &Json) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("not an unsigned integer: {v}"))
}

/// The `port` tag of a metric (a string in every format), as a number.
pub fn port_of(m: &Json) -> Option<u16> {
    m["tags"]["port"].as_str().and_then(|p| p.parse().ok())
}

/// How long any one step of a test (an answer, a report, an exit) may take before the test fails
/// instead of hanging CI.
pub const STEP: Duration = Duration::from_secs(30);

/// Lines of a child's output, read on a thread so every wait has a deadline.
pub struct Lines {
    rx: std::sync::mpsc::Receiver<String>,
}

impl Lines {
    pub fn new(out: impl Read + Send + 'static) -> Lines {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Lines { rx }
    }

    /// The next line within `limit`; `None` when none came or the output ended.
    pub fn next(&self, limit: Duration) -> Option<String> {
        self.rx.recv_timeout(limit).ok()
    }

    /// The next line, failing the test after `limit` or at the end of the output.
    pub fn expect(&self, limit: Duration, what: &str) -> String {
        match self.rx.recv_timeout(limit) {
            Ok(line) => line,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!("no {what} within {limit:?}"),
            Err(_) => panic!("output ended before {what}"),
        }
    }
}

/// Waits for `child` to exit, killing it after `limit`; returns its status if it exited.
pub fn wait_or_kill(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let end = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().ok().flatten() {
            return Some(status);
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A child process killed when the test ends, however it ends.
pub struct Reaped(pub Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A directory removed when the test ends, however it ends.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "acceptq-{tag}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Connections queued on the listener(s) on `port`, as `ss` reports them.
pub fn queued(ns: &Netns, port: u16) -> u32 {
    let text = output_ok(&mut ns.cmd("ss", &["-tlnH", &format!("sport = :{port}")]));
    text.lines()
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u32>().ok())
        .sum()
}

/// Waits until the listener on `port` has connections queued and, if asked, some drops.
pub fn settle(ns: &Netns, port: u16, want_drops: bool) {
    let ok = wait_for(Duration::from_secs(5), || {
        (queued(ns, port) > 0 && (!want_drops || ns.ss_drops(port) > 0)).then_some(())
    });
    assert!(ok.is_some(), "listener on {port} never filled");
}

/// A namespace holding one listener on 127.0.0.1 with `listen(backlog)` that never accepts, and
/// `clients` connecting to it; returns once the kernel shows them queued (and dropping, if asked).
pub fn queued_listener(
    tag: &str,
    backlog: u32,
    clients: usize,
    want_drops: bool,
) -> (Netns, Driver, usize, u16) {
    let ns = Netns::new(tag);
    let mut d = ns.driver();
    let (id, port) = d.listen("127.0.0.1", 0, backlog, false);
    d.connect(id, clients);
    settle(&ns, port, want_drops);
    (ns, d, id, port)
}

/// Runs acceptq (`cmd`), requires success, and returns its JSON report.
pub fn json_report(cmd: &mut Command) -> Vec<Json> {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    json_lines(&out.stdout)
}
