//! Kernel sources, one file each; this file bundles what one watched namespace needs.

pub mod cgroup;
pub mod ifname;
pub mod inet_diag;
pub mod netdev;
pub mod netns;
pub mod netstat;
pub mod owners;
pub mod proc_tcp;
pub mod snmp;
pub mod sock_diag;
pub mod sysctl;

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::time::Duration;

use crate::filter::Filter;
use crate::snapshot::{Endpoint, NetnsSnapshot, Socket};
use crate::warn::Warnings;
use ifname::IfNames;
use inet_diag::{DecodeError, LocalPorts, Record, STATE_LISTEN, STATE_NEW_SYN_RECV};
use netns::Netns;
use sock_diag::{CpuCap, DiagError, DiagSocket, Dumped};

/// Under a SYN flood the request-socket dump could run long; past this much CPU time (see
/// [`CpuCap`]) the count is dropped for that report rather than delaying it.
const SYN_DUMP_CAP: Duration = Duration::from_millis(250);
/// The accept-queue children dump walks the same established hash; past this it is dropped for
/// that report too.
const QUEUE_WAIT_DUMP_CAP: Duration = Duration::from_millis(250);
/// The one walk that counts the SYN queue and finds the queued connections together costs what
/// the SYN-queue dump does (the same walk, the same request sockets) plus the queued ports'
/// own sockets, so it gets the SYN dump's cap: a flood that would cut one cuts the other at the
/// same point. Cut, the SYN count is lost as it was, and the waits are asked apart within
/// [`QUEUE_WAIT_DUMP_CAP`]: a report costs at most what the two dumps cost apart.
const ONE_WALK_DUMP_CAP: Duration = SYN_DUMP_CAP;
/// When set (to anything but empty or `0`), every report walks the established hash as a
/// kernel before 5.8 makes it: the SYN-queue dump and the queued connections' dump apart, each
/// family on its own.
pub const SEPARATE_DUMPS_ENV: &str = "ACCEPTQ_DEBUG_SEPARATE_DUMPS";
/// The Fast Open children dump, made only for ports with children still missing, brings their
/// request sockets along; past this the waits of the first dump stand alone.
const FAST_OPEN_DUMP_CAP: Duration = Duration::from_millis(250);

/// Reads a whole `/proc` or `/sys` file from offset 0 into `buf`, reusing it. The file stays
/// bound to the namespace it was opened in, so re-reading it needs no `setns`.
pub fn read_file_at_start(file: &File, buf: &mut String) -> io::Result<()> {
    let mut bytes = std::mem::take(buf).into_bytes();
    bytes.clear();
    let mut chunk = [0u8; 8192];
    let mut at = 0u64;
    loop {
        let n = match file.read_at(&mut chunk, at) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            break;
        }
        bytes.extend_from_slice(&chunk[..n]);
        at += n as u64;
    }
    *buf = String::from_utf8(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    Ok(())
}

/// Everything opened in one namespace: the sock_diag socket for reports and the `/proc` files.
pub struct NsSources {
    pub netns: Netns,
    diag: Option<DiagSocket>,
    netstat: Option<File>,
    sysctls: [Option<File>; 4],
    proc_tcp: [Option<File>; 2],
    /// Device names of this namespace, for listeners bound to a device.
    ifnames: Option<IfNames>,
    records: Vec<Record>,
    /// The address family of each listener read, in order, when sock_diag read them.
    families: Vec<u8>,
    /// The families the children dump asks, reused.
    asked: Vec<u8>,
    /// The children dump's ports, reused.
    ports: Vec<u16>,
    local_ports: LocalPorts,
    walks: Walks,
    /// [`ONE_WALK_DUMP_CAP`] and [`FAST_OPEN_DUMP_CAP`]; a test shortens them.
    one_walk_cap: Duration,
    fast_open_cap: Duration,
    /// A test makes the one-walk program one that no kernel takes.
    #[cfg(test)]
    spoil_one_walk: bool,
    text: String,
}

/// Which requests that walk the established hash once this kernel has taken; each is given up
/// at its first refusal, silently: what the report holds is the same either way, only its cost
/// differs (see the README's Performance section).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Walks {
    /// `TCPDIAG_GETSOCK`: both address families in one walk.
    both_families: bool,
    /// A program keeping every request socket and the queued ports' connections (Linux 5.8).
    requests_and_children: bool,
}

impl Walks {
    fn from_env() -> Walks {
        let separate =
            std::env::var_os(SEPARATE_DUMPS_ENV).is_some_and(|v| !v.is_empty() && v != "0");
        Walks {
            both_families: !separate,
            requests_and_children: !separate,
        }
    }
}

/// A count or a wait in ms per local endpoint, as the SYN queue and the waits are kept.
type ByEndpoint = HashMap<Endpoint, u32>;

