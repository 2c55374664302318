//! Issue 4: who owns a listener (process attribution, privileged or not), the SYN queue,
//! SO_REUSEPORT groups, listener churn under `--max-listeners`, and the listener filters. Every
//! test runs in a namespace of its own; `ss` is the kernel's word to compare with (tests only).

use std::collections::{BTreeSet, HashMap};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::common::{
    self, have, json_lines, listener, netns_gate, netns_row, output_ok, run_ok, skip_unless,
    wait_for, Json, Lines, Live, Netns, STEP,
};

fn support(script: &str) -> String {
    common::repo()
        .join("tests/support/who")
        .join(script)
        .to_str()
        .unwrap()
        .to_string()
}

/// A helper process of tests/support/who, killed on drop (the namespace's drop kills it too).
struct Helper {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Lines,
}

impl Helper {
    fn start(ns: &Netns, script: &str, args: &[&str]) -> Helper {
        let path = support(script);
        let mut all = vec![path.as_str()];
        all.extend_from_slice(args);
        Helper::spawn(ns.cmd("python3", &all))
    }

    fn spawn(mut cmd: Command) -> Helper {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start helper");
        let stdin = child.stdin.take();
        let stdout = Lines::new(child.stdout.take().unwrap());
        Helper {
            child,
            stdin,
            stdout,
        }
    }

