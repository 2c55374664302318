//! The namespaces being watched: opening each one's sources (and the sampler's socket there),
//! following every network namespace on the host under `--all-netns` (bind-mounted or held by
//! processes: containers, pods, `ip netns`), naming them as a person knows them, and reading
//! them all.

use std::collections::HashSet;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::report::NsReading;
use crate::sampler::{DeviceTier, Target, Targets};
use crate::snapshot::NetnsSnapshot;
use crate::source::cgroup;
use crate::source::netdev::{LinkWatch, RxPackets};
use crate::source::netns::{self, Found, Identity, Netns, NetnsError};
use crate::source::snmp::PassiveOpens;
use crate::source::sock_diag::DiagSocket;
use crate::source::{NsSources, Options};
use crate::state::NsId;
use crate::warn::Warnings;

/// Unopenable namespaces remembered before the list is forgotten and they are tried again.
const MAX_UNOPENABLE: usize = 1024;

/// Processes of a namespace looked at for its `container` and `pod` tags: the lowest pids,
/// which bounds the cost in a namespace holding thousands.
const MAX_TAG_PIDS: usize = 64;

/// Failing namespaces named in the one line that says why they could not be entered.
const MAX_NAMED_FAILURES: usize = 8;

/// The tags that say which container or pod a namespace belongs to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NsTags {
    /// 12 hex digits of the container id of the namespace's application process.
    pub container: Option<String>,
    /// On Kubernetes: the host name in the namespace's UTS namespace, the pod's name.
    pub pod: Option<String>,
}

/// A namespace being watched: its sources and its last reading.
struct Watched {
    /// Stable while it is watched: keys its deltas and peaks.
    id: NsId,
    identity: Option<Identity>,
    src: NsSources,
    snap: NetnsSnapshot,
    tags: NsTags,
    /// The processes the tags were taken from: looked at again only when they change.
    tagged_pids: Vec<u32>,
    /// The last UTS namespace read for `pod` and its host name: no new `setns` while it stays.
    uts: Option<(Identity, String)>,
    /// `--netns`: the path it was opened by, looked at each report (see [`Given`]).
    given: Option<Given>,
}

/// A namespace given with `--netns`, by the path it was opened through (`/run/netns/NAME`, or the
/// path given). `ip netns del` removes that path, a process ending removes its `/proc/PID/ns/net`;
/// the namespace itself lives on while acceptq (or a process in it) holds it, so it is still read
/// and reported, but the operator is told once that the name no longer leads to it.
struct Given {
    path: PathBuf,
    /// What the path was found to be at the last report, said once per change.
    now: PathNow,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PathNow {
    Same,
    Gone,
    Other,
}

impl PathNow {
    fn of(path: &Path, identity: Option<Identity>) -> PathNow {
        match std::fs::metadata(path) {
            Ok(m) if Some((m.dev(), m.ino())) == identity => PathNow::Same,
            Ok(_) => PathNow::Other,
            // Unreadable is not gone: nothing to say.
            Err(e) if e.kind() != io::ErrorKind::NotFound => PathNow::Same,
            Err(_) => PathNow::Gone,
        }
    }
}

/// Capability number of CAP_SYS_PTRACE (linux/capability.h).
const CAP_SYS_PTRACE: u32 = 19;

pub struct WatchList {
    watched: Vec<Watched>,
    next_id: NsId,
    /// `--all-netns`: look for namespaces added or removed before each reading.
    follow_all: bool,
    /// Namespaces `--all-netns` could not open, not tried again.
    unopenable: HashSet<Identity>,
    /// Whether the lack of CAP_SYS_ADMIN was said: it holds for every namespace found later.
    said_no_admin: bool,
    /// The sampler's namespaces, when it runs: kept in step with `watched`.
    targets: Option<Targets>,
}

impl WatchList {
    /// An empty list; `targets`: the sampler's list to keep in step, when it runs.
    pub fn new(follow_all: bool, targets: Option<Targets>) -> Self {
        if follow_all {
            raise_fd_limit();
        }
        WatchList {
            watched: Vec::new(),
            next_id: 0,
            follow_all,
            unopenable: HashSet::new(),
            said_no_admin: false,
            targets,
        }
    }