/// How the one walk for the SYN queue and the waits went.
enum OneWalk {
    /// The SYN queue's counts; the waits are whole too.
    Whole(HashMap<Endpoint, u32>),
    /// Cut short or failed (said once): no SYN count, no wait.
    Lost,
    /// The kernel does not take the request.
    Refused,
}

/// Whether the kernel refused a request as one it cannot take (an unknown op, message type
/// or family), rather than failing a dump it began.
fn refused(e: &DiagError) -> bool {
    matches!(e, DiagError::Decode(DecodeError::Kernel(errno))
        if [libc::EINVAL, libc::EOPNOTSUPP, libc::ENOENT].contains(errno))
}

pub struct Options {
    pub syn_queue: bool,
    /// Dump the connections waiting in accept queues for their wait (`queue_wait_max`).
    pub queue_wait: bool,
    /// Which listeners are reported: only their ports are asked for their queued connections.
    pub filter: Filter,
}

/// The warn-once key of a failure of `kind` in `netns`: each namespace's first failure of each
/// kind is said, and a second namespace failing the same way is not hidden by the first.
fn key(kind: &str, netns: &Netns) -> String {
    format!("{kind} {}", netns.name)
}

impl NsSources {
    /// Opens every source of `netns`, warning once for each that is missing.
    pub fn open(netns: Netns, warnings: &mut Warnings<impl Write>) -> io::Result<Self> {
        let diag = match DiagSocket::open(netns.file.clone()) {
            Ok(d) => Some(d),
            Err(e) => {
                warnings.once(
                    &key("sock_diag", &netns),
                    format!("sock_diag unavailable in netns {} ({e}); reading /proc/net/tcp instead: accept-queue limit and drops will be missing", netns.name),
                );
                None
            }
        };
        let (netstat, sysctls, proc_tcp, ifnames) = netns::run_in(netns.file.as_deref(), || {
            (
                File::open("/proc/thread-self/net/netstat"),
                sysctl::open(),
                proc_tcp::open(),
                IfNames::open(),
            )
        })?;
        let ifnames = match ifnames {
            Ok(n) => Some(n),
            Err(e) => {
                warnings.once(
                    &key("ifnames", &netns),
                    format!("cannot ask for device names in netns {} ({e}): device-bound listeners are tagged interface=if<index>", netns.name),
                );
                None
            }
        };
        let netstat = match netstat {
            Ok(f) => Some(f),
            Err(e) => {
                warnings.once(
                    &key("netstat", &netns),
                    format!(
                        "cannot open /proc/net/netstat of netns {} ({e}): namespace counters will be missing",
                        netns.name
                    ),
                );
                None
            }
        };
        Ok(NsSources {
            netns,
            diag,
            netstat,
            sysctls,
            proc_tcp,
            ifnames,
            records: Vec::new(),
            families: Vec::new(),
            asked: Vec::new(),
            ports: Vec::new(),
            local_ports: LocalPorts::default(),
            walks: Walks::from_env(),
            one_walk_cap: ONE_WALK_DUMP_CAP,
            fast_open_cap: FAST_OPEN_DUMP_CAP,
            #[cfg(test)]
            spoil_one_walk: false,
            text: String::new(),
        })
    }

    /// Takes one reading of this namespace. Each source that fails is warned about and left out;
    /// the rest of the reading stands.
    pub fn read(
        &mut self,
        opts: &Options,
        warnings: &mut Warnings<impl Write>,
        out: &mut NetnsSnapshot,
    ) {
        out.sockets.clear();
        self.read_listeners(warnings, &mut out.sockets);
        // Right after the listeners, before the slower dumps of the established hash: the
        // namespace's ListenDrops and the listeners' sk_drops are then read at nearly one moment,
        // so a report's drops_delta and listen_drops_delta cover the same interval.
        out.tcpext = match &self.netstat {
            Some(f) => match netstat::read(f, &mut self.text) {
                Ok(t) => Some(t),
                Err(e) => {
                    warnings.once(
                        &key("netstat-read", &self.netns),
                        format!("/proc/net/netstat of netns {}: {e}", self.netns.name),
                    );
                    None
                }
            },
            None => None,
        };
        self.name_interfaces(&out.sockets, &mut out.interfaces);
        (out.syn_queue, out.queue_wait) =
            self.read_established(opts, &out.sockets, &out.interfaces, warnings);
        out.sysctls = sysctl::read(&self.sysctls, &mut self.text);
    }

