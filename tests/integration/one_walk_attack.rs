//! The one walk (SYN queue and queued connections' waits from one `TCPDIAG_GETSOCK` request
//! whose program keeps cgroup id 0, the request sockets, and the queued ports' sockets) against
//! what real hosts keep around a queued port: time-wait sockets (cgroup id 0 too), closing and
//! reset connections, IPv4-mapped clients, a v6-only listener beside an IPv4 one, a listener
//! bound to a device or to one address, an SO_REUSEPORT group, Fast Open children (full
//! sockets in `SYN_RECV`, the state a request socket is reported in), and listeners in a child
//! cgroup. Each report must equal the separate dumps' (`ACCEPTQ_DEBUG_SEPARATE_DUMPS`), and its
//! SYN counts the request sockets `ss` lists (those without `tcp_info`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::one_walk::run;
use crate::support::*;

tests![
    time_wait_closing_and_reset_sockets_beside_queued_ones_are_neither_requests_nor_waits,
    fast_open_children_are_not_counted_as_request_sockets_and_keep_their_wait,
    listeners_in_a_child_cgroup_are_read_as_those_of_the_root_cgroup,
];

const SEPARATE: (&str, &str) = ("ACCEPTQ_DEBUG_SEPARATE_DUMPS", "1");
/// Jiffy rounding of two readings of one wait, on top of the time between them.
const SLACK: f64 = 0.05;

fn gates(test: &str) -> bool {
    netns_gate(test)
        && skip_unless(have("nft"), test, "needs nft (nftables)")
        && skip_unless(
            have("strace"),
            test,
            "needs strace to see the one walk made",
        )
}

/// Request sockets per local port, as `ss` lists them in `SYN_RECV`: those with no `tcp_info`
/// (a Fast Open child, a full socket, has one).
fn ss_requests(ns: &Netns) -> HashMap<u16, u64> {
    let text = output_ok(&mut ns.cmd("ss", &["-tniH", "state", "syn-recv"]));
    let mut sockets: Vec<String> = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match sockets.last_mut() {
            Some(last) if line.starts_with(char::is_whitespace) => last.push_str(line),
            _ => sockets.push(line.to_string()),
        }
    }
    let mut out = HashMap::new();
    for s in sockets.iter().filter(|s| !s.contains("rtt:")) {
        let local = s.split_whitespace().nth(2).unwrap();
        let port: u16 = local.rsplit(':').next().unwrap().parse().unwrap();
        *out.entry(port).or_insert(0) += 1;
    }
    out
}

/// The listener rows of `report` by address, port and interface: (queue_depth,
/// syn_queue_depth, queue_wait_max).
type Rows = HashMap<(String, u16, String), (Option<u64>, Option<u64>, Option<f64>)>;

fn rows(report: &[Json]) -> Rows {
    listener_rows(report)
        .into_iter()
        .map(|m| {
            let tag = |t: &str| m["tags"][t].as_str().unwrap_or("").to_string();
            let key = (
                tag("address"),
                tag("port").parse().unwrap(),
                tag("interface"),
            );
            let f = &m["fields"];
            let value = (
                field(m, "queue_depth"),
                field(m, "syn_queue_depth"),
                f["queue_wait_max"].as_f64(),
            );
            (key, value)
        })
        .collect()
}