    /// Starts watching `ns`: opens its sources, then the sampler's socket there.
    pub fn watch(&mut self, ns: Netns, warnings: &mut Warnings) -> io::Result<()> {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let identity = netns::identity_of(&ns);
        let (name, file) = (ns.name.clone(), ns.file.clone());
        let src = NsSources::open(ns, warnings)?;
        self.watched.push(Watched {
            id,
            identity,
            src,
            snap: NetnsSnapshot::default(),
            tags: NsTags::default(),
            tagged_pids: Vec::new(),
            uts: None,
            given: None,
        });
        if let Some(targets) = &self.targets {
            match DiagSocket::open(file.clone()) {
                Ok(sock) => {
                    let target = match gate_counter(file.as_deref()) {
                        Ok(p) => {
                            let target = Target::new(id, name, sock).gated(p);
                            // Without it the PassiveOpens tier alone gates, as sound and
                            // only dearer: nothing an operator has to act on, so not said.
                            match device_tier(file.as_deref()) {
                                Ok(d) => target.with_devices(d),
                                Err(_) => target,
                            }
                        }
                        Err(e) => {
                            warnings.once(
                                &format!("sampler-gate-{name}"),
                                format!("sampler: netns {name}: cannot read Tcp PassiveOpens of /proc/net/snmp ({e}); every sample dumps its listeners"),
                            );
                            Target::new(id, name, sock)
                        }
                    };
                    if let Ok(mut t) = targets.lock() {
                        t.push(target);
                    }
                }
                Err(e) => warnings.once(
                    &format!("sampler-open-{name}"),
                    format!("sampler: netns {name}: cannot open sock_diag ({e}); peaks come from reports only"),
                ),
            }
        }
        Ok(())
    }

    /// Starts watching `ns`, given with `--netns` and opened through `path`.
    pub fn watch_given(
        &mut self,
        ns: Netns,
        path: PathBuf,
        warnings: &mut Warnings,
    ) -> io::Result<()> {
        self.watch(ns, warnings)?;
        if let Some(w) = self.watched.last_mut() {
            w.given = Some(Given {
                path,
                now: PathNow::Same,
            });
        }
        Ok(())
    }

    /// Takes one reading of every namespace, after looking for new and gone ones under
    /// `--all-netns`.
    pub fn read(&mut self, opts: &Options, warnings: &mut Warnings) {
        if self.follow_all {
            self.rescan(warnings);
        }
        for w in &mut self.watched {
            if let Some(given) = &mut w.given {
                say_path_change(&w.src.netns.name, given, w.identity, warnings);
            }
            w.src.read(opts, warnings, &mut w.snap);
        }
    }

    /// The last readings, with the ids and names the report needs.
    pub fn readings(&self) -> Vec<NsReading<'_>> {
        self.watched
            .iter()
            .map(|w| NsReading {
                id: w.id,
                name: w.src.netns.name.as_str(),
                container: w.tags.container.as_deref(),
                pod: w.tags.pod.as_deref(),
                snap: &w.snap,
            })
            .collect()
    }

    /// `--all-netns`: follows every network namespace on the host. A namespace already watched
    /// costs no `setns`: it is matched by identity, renamed if its name changed, and its tags
    /// are looked at again only when its processes changed. One no bind mount and no process
    /// holds any more is dropped with its state. New ones are opened, except those that failed
    /// before; the failures of one rescan are said in one line per reason.
    fn rescan(&mut self, warnings: &mut Warnings) {
        self.follow(netns::discover(), warnings);
    }

