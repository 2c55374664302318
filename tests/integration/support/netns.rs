//! Throwaway network namespaces and the Python driver that holds listeners and clients in them.

use std::io::Write;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::host::{acceptq, repo};
use super::process::{output_ok, run_ok, wait_for, Helper};

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

    /// Drops the clients' bare final ACK to each of `ports` (nftables, table `inet f`): a
    /// handshake never completes, so each client leaves a request in the SYN queue (or a Fast
    /// Open child in SYN_RECV). Call once per namespace.
    pub fn drop_final_acks(&self, ports: &[u16]) {
        run_ok(&mut self.cmd("nft", &["add", "table", "inet", "f"]));
        let chain = "{ type filter hook input priority 0; }";
        run_ok(&mut self.cmd("nft", &["add", "chain", "inet", "f", "in", chain]));
        for p in ports {
            let rule = format!(
                "add rule inet f in tcp dport {p} tcp flags & (syn|ack|fin|rst) == ack drop"
            );
            run_ok(&mut self.cmd("nft", &rule.split(' ').collect::<Vec<_>>()));
        }
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

    /// The pids of every process in the namespace.
    pub fn pids(&self) -> Vec<u32> {
        Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
            .map(|out| {
                String::from_utf8_lossy(&out.stdout)
                    .split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for pid in self.pids() {
            // SAFETY: kill has no memory preconditions; these processes live in our namespace.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// The Python driver (tests/support/driver.py) holding listeners and clients.
pub struct Driver(Helper);

impl Driver {
    /// Starts a driver-speaking program (`cmd`: driver.py or one of its kind, in a namespace).
    pub fn start(cmd: Command) -> Driver {
        Driver(Helper::spawn(cmd))
    }

    /// Sends one command and returns the words after `ok`.
    pub fn send(&mut self, command: &str) -> Vec<String> {
        let stdin = self.0.stdin.as_mut().expect("driver stdin open");
        writeln!(stdin, "{command}").unwrap();
        stdin.flush().unwrap();
        self.0.expect("ok")
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

    /// The pid of the program started (a wrapper such as `unshare` when one runs the driver).
    pub fn child_id(&self) -> u32 {
        self.0.child.id()
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(stdin) = self.0.stdin.as_mut() {
            let _ = writeln!(stdin, "quit");
        }
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