    fn read_listeners(&mut self, warnings: &mut Warnings<impl Write>, out: &mut Vec<Socket>) {
        self.families.clear();
        if let Some(diag) = &mut self.diag {
            match diag.dump_into(STATE_LISTEN, true, &mut self.records) {
                Ok(()) => {
                    self.families.extend(self.records.iter().map(|r| r.family));
                    out.extend(self.records.iter().map(|r| Socket {
                        addr: r.addr,
                        port: r.port,
                        ifindex: r.ifindex,
                        inode: r.inode,
                        depth: r.rqueue,
                        limit: Some(r.wqueue),
                        drops: r.drops,
                    }));
                    // What the kernel's SK_MEMINFO carries is the same in every namespace:
                    // said once, not once per namespace.
                    if self.records.iter().any(|r| r.drops.is_none()) {
                        warnings.once("skmeminfo", "this kernel's SK_MEMINFO has no drops counter: per-listener drops will be missing".to_string());
                    }
                    return;
                }
                Err(e) => warnings.once(
                    &key("sock_diag-dump", &self.netns),
                    format!(
                        "sock_diag dump failed in netns {} ({e}); falling back to /proc/net/tcp",
                        self.netns.name
                    ),
                ),
            }
        }
        if let Err(e) = proc_tcp::read(&self.proc_tcp, out) {
            warnings.once(
                &key("proc_tcp", &self.netns),
                format!("/proc/net/tcp of netns {}: {e}", self.netns.name),
            );
        }
    }

    /// Names the devices listeners are bound to, asked afresh each report: a device renamed, or
    /// deleted and its index given to another, is named as it is now. Only indexes in use are
    /// asked (none on a host without device-bound listeners), so `names` stays that small.
    fn name_interfaces(&self, sockets: &[Socket], names: &mut HashMap<u32, String>) {
        names.clear();
        let Some(ifnames) = &self.ifnames else { return };
        for s in sockets {
            if s.ifindex != 0 && !names.contains_key(&s.ifindex) {
                if let Some(name) = ifnames.name(s.ifindex) {
                    names.insert(s.ifindex, name);
                }
            }
        }
    }

    /// The SYN queue's request sockets by local endpoint (`opts.syn_queue`) and the waits of
    /// the connections in accept queues (`opts.queue_wait`), both in the kernel's established
    /// hash: in one walk when some queue holds connections and this kernel takes the program
    /// telling the two apart, else a walk for each.
    fn read_established(
        &mut self,
        opts: &Options,
        listeners: &[Socket],
        interfaces: &HashMap<u32, String>,
        warnings: &mut Warnings<impl Write>,
    ) -> (Option<ByEndpoint>, Option<ByEndpoint>) {
        let walks = self.walks;
        if opts.syn_queue && opts.queue_wait && walks.both_families && walks.requests_and_children {
            self.queued_ports(listeners, interfaces, &opts.filter);
            if self.diag.is_some() && !self.ports.is_empty() {
                let mut waits = Waits::default();
                match self.dump_requests_and_children(&mut waits, warnings) {
                    OneWalk::Whole(counts) => {
                        let waits = self.finish_waits(listeners, waits, true, warnings);
                        return (Some(counts), waits);
                    }
                    OneWalk::Lost => {
                        return (None, self.finish_waits(listeners, waits, false, warnings));
                    }
                    OneWalk::Refused => self.walks.requests_and_children = false,
                }
            }
        }
        let syn = match opts.syn_queue {
            true => self.read_syn_queue(warnings),
            false => None,
        };
        let waits = match opts.queue_wait {
            true => self.read_queue_wait(listeners, interfaces, &opts.filter, warnings),
            false => None,
        };
        (syn, waits)
    }

    /// One walk for both jobs: every request socket, counted by local endpoint as
    /// [`Self::read_syn_queue`] counts them, and the `ESTABLISHED` and `CLOSE_WAIT` sockets of
    /// `ports`, timed as [`Self::dump_established_children`] times them, within
    /// [`ONE_WALK_DUMP_CAP`]. Cut short, the SYN count is lost as a cut SYN dump loses it (said
    /// once) and the waits are left to the children dump.
    fn dump_requests_and_children(
        &mut self,
        waits: &mut Waits,
        warnings: &mut Warnings<impl Write>,
    ) -> OneWalk {
        let Some(diag) = self.diag.as_mut() else {
            return OneWalk::Lost;
        };
        self.local_ports.set_with_request_sockets(&self.ports);
        #[cfg(test)]
        if self.spoil_one_walk {
            self.local_ports.spoil();
        }
        let mut counts: HashMap<Endpoint, u32> = HashMap::new();
        let cap = CpuCap::start(self.one_walk_cap);
        let states = STATE_NEW_SYN_RECV | inet_diag::STATES_ESTABLISHED_CHILD;
        let asked = &self.asked;
        let result =
            diag.dump_both_families(states, &self.local_ports, true, Some(cap), &mut |r| {
                // No full socket is asked in SYN_RECV: that state is a request socket's.
                if r.state == inet_diag::TCP_SYN_RECV {
                    *counts.entry(r.endpoint()).or_insert(0) += 1;
                } else if asked.contains(&r.family) {
                    // As the separate dumps, which ask only the queued listeners' families: a
                    // connection of another family queued after its listener was read empty.
                    waits.take(Dumped::Record(r));
                }
            });
        say_short_info(waits, warnings);
        match result {
            Ok(()) => {
                waits.all_done(&self.asked);
                OneWalk::Whole(counts)
            }
            Err(e) => {
                waits.pending.clear();
                if refused(&e) {
                    return OneWalk::Refused;
                }
                warnings.once(
                    &key("syn-dump", &self.netns),
                    format!("SYN queue not counted in netns {}: {e}", self.netns.name),
                );
                OneWalk::Lost
            }
        }
    }

