//! Who owns a listener: the process named as root (driver and a forked pre-fork-style server)
//! and as `nobody`, the owner cache following sockets, and the systemd unit from the cgroup.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use crate::support::*;

tests![
    owner_named_as_root_and_left_out_with_one_warning_as_nobody,
    attribution_follows_new_and_replaced_sockets,
    process_unit_comes_from_its_cgroup,
];

fn stderr_lines(out: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(out)
        .lines()
        .map(String::from)
        .collect()
}

/// Owner attribution as root (driver and a forked pre-fork-style server), then as `nobody`:
/// depth and limit still reported, `process`/`pid` left out, one warning that says which
/// capability is missing; `--no-process` says nothing and attributes nothing.
fn owner_named_as_root_and_left_out_with_one_warning_as_nobody() {
    let test = "attribution::owner_named_as_root_and_left_out_with_one_warning_as_nobody";
    if !(netns_gate(test) && nobody_gate(test)) {
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
    std::fs::copy(who_script("hold.py"), &script).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut args = AS_NOBODY.to_vec();
    args.extend([
        SYSTEM_PYTHON,
        script.to_str().unwrap(),
        "aqwho-nobody",
        "127.0.0.1",
        "0",
        "8",
    ]);
    let mut held = Helper::spawn(own.cmd("setpriv", &args));
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

/// The owner cache is keyed by socket, not port: a listener that appears later is attributed,
/// a port taken over by another process is named after the new owner, and a socket whose
/// named owner exited is named after the process still holding it.
fn attribution_follows_new_and_replaced_sockets() {
    if !netns_gate("attribution::attribution_follows_new_and_replaced_sockets") {
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

/// `acceptq --once --format json EXTRA` run as nobody inside `ns`; it must succeed.
fn once_as_nobody(ns: &Netns, bin: &str, extra: &[&str]) -> std::process::Output {
    let mut args = AS_NOBODY.to_vec();
    args.push(bin);
    args.extend_from_slice(&["--once", "--format", "json"]);
    args.extend_from_slice(extra);
    let out = ns.cmd("setpriv", &args).output().unwrap();
    assert!(out.status.success(), "as nobody: {out:?}");
    out
}

/// A cgroup made on the host for one test, removed however the test ends (once its last
/// process has gone, which the namespace's drop sees to).
struct Cgroup(std::path::PathBuf);

impl Drop for Cgroup {
    fn drop(&mut self) {
        if wait_for(Duration::from_secs(3), || std::fs::remove_dir(&self.0).ok()).is_none()
            && !std::thread::panicking()
        {
            panic!("cgroup {} left behind", self.0.display());
        }
    }
}

/// Where the unified (v2) cgroup hierarchy is mounted, from our mountinfo.
fn cgroup2_root() -> Option<std::path::PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        right
            .starts_with("cgroup2 ")
            .then(|| left.split(' ').nth(4).map(std::path::PathBuf::from))?
    })
}

fn process_unit_comes_from_its_cgroup() {
    if !netns_gate("attribution::process_unit_comes_from_its_cgroup") {
        return;
    }
    let root = cgroup2_root();
    if !skip_unless(
        root.is_some(),
        "attribution::process_unit_comes_from_its_cgroup",
        "no cgroup2 hierarchy mounted",
    ) {
        return;
    }
    let unit = format!("acceptq-test-{}.service", std::process::id());
    let cgroup = Cgroup(root.unwrap().join(&unit));
    let dir = &cgroup.0;
    std::fs::create_dir(dir).unwrap();
    let ns = Netns::new("unit");
    let mut d = ns.driver();
    let (_, port) = d.listen("127.0.0.1", 0, 8, false);
    let pid = d.pid();
    std::fs::write(dir.join("cgroup.procs"), pid.to_string()).unwrap();
    let out = ns.acceptq(&["--once", "--format", "json", "--unit"]);
    let plain = ns.acceptq(&["--once", "--format", "json"]);
    let report = json_lines(&out.stdout);
    let row = listener(&report, port).clone();
    drop(d);
    drop(ns);
    drop(cgroup);
    assert_eq!(row["tags"]["unit"], unit.as_str(), "{row}");
    let plain = json_lines(&plain.stdout);
    assert!(
        listener(&plain, port)["tags"].get("unit").is_none(),
        "unit only with --unit"
    );
    assert_eq!(int(&row["fields"]["pid"]), u64::from(pid));
}