    /// Follows the namespaces of one discovery (see [`WatchList::rescan`]).
    fn follow(&mut self, d: netns::Discovery, warnings: &mut Warnings) {
        if let Some(e) = &d.incomplete {
            // Out of file descriptors, dropping every namespace and opening them all again a
            // report later would lose their deltas and peaks each time: keep the list as it is.
            warnings.once(
                "netns-scan-incomplete",
                format!("--all-netns: cannot look for namespaces ({e}); the namespaces already watched are kept"),
            );
            return;
        }
        if let (n, Some((pid, e))) = (d.hidden, &d.hidden_first) {
            // With CAP_SYS_PTRACE a refusal comes from elsewhere (a security module, or a
            // process of a user namespace above ours, as pid 1 in some sandboxes): the hint
            // must not send the operator after a capability already held.
            let why = if crate::source::netns::have_capability(CAP_SYS_PTRACE) {
                "refused although we hold CAP_SYS_PTRACE: a security module or a process outside our user namespace"
            } else {
                "reading another user's needs CAP_SYS_PTRACE"
            };
            warnings.once(
                "netns-hidden",
                format!(
                    "--all-netns: cannot read /proc/<pid>/ns/net of {n} process{} (pid {pid}: {e}; {why}): namespaces held only by them are not watched",
                    if n == 1 { "" } else { "es" }
                ),
            );
        }
        self.forget_gone(&d.found);
        // A namespace not held open by us is freed when its last holder goes, and the kernel
        // gives its inode to the next namespace made (seen here within a few creations): a
        // failure is remembered only while its namespace lives, or a new container would
        // inherit it and never be watched.
        self.unopenable
            .retain(|id| d.found.iter().any(|f| f.identity == *id));
        if self.unopenable.len() > MAX_UNOPENABLE {
            self.unopenable.clear();
        }
        let own = self
            .watched
            .iter()
            .find(|w| w.src.netns.file.is_none())
            .and_then(|w| w.identity);
        // The host's namespace is `default`: ours, unless pid 1 is in another one we can join.
        let mut failures = Vec::new();
        let host_apart = d.host.is_some() && d.host != own;
        for f in d
            .found
            .iter()
            .filter(|f| host_apart && Some(f.identity) == d.host)
        {
            if !self.watching(f.identity) && !self.unopenable.contains(&f.identity) {
                self.open(f, warnings, &mut failures);
            }
        }
        let host_watched = host_apart && d.host.is_some_and(|h| self.watching(h));
        for f in &d.found {
            let is_host = Some(f.identity) == d.host;
            match self
                .watched
                .iter_mut()
                .find(|w| w.identity == Some(f.identity))
            {
                Some(w) => {
                    let keep_default = w.src.netns.file.is_none() && !host_watched;
                    if w.src.netns.name != f.name && !keep_default {
                        rename(w, &f.name, self.targets.as_ref());
                    }
                }
                None if self.unopenable.contains(&f.identity) => continue,
                None => self.open(f, warnings, &mut failures),
            }
            if let Some(w) = self
                .watched
                .iter_mut()
                .find(|w| w.identity == Some(f.identity))
            {
                if is_host {
                    w.tags = NsTags::default();
                } else if w.tagged_pids != f.pids {
                    w.tags = tags_of(&f.pids, &mut w.uts);
                    w.tagged_pids.clone_from(&f.pids);
                }
            }
        }
        say_failures(failures, &mut self.said_no_admin, warnings);
    }

    fn watching(&self, identity: Identity) -> bool {
        self.watched.iter().any(|w| w.identity == Some(identity))
    }

    /// Opens a namespace found; a failure is remembered (not retried) and kept to be said.
    fn open(&mut self, f: &Found, warnings: &mut Warnings, failures: &mut Vec<NetnsError>) {
        let opened = netns::open_found(f).and_then(|ns| {
            let path = ns.name.clone();
            self.watch(ns, warnings).map_err(|source| NetnsError {
                spec: f.name.clone(),
                path: path.into(),
                step: netns::Step::Open,
                listed: true,
                source,
            })
        });
        match opened {
            // Its last process ended since the scan: nothing to say, and nothing to remember
            // if it still lives (the next scan tries again).
            Err(e) if netns::is_gone(&e) => {}
            Err(e) => {
                self.unopenable.insert(f.identity);
                failures.push(e);
            }
            Ok(()) => {}
        }
    }

    /// What the sampler has to say since the last call (its failures, one per streak).
    pub fn sampler_news(&self) -> Vec<String> {
        match self.targets.as_ref().map(|t| t.lock()) {
            Some(Ok(mut t)) => t.iter_mut().filter_map(|x| x.news.take()).collect(),
            _ => Vec::new(),
        }
    }

    /// Drops the namespaces no longer found (ours never goes), from the sampler too.
    fn forget_gone(&mut self, found: &[Found]) {
        let before = self.watched.len();
        self.watched.retain(|w| {
            w.src.netns.file.is_none()
                || w.identity
                    .is_some_and(|i| found.iter().any(|f| f.identity == i))
        });
        if self.watched.len() != before {
            let live: Vec<NsId> = self.watched.iter().map(|w| w.id).collect();
            if let Some(Ok(mut t)) = self.targets.as_ref().map(|t| t.lock()) {
                t.retain(|x| live.contains(&x.id));
            }
        }
    }
}