    /// The words of the helper's next line, which must start with `word`.
    fn expect(&mut self, word: &str) -> Vec<String> {
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

/// hold.py: one listener under process name `name`; returns the helper, the port and the pids
/// holding the socket (parent first).
fn hold(ns: &Netns, name: &str, addr: &str, port: u16, fork: bool) -> (Helper, u16, Vec<u32>) {
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

fn listener_rows(report: &[Json]) -> Vec<&Json> {
    report
        .iter()
        .filter(|m| m["name"] == "acceptq_listener")
        .collect()
}

fn field(m: &Json, name: &str) -> Option<u64> {
    m["fields"].get(name).map(|v| {
        v.as_u64()
            .unwrap_or_else(|| panic!("{name} is not a u64 in {m}"))
    })
}

fn port_of(m: &Json) -> u16 {
    m["tags"]["port"].as_str().unwrap().parse().unwrap()
}

fn stderr_lines(out: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(out)
        .lines()
        .map(String::from)
        .collect()
}

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("aq-who-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The acceptq binary as a path `nobody` can execute: the build's own when every directory on
/// the way is searchable by others, else a mode-755 copy in `tmp`.
fn binary_for_nobody(tmp: &TempDir) -> PathBuf {
    let bin = Path::new(common::acceptq());
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

fn comm_of(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap()
        .trim_end()
        .to_string()
}

/// Owner attribution as root (driver and a forked pre-fork-style server), then as `nobody`:
/// depth and limit still reported, `process`/`pid` left out, one warning that says which
/// capability is missing; `--no-process` says nothing and attributes nothing.
#[test]
fn who_process_attribution() {
    let test = "who_process_attribution";
    if !netns_gate(test) {
        return;
    }
    let nobody = have("setpriv")
        && have(SYSTEM_PYTHON)
        && Command::new("getent")
            .args(["passwd", "nobody"])
            .output()
            .is_ok_and(|o| o.status.success())
        && Command::new("getent")
            .args(["group", "nogroup"])
            .output()
            .is_ok_and(|o| o.status.success());
    if !skip_unless(
        nobody,
        test,
        "needs setpriv (util-linux), /usr/bin/python3, the nobody user and nogroup group",
    ) {
        return;
    }
    let ns = Netns::new("who-proc");
    let mut d = ns.driver();
    let (id, port) = d.listen("127.0.0.1", 0, 8, false);
    d.connect(id, 3);
    let pid = d.pid();
    let comm = comm_of(pid);
    assert!(comm.starts_with("python3"), "the driver's comm is {comm:?}");
    let (_forker, fport, fpids) = hold(&ns, "aqwho-fork", "127.0.0.1", 0, true);
    assert_eq!(fpids.len(), 2);

    let out = ns.acceptq(&["--once", "--format", "json"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        stderr_lines(&out.stderr),
        Vec::<String>::new(),
        "root sees every process: nothing to warn about"
    );
    let report = json_lines(&out.stdout);
    let row = listener(&report, port);
    assert_eq!(row["tags"]["process"], comm.as_str(), "{row}");
    assert_eq!(field(row, "pid"), Some(u64::from(pid)), "{row}");
    assert_eq!(field(row, "queue_depth"), Some(3), "{row}");
    // Parent and child share the socket: the lowest pid (the parent) is named.
    let row = listener(&report, fport);
    assert_eq!(row["tags"]["process"], "aqwho-fork", "{row}");
    assert_eq!(
        field(row, "pid"),
        Some(u64::from(*fpids.iter().min().unwrap())),
        "{row}"
    );

    let out = ns.acceptq(&["--once", "--format", "json", "--no-process"]);
    assert!(out.status.success(), "{out:?}");
    assert!(out.stderr.is_empty(), "{out:?}");
    for row in listener_rows(&json_lines(&out.stdout)) {
        assert!(row["tags"].get("process").is_none(), "--no-process: {row}");
        assert!(row["fields"].get("pid").is_none(), "--no-process: {row}");
    }

    // Unprivileged: /proc/<pid>/fd of root's processes is closed to us.
    let tmp = TempDir::new("bin");
    let bin = binary_for_nobody(&tmp);
    let bin = bin.to_str().unwrap();
    let as_nobody = |extra: &[&str]| once_as_nobody(&ns, bin, extra);
    let out = as_nobody(&[]);
    let report = json_lines(&out.stdout);
    let row = listener(&report, port);
    assert_eq!(field(row, "queue_depth"), Some(3), "{row}");
    assert_eq!(field(row, "queue_limit"), Some(8), "{row}");
    assert_eq!(field(row, "sockets"), Some(1), "{row}");
    assert!(field(row, "drops").is_some(), "{row}");
    for row in listener_rows(&report) {
        assert!(row["tags"].get("process").is_none(), "as nobody: {row}");
        assert!(row["fields"].get("pid").is_none(), "as nobody: {row}");
    }
    let err = stderr_lines(&out.stderr);
    assert_eq!(err.len(), 1, "one warning as nobody: {err:?}");
    assert!(
        err[0].starts_with("W! ") && err[0].contains("CAP_DAC_READ_SEARCH"),
        "{err:?}"
    );
    let out = as_nobody(&["--no-process"]);
    assert!(
        out.stderr.is_empty(),
        "--no-process as nobody: nothing to warn about: {out:?}"
    );
    let report = json_lines(&out.stdout);
    assert_eq!(field(listener(&report, port), "queue_depth"), Some(3));
    assert!(listener(&report, port)["tags"].get("process").is_none());

    // Where every listener belongs to nobody, nobody can name them all: no warning.
    let own = Netns::new("who-own");
    let script = tmp.0.join("hold.py");
    std::fs::copy(support("hold.py"), &script).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut held = Helper::spawn(own.cmd(
        "setpriv",
        &[
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            SYSTEM_PYTHON,
            script.to_str().unwrap(),
            "aqwho-nobody",
            "127.0.0.1",
            "0",
            "8",
        ],
    ));
    let w = held.expect("ok");
    let (own_port, own_pid): (u16, u64) = (w[0].parse().unwrap(), w[1].parse().unwrap());
    let out = once_as_nobody(&own, bin, &[]);
    let report = json_lines(&out.stdout);
    let row = listener(&report, own_port);
    assert_eq!(row["tags"]["process"], "aqwho-nobody", "{row}");
    assert_eq!(field(row, "pid"), Some(own_pid), "{row}");
    assert_eq!(
        stderr_lines(&out.stderr),
        Vec::<String>::new(),
        "every listener named: nothing to warn about"
    );
}

/// A python3 that `nobody` may run (pyenv's shims live under /root).
const SYSTEM_PYTHON: &str = "/usr/bin/python3";

/// The owner cache is keyed by socket, not port: a listener that appears later is attributed,
/// a port taken over by another process is named after the new owner, and a socket whose
/// named owner exited is named after the process still holding it.
#[test]
fn who_attribution_follows_new_and_replaced_sockets() {
    if !netns_gate("who_attribution_follows_new_and_replaced_sockets") {
        return;
    }
    let ns = Netns::new("who-cache");
    let (a, port, apids) = hold(&ns, "aqwho-a", "127.0.0.1", 0, false);
    let mut aq = Live::start(&ns, &[]);
    let r = aq.report();
    let row = listener(&r, port);
    assert_eq!(row["tags"]["process"], "aqwho-a", "{row}");
    assert_eq!(field(row, "pid"), Some(u64::from(apids[0])));

    let (mut daemon, dport, dpids) = hold(&ns, "aqwho-daemon", "127.0.0.1", 0, true);
    let r = aq.report();
    assert_eq!(
        field(listener(&r, dport), "pid"),
        Some(u64::from(*dpids.iter().min().unwrap())),
        "both alive: the lowest pid (the parent) is named"
    );
    // The parent exits (a daemon detaching): its child, still holding the socket, is the owner.
    daemon.child.kill().unwrap();
    daemon.child.wait().unwrap();

    let (_b, bport, bpids) = hold(&ns, "aqwho-b", "::1", 0, false);
    drop(a);
    // The port is free once a's process is gone.
    let c = wait_for(Duration::from_secs(5), || {
        let h = Helper::start(
            &ns,
            "hold.py",
            &["aqwho-c", "127.0.0.1", &port.to_string(), "8"],
        );
        let line = h.stdout.next(STEP).unwrap_or_default();
        line.starts_with("ok ").then_some((h, line))
    });
    let (_c, cline) = c.expect("port taken over within 5 s");
    let cpid: u64 = cline.split_whitespace().nth(2).unwrap().parse().unwrap();
    let r = aq.report();
    let row = listener(&r, port);
    assert_eq!(row["tags"]["process"], "aqwho-c", "replaced socket: {row}");
    assert_eq!(field(row, "pid"), Some(cpid), "{row}");
    let row = listener(&r, bport);
    assert_eq!(row["tags"]["process"], "aqwho-b", "new socket: {row}");
    assert_eq!(field(row, "pid"), Some(u64::from(bpids[0])), "{row}");
    let row = listener(&r, dport);
    assert_eq!(row["tags"]["process"], "aqwho-daemon", "{row}");
    assert_eq!(
        field(row, "pid"),
        Some(u64::from(dpids[1])),
        "the owner exited; its child holds the socket now: {row}"
    );
    let (status, stderr) = aq.finish();
    assert!(status.success(), "{status:?} {stderr}");
    assert_eq!(stderr, "");
}

/// Request sockets waiting in `ss -tn state syn-recv` for `port`.
fn ss_syn_recv(ns: &Netns, port: u16) -> usize {
    output_ok(&mut ns.cmd(
        "ss",
        &["-tnH", "state", "syn-recv", &format!("sport = :{port}")],
    ))
    .lines()
    .filter(|l| !l.trim().is_empty())
    .count()
}

/// DESIGN §6: without syncookies and with the clients' final ACK dropped by nftables, every
/// client leaves one request socket; `syn_queue_depth` counts them per listener, as `ss` does:
/// IPv4 clients of a dual-stack `[::]` listener (v4-mapped), clients of `0.0.0.0` through any
/// local address, and a SO_REUSEPORT group (carried by `socket=0` with `--per-socket`).
#[test]
fn who_syn_queue() {
    let test = "who_syn_queue";
    if !netns_gate(test) || !skip_unless(have("nft"), test, "needs nft (nftables)") {
        return;
    }
    if !skip_unless(have("ss"), test, "needs ss (iproute2)") {
        return;
    }
    let ns = Netns::new("who-syn");
    ns.sysctl("net.ipv4.tcp_syncookies", "0");
    let mut d = ns.driver();
    let (id4, p4) = d.listen("127.0.0.1", 0, 16, false);
    let (_, p6) = d.listen("::", 0, 16, false);
    let (_, pany) = d.listen("0.0.0.0", 0, 16, false);
    let (rp, prp) = d.listen("127.0.0.1", 0, 16, true);
    d.listen("127.0.0.1", prp, 16, true);
    run_ok(&mut ns.cmd("nft", &["add", "table", "inet", "f"]));
    run_ok(&mut ns.cmd(
        "nft",
        &[
            "add",
            "chain",
            "inet",
            "f",
            "in",
            "{ type filter hook input priority 0; }",
        ],
    ));
    for p in [p4, p6, pany, prp] {
        let rule =
            format!("add rule inet f in tcp dport {p} tcp flags & (syn|ack|fin|rst) == ack drop");
        let words: Vec<&str> = rule.split(' ').collect();
        run_ok(&mut ns.cmd("nft", &words));
    }
    d.connect(id4, 5);
    d.connect(rp, 3);
    let clients = |host: &str, port: u16, n: usize| {
        let mut h = Helper::start(
            &ns,
            "syn_clients.py",
            &[host, &port.to_string(), &n.to_string()],
        );
        h.expect("ok");
        h
    };
    // IPv4 clients of the dual-stack listener (v4-mapped), and of the IPv4 wildcard through two
    // local addresses.
    let _v4_to_v6 = clients("127.0.0.1", p6, 4);
    let _any1 = clients("127.0.0.1", pany, 2);
    let _any2 = clients("127.0.0.2", pany, 1);
    let expected = [(p4, 5), (p6, 4), (pany, 3), (prp, 3)];
    let settled = wait_for(Duration::from_secs(5), || {
        expected
            .iter()
            .all(|&(p, n)| ss_syn_recv(&ns, p) == n)
            .then_some(())
    });
    let held: Vec<usize> = expected.iter().map(|&(p, _)| ss_syn_recv(&ns, p)).collect();
    assert!(
        settled.is_some(),
        "kernel holds {held:?} request sockets, not {expected:?}"
    );

    let out = ns.acceptq(&["--once", "--format", "json"]);
    assert!(out.status.success(), "{out:?}");
    let report = json_lines(&out.stdout);
    for (p, n) in expected {
        let row = listener(&report, p);
        let ss = ss_syn_recv(&ns, p);
        assert_eq!(field(row, "syn_queue_depth"), Some(n as u64), "{row}");
        assert_eq!(ss, n, "ss now says {ss} for {p}");
        assert_eq!(
            field(row, "queue_depth"),
            Some(0),
            "handshakes never completed: {row}"
        );
    }
    assert_eq!(listener(&report, p6)["tags"]["address"], "::");
    assert_eq!(listener(&report, pany)["tags"]["address"], "0.0.0.0");
    assert_eq!(field(listener(&report, prp), "sockets"), Some(2));
    assert_eq!(field(netns_row(&report), "tcp_syncookies"), Some(0));

    // README: the SYN queue cannot be split among a group's sockets; socket=0 carries it.
    let out = ns.acceptq(&[
        "--once",
        "--format",
        "json",
        "--per-socket",
        "--port",
        &prp.to_string(),
    ]);
    assert!(out.status.success(), "{out:?}");
    let report = json_lines(&out.stdout);
    let rows = listener_rows(&report);
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0]["tags"]["socket"], "0");
    assert_eq!(field(rows[0], "syn_queue_depth"), Some(3), "{}", rows[0]);
    assert_eq!(field(rows[1], "syn_queue_depth"), None, "{}", rows[1]);

    let out = ns.acceptq(&["--once", "--format", "json", "--no-syn-queue"]);
    assert!(out.status.success(), "{out:?}");
    for row in listener_rows(&json_lines(&out.stdout)) {
        assert!(
            row["fields"].get("syn_queue_depth").is_none(),
            "--no-syn-queue: {row}"
        );
    }
}

/// One LISTEN socket as `ss -tlnme` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SsSocket {
    inode: u64,
    limit: u64,
    drops: u64,
}

/// Every listening socket on `port`, sorted by inode (acceptq's `socket` index order).
fn ss_sockets(ns: &Netns, port: u16) -> Vec<SsSocket> {
    let text = output_ok(&mut ns.cmd("ss", &["-tlnmeH", &format!("sport = :{port}")]));
    let mut out = Vec::new();
    // A record starts with its state; skmem may follow on a continuation line.
    for record in text.split("LISTEN").filter(|r| !r.trim().is_empty()) {
        let words: Vec<&str> = record.split_whitespace().collect();
        let limit = words[1].parse().unwrap();
        let inode = words
            .iter()
            .find_map(|w| w.strip_prefix("ino:"))
            .unwrap_or_else(|| panic!("no inode in {record:?}"))
            .parse()
            .unwrap();
        let drops = record
            .split(|c: char| c == ',' || c == ')' || c == '(' || c.is_whitespace())
            .filter_map(|t| t.strip_prefix('d'))
            .find_map(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no drops in {record:?}"));
        out.push(SsSocket {
            inode,
            limit,
            drops,
        });
    }
    out.sort_by_key(|s| s.inode);
    out
}

/// Three SO_REUSEPORT sockets on one port, one of them full: the default row sums the group
/// (sockets 3, limits and drops added up, as the kernel counts them); `--per-socket` splits it
/// by inode rank and only the full socket has drops.
#[test]
fn who_reuseport_group() {
    let test = "who_reuseport_group";
    if !netns_gate(test) || !skip_unless(have("ss"), test, "needs ss (iproute2)") {
        return;
    }
    let ns = Netns::new("who-rp");
    let mut d = ns.driver();
    // The full one first, alone in its group while its clients connect: capacity 2, 10
    // clients, drops from the first SYNs on.
    let (full, port) = d.listen("127.0.0.1", 0, 1, true);
    d.connect(full, 10);
    assert!(
        wait_for(Duration::from_secs(5), || (ns.ss_drops(port) > 0)
            .then_some(()))
        .is_some(),
        "the backlog-1 socket never dropped"
    );
    // Two idle ones join; retransmitted SYNs that hash to them are accepted, never dropped.
    d.listen("127.0.0.1", port, 64, true);
    d.listen("127.0.0.1", port, 64, true);

    // Drops grow with each SYN retransmission: compare only readings that the kernel's own,
    // taken before and after, agree on.
    let mut checked = false;
    for _ in 0..20 {
        let before = ss_sockets(&ns, port);
        let total = ns.ss_drops(port);
        let grouped = ns.acceptq(&["--once", "--format", "json", "--port", &port.to_string()]);
        let split = ns.acceptq(&[
            "--once",
            "--format",
            "json",
            "--per-socket",
            "--port",
            &port.to_string(),
        ]);
        let after = ss_sockets(&ns, port);
        if before != after {
            std::thread::sleep(Duration::from_millis(150));
            continue;
        }
        assert!(grouped.status.success() && split.status.success());
        assert_eq!(before.len(), 3, "{before:?}");
        let sum: u64 = before.iter().map(|s| s.drops).sum();
        assert_eq!(sum, total, "ss_drops sums the group");

        let report = json_lines(&grouped.stdout);
        let rows = listener_rows(&report);
        assert_eq!(rows.len(), 1, "one row for the group: {rows:?}");
        let row = rows[0];
        assert_eq!(field(row, "sockets"), Some(3), "{row}");
        assert_eq!(field(row, "queue_limit"), Some(1 + 64 + 64), "{row}");
        assert_eq!(
            field(row, "drops"),
            Some(sum),
            "kernel says {before:?}: {row}"
        );
        assert_eq!(
            field(netns_row(&report), "listen_drops"),
            Some(sum),
            "the namespace's ListenDrops is this group's drops"
        );

        let report = json_lines(&split.stdout);
        let rows = listener_rows(&report);
        assert_eq!(rows.len(), 3, "{rows:?}");
        let mut dropping = Vec::new();
        for (i, (row, ss)) in rows.iter().zip(&before).enumerate() {
            assert_eq!(row["tags"]["socket"], i.to_string(), "{row}");
            assert_eq!(field(row, "sockets"), Some(1), "{row}");
            assert_eq!(
                field(row, "queue_limit"),
                Some(ss.limit),
                "rank by inode: {row}"
            );
            assert_eq!(field(row, "drops"), Some(ss.drops), "{row} vs {ss:?}");
            if ss.drops > 0 {
                dropping.push(*row);
            }
        }
        assert_eq!(dropping.len(), 1, "only the full socket drops: {before:?}");
        let row = dropping[0];
        assert_eq!(field(row, "queue_limit"), Some(1), "{row}");
        assert_eq!(
            field(row, "queue_depth"),
            Some(2),
            "full: depth > limit: {row}"
        );
        assert_eq!(field(row, "drops"), Some(sum), "{row}");
        checked = true;
        break;
    }
    assert!(checked, "drops never held still long enough to compare");
}

/// Ports `acceptq --once --format json ARGS` reports; the namespace row's `listeners` agrees.
fn reported_ports(ns: &Netns, args: &[&str]) -> BTreeSet<u16> {
    let mut all = vec!["--once", "--format", "json"];
    all.extend_from_slice(args);
    let out = ns.acceptq(&all);
    assert!(out.status.success(), "{args:?}: {out:?}");
    let report = json_lines(&out.stdout);
    let rows = listener_rows(&report);
    assert_eq!(
        field(netns_row(&report), "listeners"),
        Some(rows.len() as u64),
        "{args:?}"
    );
    rows.iter().map(|r| port_of(r)).collect()
}

#[test]
fn who_filters() {
    if !netns_gate("who_filters") {
        return;
    }
    let ns = Netns::new("who-filter");
    let mut d = ns.driver();
    let (_, p1) = d.listen("127.0.0.1", 0, 8, false);
    let (_, p2) = d.listen("127.0.0.2", 0, 8, false);
    let (_, p3) = d.listen("::1", 0, 8, false);
    let (_h, p4, _) = hold(&ns, "aqwho-filter", "0.0.0.0", 0, false);
    let comm = comm_of(d.pid());
    let set = |ps: &[u16]| ps.iter().copied().collect::<BTreeSet<u16>>();
    let (s1, s2, s3, s4) = (
        p1.to_string(),
        p2.to_string(),
        p3.to_string(),
        p4.to_string(),
    );

    assert_eq!(reported_ports(&ns, &[]), set(&[p1, p2, p3, p4]));
    assert_eq!(reported_ports(&ns, &["--port", &s1]), set(&[p1]));
    assert_eq!(
        reported_ports(&ns, &["--port", &s1, "--port", &s3]),
        set(&[p1, p3])
    );
    assert_eq!(
        reported_ports(&ns, &["--exclude-port", &s1]),
        set(&[p2, p3, p4])
    );
    assert_eq!(
        reported_ports(&ns, &["--port", &s1, "--port", &s2, "--exclude-port", &s2]),
        set(&[p1])
    );
    assert_eq!(
        reported_ports(&ns, &["--address", "127.0.0.*"]),
        set(&[p1, p2])
    );
    assert_eq!(reported_ports(&ns, &["--address", "::1"]), set(&[p3]));
    assert_eq!(reported_ports(&ns, &["--address", "::*"]), set(&[p3]));
    assert_eq!(
        reported_ports(&ns, &["--address", "0.0.0.0", "--address", "127.0.0.?"]),
        set(&[p1, p2, p4])
    );
    assert_eq!(reported_ports(&ns, &["--address", "10.*"]), set(&[]));
    assert_eq!(reported_ports(&ns, &["--process", "aqwho-*"]), set(&[p4]));
    assert_eq!(
        reported_ports(&ns, &["--process", &comm]),
        set(&[p1, p2, p3])
    );
    assert_eq!(
        reported_ports(&ns, &["--process", "py*", "--process", "aqwho-filter"]),
        set(&[p1, p2, p3, p4])
    );
    assert_eq!(
        reported_ports(&ns, &["--process", "py*", "--port", &s4]),
        set(&[])
    );
    assert_eq!(
        reported_ports(&ns, &["--process", "aqwho", "--address", "*"]),
        set(&[]),
        "a glob without * matches the whole name only"
    );
    assert_eq!(
        reported_ports(
            &ns,
            &[
                "--address",
                "127.*",
                "--exclude-port",
                &s2,
                "--process",
                "py*"
            ]
        ),
        set(&[p1])
    );
}

/// VmRSS / VmHWM of `pid` in kB.
fn vm_kb(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim_start_matches(':').split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
}

/// Peak RSS allowed during churn, in kB. Measured here with the debug build: VmHWM 6.4 MB,
/// VmRSS 5.4-6.3 MB over the run; the test prints its own numbers.
const CHURN_RSS_LIMIT_KB: u64 = 16 * 1024;

/// 20 000 listeners opened and closed over a minute by two processes (plus 150 steady ones,
/// 3 of them overflowing) while acceptq reports every second with `--max-listeners 100`: memory
/// stays bounded, every report has at most 100 rows and counts the rest, deltas are never
/// negative, never appear for a listener opened since the previous report, and equal the drops
/// gained for a listener seen in both reports.
#[test]
fn who_churn() {
    let test = "who_churn";
    if !netns_gate(test) || !skip_unless(have("ss"), test, "needs ss (iproute2)") {
        return;
    }
    let ns = Netns::new("who-churn");
    // Clients' ephemeral ports stay out of the listeners' range (20000-40999).
    ns.sysctl("net.ipv4.ip_local_port_range", "50000 60999");
    let tmp = TempDir::new("churn");
    let mut steady = Helper::start(&ns, "churn.py", &["steady", "20000", "150", "3", "6"]);
    steady.expect("ok");
    let busy = "sport >= :20000 and sport <= :20002";
    let full = wait_for(Duration::from_secs(5), || {
        let text = output_ok(&mut ns.cmd("ss", &["-tlnH", busy]));
        let depths: Vec<&str> = text
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1))
            .collect();
        (depths == ["2", "2", "2"]).then_some(())
    });
    assert!(full.is_some(), "the 3 busy steady listeners did not fill");

    let mut aq = Live::start(&ns, &["--sample", "100ms", "--max-listeners", "100"]);
    let pid = aq.pid();
    let mut reports: Vec<(Vec<Json>, u128)> = Vec::new();
    let now_ns = || {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    };
    let mut rss = Vec::new();
    reports.push((aq.report(), now_ns()));
    rss.push(vm_kb(pid, "VmRSS"));

    let logs: Vec<PathBuf> = (0..2)
        .map(|i| tmp.0.join(format!("churn{i}.log")))
        .collect();
    let mut churners: Vec<Helper> = logs
        .iter()
        .enumerate()
        .map(|(i, log)| {
            let first = (21_000 + 10_000 * i).to_string();
            Helper::start(
                &ns,
                "churn.py",
                &[
                    "churn",
                    &first,
                    "10000",
                    "250",
                    "1.5",
                    "70",
                    log.to_str().unwrap(),
                    "2",
                    "4",
                ],
            )
        })
        .collect();
    let start = Instant::now();
    let mut next = start;
    let mut running = true;
    while running {
        next += Duration::from_secs(1);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        reports.push((aq.report(), now_ns()));
        rss.push(vm_kb(pid, "VmRSS"));
        running = churners
            .iter_mut()
            .any(|c| c.child.try_wait().unwrap().is_none());
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "churn did not finish in 90 s"
        );
    }
    // Two more reports once the churn is over: the rows it left vanish.
    for _ in 0..2 {
        std::thread::sleep(Duration::from_secs(1));
        reports.push((aq.report(), now_ns()));
        rss.push(vm_kb(pid, "VmRSS"));
    }
    let hwm = vm_kb(pid, "VmHWM");
    let (status, stderr) = aq.finish();
    assert!(status.success(), "{status:?}: {stderr}");

    let mut opened_at: HashMap<u16, u128> = HashMap::new();
    let mut opened = 0;
    for (c, log) in churners.iter_mut().zip(&logs) {
        let w = c.expect("done");
        opened += w[0].parse::<usize>().unwrap();
        for line in std::fs::read_to_string(log).unwrap().lines() {
            let (p, t) = line.split_once(' ').unwrap();
            opened_at.insert(p.parse().unwrap(), t.parse().unwrap());
        }
    }
    assert_eq!(opened, 20_000, "the churn opened every listener");
    assert_eq!(opened_at.len(), 20_000);
    eprintln!(
        "who_churn: {} reports in {:.1} s; VmRSS kB min {} max {} last {}; VmHWM {} kB",
        reports.len(),
        start.elapsed().as_secs_f64(),
        rss.iter().min().unwrap(),
        rss.iter().max().unwrap(),
        rss.last().unwrap(),
        hwm
    );
    assert!(
        hwm < CHURN_RSS_LIMIT_KB,
        "VmHWM {hwm} kB over {CHURN_RSS_LIMIT_KB} kB; VmRSS per report {rss:?}"
    );

    let mut first_omitted = None;
    let mut churn_rows = 0;
    let mut deltas_checked = 0;
    let mut positive_deltas = 0;
    let mut fresh_checked = 0;
    let steady_pid = u64::from(steady.child.id());
    for (n, (report, _)) in reports.iter().enumerate() {
        let rows = listener_rows(report);
        let netns = netns_row(report);
        assert!(rows.len() <= 100, "report {n}: {} rows", rows.len());
        let listeners = field(netns, "listeners").unwrap();
        let omitted = field(netns, "listeners_omitted").unwrap();
        assert_eq!(
            listeners,
            rows.len() as u64 + omitted,
            "report {n}: reported + omitted = all"
        );
        assert_eq!(rows.len() as u64, listeners.min(100), "report {n}");
        if omitted > 0 && first_omitted.is_none() {
            first_omitted = Some(omitted);
        }
        for m in report {
            for (k, v) in m["fields"].as_object().unwrap() {
                if k.ends_with("_delta") {
                    assert!(v.is_u64(), "report {n}: {k} = {v} in {m}");
                    assert!(n > 0, "report 0 has no previous values: {m}");
                }
            }
        }
        for row in &rows {
            let port = port_of(row);
            if (20_000..20_150).contains(&port) && row["fields"].get("pid").is_some() {
                assert_eq!(field(row, "pid"), Some(steady_pid), "report {n}: {row}");
            }
        }
        for port in 20_000..20_003 {
            let row = listener(report, port);
            assert_eq!(field(row, "queue_depth"), Some(2), "report {n}: {row}");
            assert_eq!(field(row, "pid"), Some(steady_pid), "report {n}: {row}");
        }
        if n == 0 {
            continue;
        }
        let (prev, prev_seen) = &reports[n - 1];
        let prev_drops: HashMap<u16, Option<u64>> = listener_rows(prev)
            .iter()
            .map(|r| (port_of(r), field(r, "drops")))
            .collect();
        for row in &rows {
            let port = port_of(row);
            let drops = field(row, "drops").expect("drops");
            let delta = field(row, "drops_delta");
            if opened_at.contains_key(&port) {
                churn_rows += 1;
            }
            if opened_at.get(&port).is_some_and(|t| t > prev_seen) {
                assert_eq!(
                    delta, None,
                    "report {n}: listener opened after the previous report has a delta: {row}"
                );
                fresh_checked += 1;
            }
            if let Some(Some(before)) = prev_drops.get(&port) {
                // Every port holds one socket in this test: same row, same socket.
                assert_eq!(
                    delta,
                    Some(drops - before),
                    "report {n}: seen before with drops {before}: {row}"
                );
                deltas_checked += 1;
            } else if let Some(d) = delta {
                assert!(d <= drops, "report {n}: {row}");
            }
            if delta.is_some_and(|d| d > 0) {
                positive_deltas += 1;
            }
        }
    }
    eprintln!(
        "who_churn: {churn_rows} churned rows reported, {deltas_checked} deltas checked \
         exactly, {positive_deltas} positive, {fresh_checked} new listeners without a delta"
    );
    assert!(churn_rows > 100, "churned listeners were hardly reported");
    assert!(fresh_checked > 20, "too few new listeners reported");
    assert!(deltas_checked > 100 && positive_deltas > 0);

    let first_omitted = first_omitted.expect("150 steady listeners > --max-listeners 100");
    let said: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("--max-listeners"))
        .collect();
    assert_eq!(said.len(), 1, "said once: {stderr}");
    assert!(
        said[0].starts_with("W! ")
            && said[0].contains(&format!("{first_omitted} listener rows left out")),
        "{said:?}"
    );
    for line in stderr.lines() {
        assert!(
            line.starts_with("W! ") || line.starts_with("I! "),
            "{stderr}"
        );
    }
}

/// `acceptq --once --format json EXTRA` run as nobody inside `ns`; it must succeed.
fn once_as_nobody(ns: &Netns, bin: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["--reuid=nobody", "--regid=nogroup", "--clear-groups", bin];
    args.extend_from_slice(&["--once", "--format", "json"]);
    args.extend_from_slice(extra);
    let out = ns.cmd("setpriv", &args).output().unwrap();
    assert!(out.status.success(), "as nobody: {out:?}");
    out
}