    /// Counts request sockets by local endpoint without storing them, within [`SYN_DUMP_CAP`],
    /// both families in one walk where the kernel takes that request.
    /// A cut loses the whole count, even a family dumped whole: the report reads a listener
    /// missing from the counts as an empty SYN queue, which would be a false 0, not a bound.
    fn read_syn_queue(
        &mut self,
        warnings: &mut Warnings<impl Write>,
    ) -> Option<HashMap<Endpoint, u32>> {
        let diag = self.diag.as_mut()?;
        let mut counts: HashMap<Endpoint, u32> = HashMap::new();
        let cap = CpuCap::start(SYN_DUMP_CAP);
        let mut count = |r: &Record| *counts.entry(r.endpoint()).or_insert(0) += 1;
        let mut result = Err(DiagError::Deadline { records: 0 });
        if self.walks.both_families {
            let any = LocalPorts::default();
            result =
                diag.dump_both_families(STATE_NEW_SYN_RECV, &any, false, Some(cap), &mut count);
            // Refused before any record: the family dumps start from nothing.
            self.walks.both_families = !result.as_ref().is_err_and(refused);
        }
        if !self.walks.both_families {
            result = diag.dump(STATE_NEW_SYN_RECV, false, Some(cap), &mut count);
        }
        match result {
            Ok(()) => Some(counts),
            Err(e) => {
                warnings.once(
                    &key("syn-dump", &self.netns),
                    format!("SYN queue not counted in netns {}: {e}", self.netns.name),
                );
                None
            }
        }
    }

    /// The longest wait of the connections in accept queues, by the local endpoint they carry,
    /// asked only for the ports of `listeners` with a non-empty queue that `filter` may report
    /// (none: no dump). `None` when nothing could be measured (no sock_diag: the
    /// `/proc/net/tcp` fallback has no `tcp_info`).
    ///
    /// Two dumps: `ESTABLISHED` and `CLOSE_WAIT` within [`QUEUE_WAIT_DUMP_CAP`], then, only for
    /// the ports where fewer children were found than their listeners' depths, `SYN_RECV` (Fast
    /// Open children) within [`FAST_OPEN_DUMP_CAP`]: asking `SYN_RECV` brings every request
    /// socket of those ports along, which a SYN flood makes a dump too long to finish. A cut
    /// keeps what the families dumped whole found: each wait is a lower bound anyway.
    fn read_queue_wait(
        &mut self,
        listeners: &[Socket],
        interfaces: &HashMap<u32, String>,
        filter: &Filter,
        warnings: &mut Warnings<impl Write>,
    ) -> Option<HashMap<Endpoint, u32>> {
        self.diag.as_ref()?;
        self.queued_ports(listeners, interfaces, filter);
        self.finish_waits(listeners, Waits::default(), false, warnings)
    }

    /// The waits of the connections queued on `ports`, those in `ESTABLISHED` and
    /// `CLOSE_WAIT` already in `waits` when `established_found`, else dumped now; then the
    /// Fast Open children where some are missing, as [`Self::read_queue_wait`] says.
    fn finish_waits(
        &mut self,
        listeners: &[Socket],
        mut waits: Waits,
        established_found: bool,
        warnings: &mut Warnings<impl Write>,
    ) -> Option<HashMap<Endpoint, u32>> {
        if self.ports.is_empty() {
            return Some(waits.done);
        }
        if !established_found && !self.dump_established_children(&mut waits, warnings) {
            return (!waits.families_done.is_empty()).then_some(waits.done);
        }
        // Ports whose listeners hold more connections than were found: a Fast Open child may be
        // among them (or a connection reset while queued, which no dump finds).
        self.ports.retain(|&port| {
            let depth: u64 = listeners
                .iter()
                .filter(|s| s.port == port)
                .map(|s| u64::from(s.depth))
                .sum();
            depth > u64::from(waits.found.get(&port).copied().unwrap_or(0))
        });
        if !self.ports.is_empty() {
            self.dump_fast_open_children(&mut waits, warnings);
        }
        Some(waits.done)
    }