/// Says, once per change, that a `--netns` path no longer leads to the namespace opened through
/// it (or leads to it again). One `stat` a report.
fn say_path_change(
    name: &str,
    given: &mut Given,
    identity: Option<Identity>,
    warnings: &mut Warnings<impl std::io::Write>,
) {
    let now = PathNow::of(&given.path, identity);
    if now == std::mem::replace(&mut given.now, now) {
        return;
    }
    let path = given.path.display();
    let msg = match now {
        PathNow::Gone => format!(
            "netns {name}: {path} is gone (ip netns del, or its process ended): still reporting the namespace opened through it, which lives while acceptq or a process in it holds it; restart acceptq to stop watching it"
        ),
        PathNow::Other => format!(
            "netns {name}: {path} now names another namespace: still reporting the one opened through it at start; restart acceptq to watch the new one"
        ),
        PathNow::Same => format!("netns {name}: {path} names the watched namespace again"),
    };
    warnings.now(&msg);
}

/// The sampler's `/proc/net/snmp` of the namespace `ns` (`None`: ours), opened there once and
/// read once to know the counter is there.
fn gate_counter(ns: Option<&std::fs::File>) -> io::Result<PassiveOpens> {
    let mut p = netns::run_in(ns, PassiveOpens::open)??;
    p.read()?;
    Ok(p)
}

/// The sampler's `/proc/net/dev` and link socket of the namespace `ns` (`None`: ours), opened
/// there once; `/proc/net/dev` read once to know it parses.
fn device_tier(ns: Option<&std::fs::File>) -> io::Result<DeviceTier> {
    let (mut rx, links) = netns::run_in(ns, || -> io::Result<_> {
        Ok((RxPackets::open()?, LinkWatch::open()?))
    })??;
    rx.read()?;
    Ok(DeviceTier::new(rx, links))
}

/// A watched namespace holds about a dozen descriptors (its file, sock_diag sockets, `/proc/net`
/// files, the sampler's link socket): a node's 110 pods outgrow the soft limit of 1024 a systemd service starts with, so
/// `--all-netns` takes the hard limit, as far as it goes.
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain system calls on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Gives a watched namespace the name it has now (a bind mount added or removed meanwhile).
fn rename(w: &mut Watched, name: &str, targets: Option<&Targets>) {
    w.src.netns.name = name.to_string();
    if let Some(Ok(mut t)) = targets.map(|t| t.lock()) {
        for x in t.iter_mut().filter(|x| x.id == w.id) {
            x.name = name.to_string();
        }
    }
}

/// The `container` and `pod` tags of a namespace from its processes: the lowest pid that is no
/// pod infrastructure (`pause`) and runs in a container names it, else such an infrastructure
/// process; on Kubernetes the pod is that process's UTS host name (`uts`: the last one read).
fn tags_of(pids: &[u32], uts: &mut Option<(Identity, String)>) -> NsTags {
    let mut procs: Vec<(bool, u32)> = pids
        .iter()
        .take(MAX_TAG_PIDS)
        .map(|&p| {
            let comm = std::fs::read(format!("/proc/{p}/comm")).unwrap_or_default();
            let comm = String::from_utf8_lossy(&comm);
            (cgroup::is_infra(comm.trim_end()), p)
        })
        .collect();
    procs.sort_unstable();
    let mut kubernetes = false;
    let mut naming = None;
    for &(_, pid) in &procs {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/cgroup")) else {
            continue;
        };
        let placed = cgroup::placement(&text);
        kubernetes |= placed.kubernetes;
        if let Some(id) = placed.container {
            naming = Some((pid, id));
            break;
        }
    }
    let pod = kubernetes
        .then(|| naming.as_ref().map(|n| n.0).or(procs.first().map(|p| p.1)))
        .flatten()
        .and_then(|pid| pod_name(pid, uts));
    NsTags {
        container: naming.map(|n| n.1),
        pod,
    }
}