/// Reads `ns` with the one walk and with the separate dumps and checks both against each other,
/// the SYN counts against `ss`, and the queue depths against `want` (address, port, interface:
/// depth); returns the one walk's rows.
fn same_as_separate_and_ss(ns: &Netns, tmp: &TempDir, want: &[(&str, u16, &str, u64)]) -> Rows {
    let requests = ss_requests(ns);
    let one = run(ns, tmp, &[]);
    let separate = run(ns, tmp, &[SEPARATE]);
    assert!(one.one_walk(), "the one walk was made");
    assert!(!separate.one_walk(), "the separate dumps were made");
    let apart = (separate.took.1 - one.took.0).as_secs_f64();
    let (a, b) = (rows(&one.report), rows(&separate.report));
    note!("one walk: {a:?}\nseparate: {b:?}\nss requests: {requests:?}");
    assert_eq!(
        a.keys().collect::<std::collections::BTreeSet<_>>(),
        b.keys().collect(),
        "the same rows"
    );
    let mut syn_by_port: HashMap<u16, u64> = HashMap::new();
    for (key, &(depth, syn, wait)) in &a {
        let (depth2, syn2, wait2) = b[key];
        assert_eq!((depth, syn), (depth2, syn2), "{key:?}");
        match (wait, wait2) {
            (Some(w1), Some(w2)) => assert!(
                w2 >= w1 - SLACK && w2 <= w1 + apart + SLACK,
                "{key:?}: one walk {w1} s, separate dumps {w2} s, {apart:.3} s apart"
            ),
            (None, None) => {}
            _ => panic!("{key:?}: one walk's wait {wait:?}, separate dumps' {wait2:?}"),
        }
        assert_eq!(
            wait.is_some(),
            depth > Some(0),
            "{key:?}: a wait exactly where connections are queued"
        );
        *syn_by_port.entry(key.1).or_insert(0) += syn.expect("SYN queue counted");
    }
    for (port, n) in &syn_by_port {
        assert_eq!(
            *n,
            requests.get(port).copied().unwrap_or(0),
            "port {port}: request sockets as ss lists them"
        );
    }
    for &(addr, port, interface, depth) in want {
        let key = (addr.to_string(), port, interface.to_string());
        assert_eq!(a.get(&key).and_then(|r| r.0), Some(depth), "{key:?}");
    }
    a
}

/// The clients' ground truth for `one_walk_neighbours.py neighbours`: queue depths.
const NEIGHBOURS: [(&str, u16, &str, u64); 9] = [
    ("127.0.0.1", 7001, "", 6),
    ("127.0.0.1", 7002, "", 0),
    ("::", 7003, "", 3),
    ("::", 7004, "", 3),
    ("0.0.0.0", 7004, "", 2),
    ("0.0.0.0", 7005, "lo", 2),
    ("127.0.0.1", 7006, "", 9),
    ("127.0.0.5", 7007, "", 1),
    ("127.0.0.1", 7100, "", 0),
];

/// The request sockets the neighbours' clients left, by port.
fn neighbours_syn(rows: &Rows) {
    let syn = |addr: &str, port: u16| rows[&(addr.to_string(), port, String::new())].1;
    assert_eq!(syn("127.0.0.1", 7001), Some(5));
    assert_eq!(syn("127.0.0.1", 7002), Some(4));
    assert_eq!(syn("::", 7003), Some(2));
    assert_eq!(syn("127.0.0.1", 7100), Some(0));
}

/// Holds `one_walk_neighbours.py mode` in `ns` (run by `cmd` when given: a wrapper) until the
/// returned helper is dropped.
fn neighbours(ns: &Netns, mode: &str, cmd: Option<Command>) -> Helper {
    let mut h = match cmd {
        Some(c) => Helper::spawn(c),
        None => Helper::start(ns, "one_walk_neighbours.py", &[mode]),
    };
    h.expect("ready");
    // Every queued connection older than a report's rounding.
    std::thread::sleep(Duration::from_millis(300));
    h
}

fn time_wait_closing_and_reset_sockets_beside_queued_ones_are_neither_requests_nor_waits() {
    let test = "one_walk_attack::time_wait_closing_and_reset_sockets_beside_queued_ones_are_neither_requests_nor_waits";
    if !gates(test) {
        return;
    }
    let ns = Netns::new("owneigh");
    let tmp = TempDir::new("owneigh");
    let _h = neighbours(&ns, "neighbours", None);
    let states = output_ok(&mut ns.cmd("ss", &["-tanH", "sport = :7001"]));
    note!("{states}");
    for state in [
        "TIME-WAIT",
        "LAST-ACK",
        "CLOSE-WAIT",
        "FIN-WAIT-2",
        "SYN-RECV",
    ] {
        assert!(states.contains(state), "the kernel holds a {state} on 7001");
    }
    let rows = same_as_separate_and_ss(&ns, &tmp, &NEIGHBOURS);
    neighbours_syn(&rows);
}

