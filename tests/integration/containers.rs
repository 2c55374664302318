//! `--all-netns` on a container host: every network namespace (named by `ip netns`, bind-mounted
//! by Docker, held only by processes) is found and named as a person knows it, with its
//! container and pod. The containers are simulated: namespaces made with `unshare`, processes
//! placed in cgroups laid out as Docker and Kubernetes lay them out. (No dockerd runs here, and
//! no registry is reachable for an image: a real container cannot be relied on in CI.)

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::support::exposition::check_exposition;
use crate::support::*;

tests![
    every_namespace_is_reported_once_with_its_container_pod_and_kernel_counters,
    a_namespace_gone_or_recreated_between_reports_carries_no_delta,
    without_cap_sys_admin_our_namespace_is_reported_and_the_others_said_once,
];

const DRIVER: &str = "tests/support/driver.py";

fn driver_path() -> String {
    repo().join(DRIVER).to_str().unwrap().to_string()
}

static IDS: AtomicU32 = AtomicU32::new(0);

/// A fresh 64-hex-digit container id, different on every call (its first 12 digits too).
fn container_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let n = IDS.fetch_add(1, Ordering::Relaxed);
    format!("{:08x}{n:04x}{nanos:052x}", std::process::id())
}

/// Where a cgroup hierarchy is mounted: the unified (v2) one, or a v1 one with `option`.
fn cgroup_mount(v2: bool, option: &str) -> Option<PathBuf> {
    let text = fs::read_to_string("/proc/self/mountinfo").ok()?;
    text.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        let mut r = right.split(' ');
        let (fstype, _, opts) = (r.next()?, r.next()?, r.next().unwrap_or(""));
        let ok = if v2 {
            fstype == "cgroup2"
        } else {
            fstype == "cgroup" && opts.split(',').any(|o| o == option)
        };
        let point = left.split(' ').nth(4)?;
        ok.then(|| PathBuf::from(point))
    })
}

/// Cgroups made by a test (a tree under `<mount>/aq-test-<pid>-<n>`), removed on drop with any
/// process still in them moved back to the hierarchy's root.
struct Cgroups {
    mount: PathBuf,
    top: PathBuf,
}

impl Cgroups {
    fn new(mount: PathBuf, tag: &str) -> Cgroups {
        let top = mount.join(format!("aq-test-{}-{tag}", std::process::id()));
        fs::create_dir(&top).unwrap();
        Cgroups { mount, top }
    }

    /// Puts `pid` in the cgroup `rel` (made if needed) below the tree's top; returns the path
    /// `/proc/<pid>/cgroup` shows for it.
    fn place(&self, rel: &str, pid: u32) -> String {
        let dir = self.top.join(rel);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("cgroup.procs"), pid.to_string())
            .unwrap_or_else(|e| panic!("{}: pid {pid}: {e}", dir.display()));
        format!("/{}", dir.strip_prefix(&self.mount).unwrap().display())
    }
}

