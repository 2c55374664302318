//! Child processes with deadlines: every wait in a test ends, a hung child fails the test
//! instead of hanging CI, and whatever a test started is gone when it ends.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use super::harness::note;
use super::host::{acceptq, repo};
use super::netns::Netns;
use super::report::Json;

/// How long any one step of a test (an answer, a report, an exit) may take before the test fails
/// instead of hanging CI.
pub const STEP: Duration = Duration::from_secs(30);

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

/// Waits for `child` to exit, killing it after `limit`; returns its status if it exited.
pub fn wait_or_kill(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let status = wait_for(limit, || child.try_wait().ok().flatten());
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    status
}

pub fn run_ok(cmd: &mut Command) {
    output_ok(cmd);
}

/// Runs `cmd`, requires success, and returns its stdout.
pub fn output_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Lines of a child's output, read on a thread so every wait has a deadline.
pub struct Lines {
    rx: mpsc::Receiver<String>,
}

impl Lines {
    pub fn new(out: impl Read + Send + 'static) -> Lines {
        let (tx, rx) = mpsc::channel();
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
            Err(RecvTimeoutError::Timeout) => panic!("no {what} within {limit:?}"),
            Err(RecvTimeoutError::Disconnected) => panic!("output ended before {what}"),
        }
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

/// How a child ended, and all it wrote.
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// A child whose stdout and stderr are each read whole on a thread, so a full pipe never stalls
/// it; killed on drop. `child.stdin` is whatever the command set up.
pub struct Piped {
    pub child: Child,
    stdout: Option<Reader>,
    stderr: Option<Reader>,
}

type Reader = std::thread::JoinHandle<std::io::Result<String>>;

impl Piped {
    pub fn spawn(cmd: &mut Command) -> Piped {
        Piped::start(cmd, true)
    }

    /// With the reading end of stdout closed at once, as `acceptq | head -n 0` leaves it.
    pub fn spawn_stdout_closed(cmd: &mut Command) -> Piped {
        Piped::start(cmd, false)
    }

    fn start(cmd: &mut Command, read_stdout: bool) -> Piped {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {cmd:?}: {e}"));
        let stdout = child.stdout.take().unwrap();
        let stdout = read_stdout.then(|| read_whole(stdout));
        let stderr = Some(read_whole(child.stderr.take().unwrap()));
        Piped {
            child,
            stdout,
            stderr,
        }
    }

    /// Waits up to `limit` for the exit (killing the child then), and returns what it wrote;
    /// None if it had to be killed.
    pub fn wait(mut self, limit: Duration) -> Option<Finished> {
        let status = wait_or_kill(&mut self.child, limit)?;
        let joined = |t: Option<Reader>| match t {
            Some(t) => t
                .join()
                .unwrap()
                .unwrap_or_else(|e| panic!("reading its output: {e}")),
            None => String::new(),
        };
        Some(Finished {
            status,
            stdout: joined(self.stdout.take()),
            stderr: joined(self.stderr.take()),
        })
    }
}

impl Drop for Piped {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads `r` to its end on a thread; not UTF-8 is an error.
fn read_whole(mut r: impl Read + Send + 'static) -> Reader {
    std::thread::spawn(move || {
        let mut s = String::new();
        r.read_to_string(&mut s).map(|_| s)
    })
}

/// A helper process speaking lines (tests/support/driver.py, tests/support/who/*.py): stdin
/// piped, stdout read with deadlines; killed on drop.
pub struct Helper {
    pub child: Child,
    pub stdin: Option<ChildStdin>,
    pub stdout: Lines,
}

impl Helper {
    /// Runs `python3 tests/support/who/<script> args` inside `ns`.
    pub fn start(ns: &Netns, script: &str, args: &[&str]) -> Helper {
        let path = who_script(script);
        let mut all = vec![path.as_str()];
        all.extend_from_slice(args);
        Helper::spawn(ns.cmd("python3", &all))
    }

    pub fn spawn(mut cmd: Command) -> Helper {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {cmd:?}: {e}"));
        let stdin = child.stdin.take();
        let stdout = Lines::new(child.stdout.take().unwrap());
        Helper {
            child,
            stdin,
            stdout,
        }
    }

    /// The words of the helper's next line, which must start with `word`.
    pub fn expect(&mut self, word: &str) -> Vec<String> {
        let line = self
            .stdout
            .expect(STEP, &format!("helper line starting {word:?}"));
        let words: Vec<String> = line.split_whitespace().map(String::from).collect();
        assert_eq!(
            words.first().map(String::as_str),
            Some(word),
            "helper said {line:?}"
        );
        words[1..].to_vec()
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        self.stdin.take();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The path of a helper script under tests/support/who.
pub fn who_script(script: &str) -> String {
    repo()
        .join("tests/support/who")
        .join(script)
        .to_str()
        .unwrap()
        .to_string()
}

/// A daemon a test started (collectd, influxd): SIGTERM, up to 10 s to exit, then SIGKILL.
pub struct Daemon {
    name: &'static str,
    child: Child,
}

impl Daemon {
    pub fn spawn(name: &'static str, cmd: &mut Command) -> Daemon {
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {cmd:?}: {e}"));
        Daemon { name, child }
    }

    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Stops it as its service manager would; returns whether it exited on SIGTERM in time.
    pub fn stop(&mut self) -> bool {
        if self.exited().is_some() {
            return true;
        }
        // SAFETY: kill has no memory preconditions; the pid is our own unreaped child.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let gone = wait_for(Duration::from_secs(10), || self.exited()).is_some();
        if !gone {
            note!("{}: no exit 10 s after SIGTERM, killing", self.name);
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        gone
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
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
        Live::start_env(ns, extra, &[])
    }

    /// [`Live::start`] with `env` added to acceptq's environment.
    pub fn start_env(ns: &Netns, extra: &[&str], env: &[(&str, &str)]) -> Live {
        let mut args = vec!["--signal", "stdin", "--format", "json"];
        args.extend_from_slice(extra);
        let mut child = ns
            .cmd(acceptq(), &args)
            .envs(env.iter().copied())
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
    pub fn close_and_wait(mut self, limit: Duration) -> Option<ExitStatus> {
        drop(self.stdin.take());
        wait_or_kill(&mut self.child, limit)
    }

    /// Closes stdin (Telegraf stopping us) and returns the exit status and everything acceptq
    /// wrote to stderr.
    pub fn finish(mut self) -> (ExitStatus, String) {
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

/// tests/support/who/hold.py: one listener under process name `name`; returns the helper, the
/// port and the pids holding the socket (parent first).
pub fn hold(ns: &Netns, name: &str, addr: &str, port: u16, fork: bool) -> (Helper, u16, Vec<u32>) {
    let port = port.to_string();
    let mut args = vec![name, addr, port.as_str(), "8"];
    if fork {
        args.push("fork");
    }
    let mut h = Helper::start(ns, "hold.py", &args);
    let w = h.expect("ok");
    let pids = w[1..].iter().map(|p| p.parse().unwrap()).collect();
    (h, w[0].parse().unwrap(), pids)
}