/// The host name of `pid`'s UTS namespace, joined only when it is not the one read last.
fn pod_name(pid: u32, uts: &mut Option<(Identity, String)>) -> Option<String> {
    let now = crate::caps::with(crate::caps::PROC, || {
        std::fs::metadata(format!("/proc/{pid}/ns/uts"))
    })
    .ok()
    .map(|m| (m.dev(), m.ino()))?;
    if uts.as_ref().map_or(true, |(id, _)| *id != now) {
        *uts = netns::uts_hostname(pid).ok();
    }
    uts.as_ref()
        .map(|(_, name)| name.clone())
        .filter(|n| !n.is_empty())
}

/// Says the namespaces that could not be entered, one line per reason: the first one's whole
/// error, then how many more failed the same way and their names.
/// A refusal to join for want of CAP_SYS_ADMIN is said once for good: every namespace found
/// later (a container started each minute) would be refused alike, and a line each time is
/// noise (in collectd, an ERROR each time).
fn say_failures(
    failures: Vec<NetnsError>,
    said_no_admin: &mut bool,
    warnings: &mut Warnings<impl std::io::Write>,
) {
    let no_admin = |e: &NetnsError| {
        e.step == netns::Step::Join && e.source.raw_os_error() == Some(libc::EPERM)
    };
    let mut groups: Vec<(Option<i32>, Vec<NetnsError>)> = Vec::new();
    for e in failures {
        if *said_no_admin && no_admin(&e) {
            continue;
        }
        let reason = e.source.raw_os_error();
        match groups
            .iter_mut()
            .find(|(r, g)| *r == reason && g[0].step == e.step)
        {
            Some((_, g)) => g.push(e),
            None => groups.push((reason, vec![e])),
        }
    }
    for (_, group) in groups {
        let mut line = group[0].to_string();
        if group.len() > 1 {
            let names: Vec<&str> = group[1..]
                .iter()
                .take(MAX_NAMED_FAILURES)
                .map(|e| e.spec.as_str())
                .collect();
            let more = group.len() - 1 - names.len();
            line.push_str(&format!(
                "; {} more for the same reason: {}{}",
                group.len() - 1,
                names.join(", "),
                if more > 0 {
                    format!(" and {more} others")
                } else {
                    String::new()
                }
            ));
        }
        if no_admin(&group[0]) {
            *said_no_admin = true;
            line.push_str(" (not retried; namespaces found later are not entered either)");
        } else {
            line.push_str(" (not retried)");
        }
        warnings.now(&line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::netns::Step;
    use std::path::PathBuf;

    fn failure(name: &str, step: Step, errno: i32) -> NetnsError {
        NetnsError {
            spec: name.into(),
            path: PathBuf::from(format!("/run/docker/netns/{name}")),
            step,
            listed: true,
            source: io::Error::from_raw_os_error(errno),
        }
    }

    fn said(failures: Vec<NetnsError>) -> Vec<String> {
        let mut w = Warnings::to(Vec::new());
        say_failures(failures, &mut false, &mut w);
        String::from_utf8(w.writer().clone())
            .unwrap()
            .lines()
            .map(String::from)
            .collect()
    }

    #[test]
    fn namespaces_that_cannot_be_entered_are_said_in_one_line_per_reason() {
        let mut failures: Vec<NetnsError> = (0..12)
            .map(|i| failure(&format!("ns{i}"), Step::Join, libc::EPERM))
            .collect();
        failures.insert(3, failure("odd", Step::Join, libc::EINVAL));
        failures.push(failure("gone", Step::Open, libc::ENOENT));
        let lines = said(failures);
        assert_eq!(lines.len(), 3, "{lines:#?}");
        let perm = &lines[0];
        assert!(
            perm.starts_with("W! [acceptq] --all-netns: netns ns0: cannot join /run/docker/netns/ns0:")
                && perm.contains("needs CAP_SYS_ADMIN")
                && perm.contains("; 11 more for the same reason: ns1, ns2, ns3, ns4, ns5, ns6, ns7, ns8 and 3 others")
                && perm.ends_with("(not retried; namespaces found later are not entered either)"),
            "{perm}"
        );
        assert!(
            lines[1].contains(
                "netns odd: /run/docker/netns/odd is not a network namespace (not retried)"
            ),
            "{}",
            lines[1]
        );
        assert!(lines[2].contains("netns gone: cannot open"), "{}", lines[2]);
        assert!(!lines[2].contains("more for the same reason"));
        assert!(said(Vec::new()).is_empty());
    }

    fn discovery(found: Vec<Found>) -> netns::Discovery {
        netns::Discovery {
            found,
            host: None,
            hidden: 0,
            hidden_first: None,
            incomplete: None,
        }
    }

    fn found_at(ino: u64, mount: &str) -> Found {
        Found {
            identity: (u64::MAX, ino),
            mounts: vec![PathBuf::from(mount)],
            pids: Vec::new(),
            name: format!("ns{ino}"),
        }
    }

    #[test]
    fn a_failure_is_remembered_only_while_its_namespace_lives() {
        let mut list = WatchList::new(true, None);
        let mut w = Warnings::default();
        // A file that is no namespace: opened, then refused by setns (EINVAL, any user).
        let bad = found_at(77, "/proc/self/status");
        list.follow(discovery(vec![bad.clone()]), &mut w);
        assert!(list.unopenable.contains(&bad.identity));
        // Gone: its inode may be the next namespace's, which must be tried.
        list.follow(discovery(Vec::new()), &mut w);
        assert!(list.unopenable.is_empty());
        // A file vanished before it was opened (a process that ended) is not remembered.
        let gone = found_at(78, "/nonexistent/acceptq-test/ns");
        list.follow(discovery(vec![gone.clone()]), &mut w);
        assert!(!list.unopenable.contains(&gone.identity));
        assert!(list.watched.is_empty());
        // A scan that could not read /proc (no file descriptor left) forgets nothing.
        list.follow(discovery(vec![bad.clone()]), &mut w);
        let mut blind = discovery(Vec::new());
        blind.incomplete = Some(io::Error::from_raw_os_error(libc::EMFILE));
        list.follow(blind, &mut w);
        assert!(list.unopenable.contains(&bad.identity));
    }

    #[test]
    fn a_netns_path_removed_or_replaced_is_said_once_per_change() {
        let dir = std::env::temp_dir().join(format!("acceptq-given-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ns");
        std::fs::write(&path, "").unwrap();
        let m = std::fs::metadata(&path).unwrap();
        let identity = Some((m.dev(), m.ino()));
        // Held open, as acceptq holds its namespace: the inode is not given to the next file.
        let _held = std::fs::File::open(&path).unwrap();
        let mut given = Given {
            path: path.clone(),
            now: PathNow::Same,
        };
        let mut w = Warnings::to(Vec::new());
        let mut step = |w: &mut Warnings<Vec<u8>>| say_path_change("x", &mut given, identity, w);
        step(&mut w);
        std::fs::remove_file(&path).unwrap();
        step(&mut w);
        step(&mut w);
        // Another file at the name: a new inode.
        std::fs::write(dir.join("other"), "").unwrap();
        std::fs::rename(dir.join("other"), &path).unwrap();
        step(&mut w);
        step(&mut w);
        std::fs::remove_dir_all(&dir).unwrap();
        let text = String::from_utf8(w.writer().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        let p = path.display();
        assert!(
            lines[0].starts_with(&format!("W! [acceptq] netns x: {p} is gone (ip netns del")),
            "{text}"
        );
        assert!(
            lines[1].starts_with(&format!(
                "W! [acceptq] netns x: {p} now names another namespace"
            )),
            "{text}"
        );
    }

    #[test]
    fn the_lack_of_cap_sys_admin_is_said_once_for_every_later_namespace() {
        let mut said_no_admin = false;
        let mut w = Warnings::to(Vec::new());
        say_failures(
            vec![failure("a", Step::Join, libc::EPERM)],
            &mut said_no_admin,
            &mut w,
        );
        say_failures(
            vec![
                failure("b", Step::Join, libc::EPERM),
                failure("odd", Step::Join, libc::EINVAL),
            ],
            &mut said_no_admin,
            &mut w,
        );
        let text = String::from_utf8(w.writer().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(
            lines[0].contains("netns a: cannot join")
                && lines[0].ends_with("namespaces found later are not entered either)"),
            "{text}"
        );
        assert!(lines[1].contains("netns odd:"), "{text}");
    }
}