fn fast_open_children_are_not_counted_as_request_sockets_and_keep_their_wait() {
    let test = "one_walk_attack::fast_open_children_are_not_counted_as_request_sockets_and_keep_their_wait";
    if !gates(test) {
        return;
    }
    let ns = Netns::new("owtfo");
    let tmp = TempDir::new("owtfo");
    ns.sysctl("net.ipv4.tcp_fastopen", "3");
    let _h = neighbours(&ns, "fastopen", None);
    let children = output_ok(&mut ns.cmd("ss", &["-tniH", "state", "syn-recv"]));
    assert_eq!(
        children.matches("rtt:").count(),
        5,
        "five Fast Open children in SYN_RECV: {children}"
    );
    let rows = same_as_separate_and_ss(
        &ns,
        &tmp,
        &[
            ("127.0.0.1", 7201, "", 3),
            ("::", 7203, "", 3),
            ("127.0.0.1", 7202, "", 2),
        ],
    );
    let syn = |addr: &str, port: u16| rows[&(addr.to_string(), port, String::new())].1;
    assert_eq!(syn("127.0.0.1", 7201), Some(3), "the request sockets only");
    assert_eq!(syn("::", 7203), Some(1), "the request socket only");
}

/// A cgroup v2 hierarchy's mount point, if the host has one.
fn cgroup2_mount() -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.get(2) == Some(&"cgroup2")).then(|| PathBuf::from(f[1]))
    })
}

/// A child cgroup made for a test, removed on drop (once its processes are gone).
struct ChildCgroup(PathBuf);

impl Drop for ChildCgroup {
    fn drop(&mut self) {
        for _ in 0..50 {
            if std::fs::remove_dir(&self.0).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn listeners_in_a_child_cgroup_are_read_as_those_of_the_root_cgroup() {
    let test = "one_walk_attack::listeners_in_a_child_cgroup_are_read_as_those_of_the_root_cgroup";
    if !gates(test) {
        return;
    }
    let mount = cgroup2_mount();
    if !skip_unless(mount.is_some(), test, "needs a cgroup v2 hierarchy") {
        return;
    }
    let dir = mount
        .unwrap()
        .join(format!("acceptq-onewalk-{}", std::process::id()));
    let made = std::fs::create_dir(&dir).is_ok();
    if !skip_unless(made, test, "needs to make a cgroup v2 child") {
        return;
    }
    let cgroup = ChildCgroup(dir);
    let ns = Netns::new("owcgroup");
    let tmp = TempDir::new("owcgroup");
    // Joins the cgroup before entering the namespace: `ip netns exec` remounts /sys.
    let mut cmd = Command::new("sh");
    cmd.args([
        "-c",
        r#"echo $$ > "$1/cgroup.procs" && exec ip netns exec "$2" python3 "$3" neighbours"#,
        "sh",
        cgroup.0.to_str().unwrap(),
        &ns.name,
        &who_script("one_walk_neighbours.py"),
    ]);
    let h = neighbours(&ns, "neighbours", Some(cmd));
    let held = std::fs::read_to_string(cgroup.0.join("cgroup.procs")).unwrap();
    assert!(
        held.split_whitespace()
            .any(|p| p == h.child.id().to_string()),
        "the listeners' process is in the child cgroup: {held}"
    );
    let rows = same_as_separate_and_ss(&ns, &tmp, &NEIGHBOURS);
    neighbours_syn(&rows);
    drop(h);
    drop(ns);
}