impl Drop for Cgroups {
    fn drop(&mut self) {
        let mut dirs: Vec<PathBuf> = Vec::new();
        let mut stack = vec![self.top.clone()];
        while let Some(d) = stack.pop() {
            if let Ok(rd) = fs::read_dir(&d) {
                stack.extend(rd.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
            }
            dirs.push(d);
        }
        // Deepest first.
        dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        for d in dirs {
            for _ in 0..50 {
                if let Ok(procs) = fs::read_to_string(d.join("cgroup.procs")) {
                    for pid in procs.split_whitespace() {
                        let _ = fs::write(self.mount.join("cgroup.procs"), pid);
                    }
                }
                if fs::remove_dir(&d).is_ok() || !d.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// A namespace bind-mounted as Docker mounts its sandboxes, `/run/docker/netns/<12 hex>`;
/// the mount and file are removed on drop, and the folders too unless a real Docker's were
/// there before the tests (the last test out removes them).
struct DockerSandbox {
    path: PathBuf,
}

/// Whether `/run/docker` was there before any test made it.
fn docker_was_there() -> bool {
    static THERE: OnceLock<bool> = OnceLock::new();
    *THERE.get_or_init(|| Path::new("/run/docker").exists())
}

impl DockerSandbox {
    fn new(name: &str) -> DockerSandbox {
        docker_was_there();
        fs::create_dir_all("/run/docker/netns").unwrap();
        let path = Path::new("/run/docker/netns").join(name);
        fs::File::create(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let sandbox = DockerSandbox { path };
        let file = sandbox.path.to_str().unwrap();
        run_ok(
            Command::new("unshare")
                .arg(format!("--net={file}"))
                .arg("true"),
        );
        run_ok(
            Command::new("nsenter")
                .arg(format!("--net={file}"))
                .args(["ip", "link", "set", "lo", "up"]),
        );
        sandbox
    }

    fn enter(&self, program: &str, args: &[&str]) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.path.display()))
            .arg(program)
            .args(args);
        c
    }
}

impl Drop for DockerSandbox {
    fn drop(&mut self) {
        // Detached, as Docker and `ip netns del` do: a running acceptq may hold the namespace
        // open through the mount.
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        let _ = fs::remove_file(&self.path);
        if !docker_was_there() {
            // Fails while another test's sandbox is still there: that one removes them.
            let _ = fs::remove_dir("/run/docker/netns").and_then(|_| fs::remove_dir("/run/docker"));
        }
    }
}

/// A command run in the network namespace of `pid`.
fn in_ns_of(pid: u32, program: &str, args: &[&str]) -> Command {
    let mut c = Command::new("nsenter");
    c.args(["-t", &pid.to_string(), "-n", program]).args(args);
    c
}

/// A TcpExt counter of the namespace of `pid`, from `/proc/<pid>/net/netstat`.
fn tcpext_of(pid: u32, name: &str) -> u64 {
    let text = fs::read_to_string(format!("/proc/{pid}/net/netstat")).unwrap();
    let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let names: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    let values: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    let i = names.iter().position(|n| *n == name).unwrap();
    values[i].parse().unwrap()
}

/// (depth, sk_drops) of the listener on `port` in the namespace of `pid`, as `ss` says.
fn ss_of(pid: u32, port: u16) -> (u32, u64) {
    let text = output_ok(&mut in_ns_of(
        pid,
        "ss",
        &["-tlnmH", &format!("sport = :{port}")],
    ));
    let depth = text
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u32>().ok())
        .sum();
    let drops = text
        .split(|c: char| c == ',' || c == ')' || c.is_whitespace())
        .filter_map(|t| t.strip_prefix('d'))
        .filter_map(|n| n.parse::<u64>().ok())
        .sum();
    (depth, drops)
}

fn netns_inode(pid: u32) -> u64 {
    fs::metadata(format!("/proc/{pid}/ns/net")).unwrap().ino()
}

/// One namespace of the test: where its listener is, what acceptq must call it, and a process
/// in it (the listener's owner, as the host numbers it).
struct Case {
    what: &'static str,
    netns: String,
    pid: u32,
    port: u16,
    backlog: u32,
    container: Option<String>,
    pod: Option<String>,
}

/// The four namespaces, each with a listener that never accepts and more clients than it holds.
struct Setup {
    cases: Vec<Case>,
    // Dropped last: processes first, then their namespaces and cgroups.
    _drivers: Vec<Driver>,
    _pause: Option<Reaped>,
    _named: Netns,
    _sandbox: DockerSandbox,
    _cgroups: Vec<Cgroups>,
    _tmp: TempDir,
}

/// Listens with `backlog` on 127.0.0.1, connects `backlog + 3` clients; returns the port.
fn fill(d: &mut Driver, backlog: u32) -> u16 {
    let (id, port) = d.listen("127.0.0.1", 0, backlog, false);
    d.connect(id, backlog as usize + 3);
    port
}

fn setup(tag: &str) -> Setup {
    let tmp = TempDir::new(&format!("containers-{tag}"));
    let v2 = cgroup_mount(true, "");
    let v1 = cgroup_mount(false, "name=systemd");
    // Docker on the unified hierarchy, Kubernetes on v1 when this host has it: both versions.
    let docker_cg = Cgroups::new(v2.clone().or(v1.clone()).expect("a cgroup mount"), tag);
    let kube_cg = Cgroups::new(v1.or(v2).unwrap(), &format!("{tag}k"));
    let mut drivers = Vec::new();
    let mut cases = Vec::new();

    // 1. Named by `ip netns`.
    let named = Netns::new(&format!("ct-{tag}"));
    let mut d = named.driver();
    let pid = d.pid();
    let port = fill(&mut d, 1);
    cases.push(Case {
        what: "ip netns",
        netns: named.name.clone(),
        pid,
        port,
        backlog: 1,
        container: None,
        pod: None,
    });
    drivers.push(d);

    // 2. Bind-mounted as a Docker sandbox.
    let sandbox_name = container_id()[..12].to_string();
    let sandbox = DockerSandbox::new(&sandbox_name);
    let mut d = Driver::start(sandbox.enter("python3", &[&driver_path()]));
    let pid = d.pid();
    let port = fill(&mut d, 2);
    cases.push(Case {
        what: "docker sandbox",
        netns: sandbox_name,
        pid,
        port,
        backlog: 2,
        container: None,
        pod: None,
    });
    drivers.push(d);

    // 3. Held only by a process, in its own pid namespace, in a Docker container's cgroup.
    let script = format!("ip link set lo up; exec python3 {}", driver_path());
    let mut cmd = Command::new("unshare");
    cmd.args(["-n", "-p", "-f", "--kill-child", "sh", "-c", &script]);
    let mut d = Driver::start(cmd);
    assert_eq!(
        d.pid(),
        1,
        "the driver runs as pid 1 of its own pid namespace"
    );
    let id = container_id();
    let pid = docker_child_pid(&d);
    let path = docker_cg.place(&format!("system.slice/docker-{id}.scope"), pid);
    note!("docker-like cgroup: {path}");
    let port = fill(&mut d, 3);
    cases.push(Case {
        what: "docker container",
        netns: format!("ino-{}", netns_inode(pid)),
        pid,
        port,
        backlog: 3,
        container: Some(id[..12].to_string()),
        pod: None,
    });
    drivers.push(d);

    // 4. A Kubernetes pod: a `pause` process holds the network and UTS namespaces (the pod's
    // host name set inside), and an application container joins them.
    let pod = format!("web-{}-{tag}", std::process::id());
    let pause_bin = tmp.join("pause");
    fs::copy("/bin/sleep", &pause_bin).unwrap();
    let script = format!(
        "echo {pod} > /proc/sys/kernel/hostname; ip link set lo up; exec {} 600",
        pause_bin.display()
    );
    let pause = Reaped(
        Command::new("unshare")
            .args(["-n", "-u", "sh", "-c", &script])
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let pause_pid = pause.0.id();
    let up = wait_for(STEP, || (comm_of(pause_pid) == "pause").then_some(()));
    assert!(up.is_some(), "pause never started");
    let uid = "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0";
    kube_cg.place(
        &format!("kubepods/burstable/pod{uid}/{}", container_id()),
        pause_pid,
    );
    let mut cmd = Command::new("nsenter");
    cmd.args([
        "-t",
        &pause_pid.to_string(),
        "-n",
        "-u",
        "python3",
        &driver_path(),
    ]);
    let mut d = Driver::start(cmd);
    let pid = d.pid();
    let app = container_id();
    let path = kube_cg.place(&format!("kubepods/burstable/pod{uid}/{app}"), pid);
    note!("kubepods-like cgroup: {path}");
    let port = fill(&mut d, 4);
    cases.push(Case {
        what: "kubernetes pod",
        netns: format!("ino-{}", netns_inode(pause_pid)),
        pid,
        port,
        backlog: 4,
        container: Some(app[..12].to_string()),
        pod: Some(pod),
    });
    drivers.push(d);

    // 5. Our own, the host's.
    let mut d = Driver::start({
        let mut c = Command::new("python3");
        c.arg(driver_path());
        c
    });
    let pid = d.pid();
    let port = fill(&mut d, 5);
    cases.push(Case {
        what: "host",
        netns: "default".into(),
        pid,
        port,
        backlog: 5,
        container: None,
        pod: None,
    });
    drivers.push(d);

    for c in &cases {
        let full = wait_for(Duration::from_secs(5), || {
            let (depth, drops) = ss_of(c.pid, c.port);
            (depth == c.backlog + 1 && drops > 0).then_some(())
        });
        assert!(full.is_some(), "{}: the listener never filled", c.what);
    }
    Setup {
        cases,
        _drivers: drivers,
        _pause: Some(pause),
        _named: named,
        _sandbox: sandbox,
        _cgroups: vec![docker_cg, kube_cg],
        _tmp: tmp,
    }
}

/// The host pid of the driver `unshare -p -f` started (its only child).
fn docker_child_pid(d: &Driver) -> u32 {
    let unshare = d.child_id();
    let children = fs::read_to_string(format!("/proc/{unshare}/task/{unshare}/children")).unwrap();
    let pids: Vec<u32> = children
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(pids.len(), 1, "{children}");
    pids[0]
}

fn tag<'a>(m: &'a Json, key: &str) -> Option<&'a str> {
    m["tags"].get(key).and_then(|v| v.as_str())
}

fn all_netns(format: &str) -> Vec<u8> {
    let out = Command::new(acceptq())
        .args([
            "--all-netns",
            "--once",
            "--max-listeners",
            "100000",
            "--format",
            format,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Whether `test` can make its namespaces, containers and pods here; ignored with the reason
/// when not.
fn made_namespaces_gate(test: &str) -> bool {
    netns_gate(test)
        && skip_unless(
            have("unshare")
                && have("nsenter")
                && have("ss")
                && cgroup_mount(true, "")
                    .or(cgroup_mount(false, "name=systemd"))
                    .is_some(),
            test,
            "needs unshare, nsenter (util-linux), ss and a cgroup mount",
        )
}

/// Four namespaces made here (ip netns, a Docker sandbox, a Docker container held only by its
/// process, a Kubernetes pod with a pause process) and our own: one `--all-netns --once`
/// report has each listener with its depth, limit, drops, owner (host pid) and tags, and one
/// acceptq_netns row per namespace whose ListenOverflows is that namespace's own.
fn every_namespace_is_reported_once_with_its_container_pod_and_kernel_counters() {
    let test =
        "containers::every_namespace_is_reported_once_with_its_container_pod_and_kernel_counters";
    if !made_namespaces_gate(test) {
        return;
    }
    let s = setup("all");
    let before: Vec<(u64, u64)> = s
        .cases
        .iter()
        .map(|c| (ss_of(c.pid, c.port).1, tcpext_of(c.pid, "ListenOverflows")))
        .collect();
    let report = json_lines(&all_netns("json"));
    let after: Vec<(u64, u64)> = s
        .cases
        .iter()
        .map(|c| (ss_of(c.pid, c.port).1, tcpext_of(c.pid, "ListenOverflows")))
        .collect();

    for ((c, b), a) in s.cases.iter().zip(&before).zip(&after) {
        let rows: Vec<&Json> = report
            .iter()
            .filter(|m| {
                m["name"] == "acceptq_listener"
                    && port_of(m) == Some(c.port)
                    && tag(m, "netns") == Some(&c.netns)
            })
            .collect();
        assert_eq!(
            rows.len(),
            1,
            "{}: rows for {} on {}: {report:?}",
            c.what,
            c.netns,
            c.port
        );
        let row = rows[0];
        note!("{}: {row}", c.what);
        assert_eq!(
            int(&row["fields"]["queue_depth"]),
            u64::from(c.backlog) + 1,
            "{}",
            c.what
        );
        assert_eq!(
            int(&row["fields"]["queue_limit"]),
            u64::from(c.backlog),
            "{}",
            c.what
        );
        let drops = int(&row["fields"]["drops"]);
        assert!(
            b.0 <= drops && drops <= a.0,
            "{}: drops {drops} not within {b:?}..{a:?}",
            c.what
        );
        assert_eq!(tag(row, "process"), Some("python3"), "{}", c.what);
        assert_eq!(
            int(&row["fields"]["pid"]),
            u64::from(c.pid),
            "{}: the host's pid",
            c.what
        );
        assert_eq!(tag(row, "container"), c.container.as_deref(), "{}", c.what);
        assert_eq!(tag(row, "pod"), c.pod.as_deref(), "{}", c.what);

        let ns_rows: Vec<&Json> = report
            .iter()
            .filter(|m| m["name"] == "acceptq_netns" && tag(m, "netns") == Some(&c.netns))
            .collect();
        assert_eq!(ns_rows.len(), 1, "{}: one acceptq_netns row", c.what);
        let ns = ns_rows[0];
        let overflows = int(&ns["fields"]["listen_overflows"]);
        assert!(
            b.1 <= overflows && overflows <= a.1 && overflows > 0,
            "{}: listen_overflows {overflows} not this namespace's ({} .. {})",
            c.what,
            b.1,
            a.1
        );
        assert_eq!(tag(ns, "container"), c.container.as_deref(), "{}", c.what);
        assert_eq!(tag(ns, "pod"), c.pod.as_deref(), "{}", c.what);
    }
    // Every namespace once: no two acceptq_netns rows share a name.
    let mut names: Vec<&str> = report
        .iter()
        .filter(|m| m["name"] == "acceptq_netns")
        .filter_map(|m| tag(m, "netns"))
        .collect();
    let n = names.len();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), n, "a namespace reported twice: {names:?}");

    // The same report for collectd and Prometheus stays within their limits.
    let collectd = String::from_utf8(all_netns("collectd")).unwrap();
    let pod = s.cases[3].pod.as_deref().unwrap();
    assert!(
        collectd
            .lines()
            .any(|l| l.contains(&format!("acceptq-{pod}."))),
        "the pod names its instance"
    );
    for line in collectd.lines().filter(|l| l.starts_with("PUTVAL")) {
        assert!(line.len() < 1198, "{line}");
        let id = line.split('"').nth(1).unwrap();
        for part in id.split('/') {
            assert!(part.len() <= 127, "{line}");
        }
    }
    let prom = String::from_utf8(all_netns("prometheus")).unwrap();
    check_exposition(&prom).unwrap_or_else(|e| panic!("{e}"));
    assert!(prom.contains(&format!("pod=\"{pod}\"")), "{prom}");
}

/// A report, then a namespace removed (the Docker container's process ends) and the `ip netns`
/// one deleted and re-created under the same name with a listener on the same port: the next
/// report lacks the gone one, and the re-created one's rows and counters carry no delta from
/// the old namespace.
fn a_namespace_gone_or_recreated_between_reports_carries_no_delta() {
    let test = "containers::a_namespace_gone_or_recreated_between_reports_carries_no_delta";
    if !made_namespaces_gate(test) {
        return;
    }
    let mut s = setup("gone");
    let mut aq = Reaped(
        Command::new(acceptq())
            .args([
                "--all-netns",
                "--signal",
                "stdin",
                "--format",
                "json",
                "--max-listeners",
                "100000",
                "--no-process",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut stdin = aq.0.stdin.take().unwrap();
    let stdout = Lines::new(aq.0.stdout.take().unwrap());
    let mut report = || ask_report(&mut stdin, &stdout);
    let has_ns = |r: &[Json], name: &str| {
        r.iter()
            .any(|m| m["name"] == "acceptq_netns" && tag(m, "netns") == Some(name))
    };
    let first = report();
    let (named, container) = (s.cases[0].netns.clone(), s.cases[2].netns.clone());
    let (port, backlog) = (s.cases[0].port, s.cases[0].backlog);
    assert!(
        has_ns(&first, &named) && has_ns(&first, &container),
        "{first:?}"
    );

    // The container's process ends: its namespace with it. The named one is re-created.
    drop(s._drivers.remove(2));
    drop(s._drivers.remove(0));
    let gone = wait_for(STEP, || {
        (!Path::new(&format!("/proc/{}", s.cases[2].pid)).exists()).then_some(())
    });
    assert!(gone.is_some(), "the container's process did not end");
    run_ok(Command::new("ip").args(["netns", "del", &named]));
    run_ok(Command::new("ip").args(["netns", "add", &named]));
    run_ok(Command::new("ip").args(["netns", "exec", &named, "ip", "link", "set", "lo", "up"]));
    let mut d = Driver::start({
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &named, "python3", &driver_path()]);
        c
    });
    let (id, again) = d.listen("127.0.0.1", port, backlog, false);
    assert_eq!(again, port);
    d.connect(id, backlog as usize + 3);
    let pid = d.pid();
    let full = wait_for(Duration::from_secs(5), || {
        let (depth, drops) = ss_of(pid, port);
        (depth == backlog + 1 && drops > 0).then_some(())
    });
    assert!(full.is_some(), "the re-created listener never filled");

    let second = report();
    assert!(
        !has_ns(&second, &container),
        "a gone namespace is still reported: {second:?}"
    );
    assert!(!second.iter().any(|m| tag(m, "netns") == Some(&container)));
    let row = second
        .iter()
        .find(|m| {
            m["name"] == "acceptq_listener"
                && port_of(m) == Some(port)
                && tag(m, "netns") == Some(&named)
        })
        .unwrap_or_else(|| panic!("the re-created namespace's listener: {second:?}"));
    assert!(
        row["fields"].get("drops_delta").is_none(),
        "a delta from the old namespace: {row}"
    );
    let ns = second
        .iter()
        .find(|m| m["name"] == "acceptq_netns" && tag(m, "netns") == Some(&named))
        .unwrap();
    assert!(
        ns["fields"].get("listen_overflows_delta").is_none(),
        "a delta from the old namespace: {ns}"
    );
    // Those still there keep their deltas.
    let docker = second
        .iter()
        .find(|m| m["name"] == "acceptq_netns" && tag(m, "netns") == Some(&s.cases[1].netns))
        .unwrap();
    assert!(
        docker["fields"].get("listen_overflows_delta").is_some(),
        "{docker}"
    );
    drop(stdin);
    assert!(wait_or_kill(&mut aq.0, STEP).is_some_and(|s| s.success()));
    drop(d);
}

/// As nobody (no CAP_SYS_ADMIN, no CAP_SYS_PTRACE): our own namespace is reported, and the
/// namespaces that cannot be entered are said in one line with the reason, not one per
/// namespace.
fn without_cap_sys_admin_our_namespace_is_reported_and_the_others_said_once() {
    let test =
        "containers::without_cap_sys_admin_our_namespace_is_reported_and_the_others_said_once";
    if !netns_gate(test) || !nobody_gate(test) {
        return;
    }
    let tmp = TempDir::new("containers-nobody");
    let bin = binary_for_nobody(&tmp);
    let _a = Netns::new("ct-nobody");
    let _b = Netns::new("ct-nobody");
    let out = Command::new("setpriv")
        .args(AS_NOBODY)
        .arg(&bin)
        .args(["--all-netns", "--once", "--no-process", "--format", "json"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let report = json_lines(&out.stdout);
    let names: Vec<&str> = report
        .iter()
        .filter(|m| m["name"] == "acceptq_netns")
        .filter_map(|m| tag(m, "netns"))
        .collect();
    assert_eq!(names, ["default"], "{err}");
    let join: Vec<&str> = err.lines().filter(|l| l.contains("cannot join")).collect();
    assert_eq!(join.len(), 1, "one line for one reason: {err}");
    assert!(
        join[0].contains("needs CAP_SYS_ADMIN") && join[0].contains("more for the same reason"),
        "{err}"
    );
    assert!(
        err.contains("needs CAP_SYS_PTRACE"),
        "processes' namespaces unseen are said: {err}"
    );
}