    /// Fills `ports` and `asked` (address families) with those of the listeners that have
    /// connections queued and may be reported.
    fn queued_ports(
        &mut self,
        listeners: &[Socket],
        interfaces: &HashMap<u32, String>,
        filter: &Filter,
    ) {
        self.ports.clear();
        self.asked.clear();
        // A child has its listener's family: a family with no such listener is not walked (each
        // family's dump walks the whole established hash, a flood's request sockets included).
        let families = (self.families.len() == listeners.len()).then_some(&self.families);
        for (i, s) in listeners.iter().enumerate() {
            if s.depth > 0 && may_report(s, interfaces, filter) {
                self.ports.push(s.port);
                match families {
                    Some(f) => self.asked.push(f[i]),
                    None => self.asked.extend(inet_diag::FAMILIES),
                }
            }
        }
        self.ports.sort_unstable();
        self.ports.dedup();
        self.asked.sort_unstable();
        self.asked.dedup();
    }

    /// The first dump: `ESTABLISHED` and `CLOSE_WAIT` children of `ports`. False when it was
    /// cut short (said once); the families it finished are kept in `waits`.
    fn dump_established_children(
        &mut self,
        waits: &mut Waits,
        warnings: &mut Warnings<impl Write>,
    ) -> bool {
        let Some(diag) = self.diag.as_mut() else {
            return false;
        };
        self.local_ports.set(&self.ports);
        let cap = CpuCap::start(QUEUE_WAIT_DUMP_CAP);
        let result = diag.dump_children(
            &self.asked,
            &self.local_ports,
            inet_diag::STATES_ESTABLISHED_CHILD,
            Some(cap),
            &mut |d| waits.take(d),
        );
        say_short_info(waits, warnings);
        let Err(e) = result else { return true };
        let what = if waits.families_done.is_empty() {
            "not measured".to_string()
        } else {
            format!("measured for {} only", family_names(&waits.families_done))
        };
        warnings.once(
            &key("queue-wait-dump", &self.netns),
            format!(
                "accept-queue waits {what} in netns {}: {e}",
                self.netns.name
            ),
        );
        false
    }

    /// The second dump: `SYN_RECV` children (Fast Open) of the remaining `ports`, under its own
    /// cap; cut short, what the first dump found stands (said once).
    fn dump_fast_open_children(&mut self, waits: &mut Waits, warnings: &mut Warnings<impl Write>) {
        let Some(diag) = self.diag.as_mut() else {
            return;
        };
        self.local_ports.set(&self.ports);
        waits.families_done.clear();
        let cap = CpuCap::start(self.fast_open_cap);
        let result = diag.dump_children(
            &self.asked,
            &self.local_ports,
            inet_diag::STATE_SYN_RECV,
            Some(cap),
            &mut |d| waits.take(d),
        );
        if let Err(e) = result {
            let timed = match waits.families_done.is_empty() {
                true => String::new(),
                false => format!(" (but for {})", family_names(&waits.families_done)),
            };
            warnings.once(
                &key("fast-open-dump", &self.netns),
                format!(
                    "Fast Open children still in SYN_RECV not timed{timed} in netns {}: {e}; queue_wait_max counts the other queued connections",
                    self.netns.name
                ),
            );
        }
    }
}

/// Says once that the kernel's `tcp_info` is too short to time queued connections, when a
/// dump found it so. Its length is the kernel's, the same in every namespace.
fn say_short_info(waits: &Waits, warnings: &mut Warnings<impl Write>) {
    if waits.short_info {
        warnings.once(
            "tcp_info",
            "this kernel's tcp_info has no tcpi_last_data_sent: queue_wait_max will be missing"
                .to_string(),
        );
    }
}

/// Whether the listener `s` may be reported under `filter`, by what the reading knows of it.
fn may_report(s: &Socket, interfaces: &HashMap<u32, String>, filter: &Filter) -> bool {
    let interface = (s.ifindex != 0)
        .then(|| ifname::tag(s.ifindex, interfaces.get(&s.ifindex).map(String::as_str)));
    filter.may_match(&s.addr, interface.as_deref(), s.port)
}

/// Address families as an operator reads them.
fn family_names(families: &[u8]) -> String {
    let name = |f: &u8| {
        if *f == inet_diag::FAMILIES[0] {
            "IPv4"
        } else {
            "IPv6"
        }
    };
    families.iter().map(name).collect::<Vec<_>>().join(" and ")
}

/// The waits a children dump found, kept per family until that family is complete.
#[derive(Default)]
struct Waits {
    /// From the families dumped whole.
    done: HashMap<Endpoint, u32>,
    /// From the family being dumped.
    pending: Vec<(Endpoint, u32)>,
    /// Queued children found per local port, in the families dumped whole.
    found: HashMap<u16, u32>,
    families_done: Vec<u8>,
    short_info: bool,
}

impl Waits {
    fn take(&mut self, d: Dumped) {
        match d {
            Dumped::Record(r) => match queued_wait(r) {
                Some(Some(ms)) => self.pending.push((r.endpoint(), ms)),
                Some(None) => self.short_info = true,
                None => {}
            },
            Dumped::FamilyDone(family) => {
                for (endpoint, ms) in self.pending.drain(..) {
                    let w = self.done.entry(endpoint).or_insert(0);
                    *w = (*w).max(ms);
                    *self.found.entry(endpoint.port).or_insert(0) += 1;
                }
                self.families_done.push(family);
            }
        }
    }

    /// After a dump of `families` in one walk: all complete at once.
    fn all_done(&mut self, families: &[u8]) {
        for &f in families {
            self.take(Dumped::FamilyDone(f));
        }
    }
}

/// Whether `r` is a connection waiting in an accept queue, and if so its wait in ms (`None`
/// inside when its `tcp_info` is too short to hold it). Such a connection has no file yet
/// (inode 0) and is a full socket (it carries `tcp_info`; request sockets, which the kernel
/// adds to a SYN_RECV dump, do not). An orphan (closed by its process) has inode 0 too, but
/// close() moves ESTABLISHED to FIN_WAIT1 and CLOSE_WAIT to LAST_ACK, and a dead listener's
/// children are reset or migrated: none is left in the dumped states.
fn queued_wait(r: &Record) -> Option<Option<u32>> {
    let asked = 1u32.checked_shl(u32::from(r.state)).unwrap_or(0);
    if r.inode != 0 || asked & inet_diag::STATES_QUEUED_CHILD == 0 {
        return None;
    }
    Some(r.tcp_info?.last_data_sent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use inet_diag::TcpInfo;
    use std::net::{TcpListener, TcpStream};

    /// Sources of our own namespace under `name`, whose sock_diag is gone and whose
    /// `/proc/net/tcp` and `/proc/net/netstat` fail to read (a directory stands in for each).
    fn failing(name: &str) -> NsSources {
        let mut quiet = Warnings::to(Vec::new());
        let mut src = NsSources::open(
            Netns {
                name: name.into(),
                file: None,
            },
            &mut quiet,
        )
        .unwrap();
        src.diag = None;
        src.netstat = Some(File::open("/").unwrap());
        src.proc_tcp = [Some(File::open("/").unwrap()), None];
        src
    }

    #[test]
    fn each_namespaces_first_failure_of_each_kind_is_said() {
        let opts = Options {
            syn_queue: true,
            queue_wait: true,
            filter: Filter::default(),
        };
        let mut w = Warnings::to(Vec::new());
        let mut snap = NetnsSnapshot::default();
        let (mut a, mut b) = (failing("a"), failing("b"));
        for _ in 0..3 {
            a.read(&opts, &mut w, &mut snap);
            b.read(&opts, &mut w, &mut snap);
        }
        let said = String::from_utf8(w.writer().clone()).unwrap();
        let lines: Vec<&str> = said.lines().collect();
        assert_eq!(lines.len(), 4, "{said}");
        for ns in ["a", "b"] {
            for what in ["/proc/net/tcp of netns", "/proc/net/netstat of netns"] {
                let want = format!("W! [acceptq] {what} {ns}: ");
                assert_eq!(
                    lines.iter().filter(|l| l.starts_with(&want)).count(),
                    1,
                    "{want}: {said}"
                );
            }
        }
    }

    /// A listener of our own namespace with `n` connections queued, as the reading sees it.
    fn queued(n: usize) -> (TcpListener, Vec<TcpStream>, Socket) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let clients = (0..n)
            .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
            .collect();
        let s = Socket {
            addr: "127.0.0.1".parse().unwrap(),
            port,
            ifindex: 0,
            inode: 1,
            depth: n as u32,
            limit: Some(128),
            drops: Some(0),
        };
        (l, clients, s)
    }

    fn ours() -> NsSources {
        let mut quiet = Warnings::to(Vec::new());
        NsSources::open(
            Netns {
                name: "own".into(),
                file: None,
            },
            &mut quiet,
        )
        .unwrap()
    }

    /// [`ours`] making the separate dumps, as `ACCEPTQ_DEBUG_SEPARATE_DUMPS` asks.
    fn separate_dumps() -> NsSources {
        let mut src = ours();
        src.walks = Walks {
            both_families: false,
            requests_and_children: false,
        };
        src
    }

    /// Nothing was said on stderr.
    fn assert_silent(w: &Warnings<Vec<u8>>) {
        assert!(
            w.writer().is_empty(),
            "{:?}",
            String::from_utf8_lossy(w.writer())
        );
    }

    #[test]
    fn only_the_ports_the_filter_may_report_are_asked_for_waits() {
        let (_a, _ca, a) = queued(1);
        let (_b, _cb, b) = queued(2);
        let mut src = ours();
        let mut w = Warnings::to(Vec::new());
        let none = HashMap::new();
        let ports = |f: &Filter, src: &mut NsSources, w: &mut Warnings<Vec<u8>>| {
            let waits = src.read_queue_wait(&[a, b], &none, f, w).unwrap();
            let mut p: Vec<u16> = waits.keys().map(|e| e.port).collect();
            p.sort();
            p
        };
        let mut both = vec![a.port, b.port];
        both.sort();
        assert_eq!(ports(&Filter::default(), &mut src, &mut w), both);
        let only_a = Filter {
            ports: vec![a.port],
            ..Filter::default()
        };
        assert_eq!(ports(&only_a, &mut src, &mut w), vec![a.port]);
        let not_a = Filter {
            exclude_ports: vec![a.port],
            ..Filter::default()
        };
        assert_eq!(ports(&not_a, &mut src, &mut w), vec![b.port]);
        let elsewhere = Filter {
            addresses: vec!["10.*".into()],
            ..Filter::default()
        };
        assert_eq!(ports(&elsewhere, &mut src, &mut w), Vec::<u16>::new());
        // The process is not known yet: it cannot narrow the dump.
        let by_process = Filter {
            processes: vec!["nothing-runs-as-this".into()],
            ..Filter::default()
        };
        assert_eq!(ports(&by_process, &mut src, &mut w), both);
        assert_silent(&w);
    }

    #[test]
    fn a_cut_fast_open_dump_keeps_the_waits_already_found_and_says_so_once() {
        let (_l, _clients, mut s) = queued(2);
        let mut src = ours();
        src.fast_open_cap = Duration::ZERO;
        let mut w = Warnings::to(Vec::new());
        let none = HashMap::new();
        let all = Filter::default();
        // Every queued connection found: no SYN_RECV dump, so no cut.
        let waits = src.read_queue_wait(&[s], &none, &all, &mut w).unwrap();
        assert_eq!(waits.len(), 1, "{waits:?}");
        assert_silent(&w);
        // One more than found: the SYN_RECV dump is made, and cut at once.
        s.depth = 3;
        for _ in 0..2 {
            let kept = src.read_queue_wait(&[s], &none, &all, &mut w).unwrap();
            assert_eq!(kept.len(), 1, "the first dump's waits stand: {kept:?}");
            assert!(kept[&s.endpoint()] >= waits[&s.endpoint()], "{kept:?}");
        }
        let said = String::from_utf8(w.writer().clone()).unwrap();
        assert_eq!(said.lines().count(), 1, "{said}");
        assert!(
            said.starts_with("W! [acceptq] Fast Open children still in SYN_RECV not timed in netns own: sock_diag dump cut short after 0 records (time cap); queue_wait_max counts the other queued connections"),
            "{said}"
        );
    }

    fn both() -> Options {
        Options {
            syn_queue: true,
            queue_wait: true,
            filter: Filter::default(),
        }
    }

    /// What one reading of `listeners` gives: the SYN counts and the waits, by port.
    fn established(
        src: &mut NsSources,
        listeners: &[Socket],
        w: &mut Warnings<Vec<u8>>,
    ) -> (Option<ByEndpoint>, Option<ByEndpoint>) {
        src.read_established(&both(), listeners, &HashMap::new(), w)
    }

    #[test]
    fn one_walk_finds_what_the_separate_dumps_find() {
        let (_a, _ca, a) = queued(2);
        let (_b, _cb, b) = queued(1);
        let mut one = ours();
        let mut separate = separate_dumps();
        let mut w = Warnings::to(Vec::new());
        let (syn1, waits1) = established(&mut one, &[a, b], &mut w);
        let (syn2, waits2) = established(&mut separate, &[a, b], &mut w);
        let ports = |m: &HashMap<Endpoint, u32>| {
            let mut p: Vec<u16> = m.keys().map(|e| e.port).collect();
            p.sort();
            p
        };
        let mut want = vec![a.port, b.port];
        want.sort();
        assert_eq!(ports(waits1.as_ref().unwrap()), want);
        assert_eq!(ports(waits2.as_ref().unwrap()), want);
        for e in [a.endpoint(), b.endpoint()] {
            assert!(waits1.as_ref().unwrap()[&e].abs_diff(waits2.as_ref().unwrap()[&e]) < 1000);
        }
        // Our handshakes completed: no request socket of these ports, whichever way.
        for syn in [&syn1, &syn2] {
            let syn = syn.as_ref().expect("counted");
            assert!(!syn.contains_key(&a.endpoint()) && !syn.contains_key(&b.endpoint()));
        }
        assert_eq!(
            one.walks,
            Walks {
                both_families: true,
                requests_and_children: true
            },
            "this kernel takes both requests"
        );
        assert_silent(&w);
    }

    #[test]
    fn one_walk_keeps_the_waits_of_the_queued_listeners_families_only() {
        // An IPv4 listener read with connections queued, and on its port an IPv6 one read
        // empty whose connection queued after that reading: the separate dumps ask IPv4 only.
        let (_a, _ca, a) = queued(2);
        let _v6 = TcpListener::bind(("::1", a.port)).unwrap();
        let _c6 = TcpStream::connect(("::1", a.port)).unwrap();
        let mut one = ours();
        let mut separate = separate_dumps();
        let mut w = Warnings::to(Vec::new());
        let mut endpoints = Vec::new();
        for src in [&mut one, &mut separate] {
            src.families = vec![inet_diag::FAMILIES[0]];
            let (_, waits) = established(src, &[a], &mut w);
            let mut e: Vec<Endpoint> = waits.unwrap().into_keys().collect();
            e.sort();
            endpoints.push(e);
        }
        assert_eq!(endpoints[0], [a.endpoint()], "one walk");
        assert_eq!(endpoints[1], [a.endpoint()], "separate dumps");
        assert!(one.walks.requests_and_children, "the one walk was made");
    }

    #[test]
    fn a_kernel_refusing_the_one_walk_program_gets_the_separate_dumps_silently() {
        let (_l, _clients, s) = queued(2);
        let mut src = ours();
        src.spoil_one_walk = true;
        let mut w = Warnings::to(Vec::new());
        for _ in 0..2 {
            let (syn, waits) = established(&mut src, &[s], &mut w);
            assert!(syn.is_some(), "the SYN queue counted apart");
            assert_eq!(waits.unwrap().len(), 1, "the waits found apart");
            assert!(
                !src.walks.requests_and_children,
                "given up after the refusal"
            );
            assert!(src.walks.both_families, "the SYN dump still walks once");
        }
        assert_silent(&w);
    }

    #[test]
    fn a_cut_one_walk_loses_the_syn_count_says_so_once_and_times_the_queue_apart() {
        let (_l, _clients, s) = queued(2);
        let mut src = ours();
        src.one_walk_cap = Duration::ZERO;
        let mut w = Warnings::to(Vec::new());
        for _ in 0..2 {
            let (syn, waits) = established(&mut src, &[s], &mut w);
            assert_eq!(syn, None, "a cut count would read as empty SYN queues");
            let waits = waits.expect("the waits, asked apart");
            assert_eq!(waits.len(), 1, "{waits:?}");
            assert!(src.walks.requests_and_children, "a cut is no refusal");
        }
        let said = String::from_utf8(w.writer().clone()).unwrap();
        assert_eq!(said.lines().count(), 1, "{said}");
        assert!(
            said.starts_with("W! [acceptq] SYN queue not counted in netns own: sock_diag dump cut short after 0 records (time cap)"),
            "{said}"
        );
    }

    #[test]
    fn waits_of_a_family_cut_short_are_dropped_and_of_whole_ones_kept() {
        let info = Some(TcpInfo {
            last_data_sent: Some(900),
        });
        let mut w = Waits::default();
        let old = child(1, 0, info);
        w.take(Dumped::Record(&old));
        w.take(Dumped::Record(&Record {
            tcp_info: Some(TcpInfo {
                last_data_sent: Some(300),
            }),
            ..old
        }));
        w.take(Dumped::FamilyDone(2));
        w.take(Dumped::Record(&Record { port: 81, ..old }));
        assert_eq!(w.families_done, [2]);
        assert_eq!(w.done, HashMap::from([(old.endpoint(), 900)]));
        assert_eq!(w.found, HashMap::from([(80, 2)]));
    }

    fn child(state: u8, inode: u32, tcp_info: Option<TcpInfo>) -> Record {
        Record {
            family: 2,
            state,
            addr: "127.0.0.1".parse().unwrap(),
            port: 80,
            ifindex: 0,
            inode,
            rqueue: 0,
            wqueue: 0,
            drops: None,
            tcp_info,
        }
    }

    #[test]
    fn only_full_sockets_without_a_file_count_as_queued() {
        let info = Some(TcpInfo {
            last_data_sent: Some(2508),
        });
        assert_eq!(
            queued_wait(&child(1, 0, info)),
            Some(Some(2508)),
            "ESTABLISHED"
        );
        assert_eq!(
            queued_wait(&child(8, 0, info)),
            Some(Some(2508)),
            "CLOSE_WAIT"
        );
        assert_eq!(
            queued_wait(&child(3, 0, info)),
            Some(Some(2508)),
            "Fast Open child"
        );
        assert_eq!(
            queued_wait(&child(1, 77, info)),
            None,
            "accepted: has a file"
        );
        assert_eq!(queued_wait(&child(3, 0, None)), None, "a request socket");
        assert_eq!(
            queued_wait(&child(4, 0, info)),
            None,
            "FIN_WAIT1: an orphan"
        );
        let short = Some(TcpInfo {
            last_data_sent: None,
        });
        assert_eq!(queued_wait(&child(1, 0, short)), Some(None));
    }
}
