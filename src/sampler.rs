//! The peak sampler: between reports, dumps LISTEN sockets every `--sample` and records each
//! socket's depth into the shared [`Peaks`], so a queue that filled for 200 ms between two
//! scrapes still shows in `queue_depth_max` and `queue_full_ratio`.
//!
//! It runs on its own thread with its own sock_diag sockets, so a slow sample never delays a
//! report. It asks for no extension (depth and limit are in the message header), touches no
//! `/proc/<pid>`, and reuses its sockets, record buffer and table slots: in steady state a
//! sample allocates nothing.
//!
//! A dump walks the kernel's whole listening hash, whatever the namespace holds, so a quiet
//! namespace is not dumped at all: see [`Gate`].

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::source::inet_diag::{Record, FAMILIES, STATE_LISTEN};
use crate::source::netdev::{Class, LinkEvents, LinkWatch, RxPackets, MAX_EVENTS};
use crate::source::snmp::PassiveOpens;
use crate::source::sock_diag::{DiagError, DiagSocket};
use crate::state::{NsId, Peaks};

/// When set (to anything but empty or `0`), the sampler says at exit how many samples of each
/// namespace it took and how many of them dumped.
pub const DEBUG_ENV: &str = "ACCEPTQ_DEBUG_SAMPLER";

/// Decides whether a namespace's sample may skip its dump, from one counter: `Tcp:
/// PassiveOpens`, or the namespace's received packets (see [`DeviceTier`]).
///
/// Between two samples an accept queue grows only by a child the kernel counts in PassiveOpens
/// (a handshake, a SYN cookie's ACK, a Fast Open SYN), or by a connection migrated from the
/// accept queue of a closing SO_REUSEPORT socket, which needs a queue that already held one.
/// So once a dump found every queue empty and PassiveOpens has not moved since, every queue is
/// still empty: nothing can have peaked and nothing is full. That also covers a listener
/// `listen()`ed again with a smaller backlog (an empty queue is never full), and a counter that
/// went backwards or wrapped (a namespace recreated): any change is a move.
///
/// The kernel counts a child just before it queues it. A dump taken right after a move could
/// miss a child counted before the reading, so only a dump taken with the counter unchanged
/// since the sample before (a whole period later) is trusted: after a move, two dumps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Gate {
    /// PassiveOpens at the previous sample; `None`: not read.
    last: Option<u64>,
    /// The last dump covered every family, found every queue empty and was trusted, and the
    /// counter has not moved since.
    settled: bool,
    /// The last dump found every queue it saw empty.
    was_empty: bool,
}

impl Gate {
    /// A sample that read `now` (`None`: unreadable) may leave the namespace undumped.
    pub fn may_skip(&self, now: Option<u64>) -> bool {
        self.settled && self.trusts(now)
    }

    /// A dump at `now` would be trusted: the counter was read and has not moved for a period.
    pub fn trusts(&self, now: Option<u64>) -> bool {
        now.is_some() && now == self.last
    }

    /// A dump at `now` may settle the gate, so must cover every family: trusted, and the queues
    /// were empty at the last dump (a queue that stays busy does not cost a walk of an empty
    /// family every sample).
    pub fn wants_whole(&self, now: Option<u64>) -> bool {
        self.trusts(now) && self.was_empty
    }

    /// After a dump at `now` that covered every family (`whole`) or not, and found every
    /// accept queue empty or not.
    pub fn dumped(&mut self, now: Option<u64>, whole: bool, all_empty: bool) {
        self.settled = whole && all_empty && self.trusts(now);
        self.was_empty = all_empty;
        self.last = now;
    }

    /// After a dump that failed.
    pub fn failed(&mut self, now: Option<u64>) {
        self.settled = false;
        self.was_empty = false;
        self.last = now;
    }
}

/// One namespace the sampler watches: its stable id (the key of its peaks), its name for
/// warnings, and the sampler's own sock_diag socket there.
pub struct Target {
    pub id: NsId,
    pub name: String,
    pub sock: DiagSocket,
    /// `/proc/net/snmp` of the namespace, opened there; `None`: no gate, every sample dumps.
    pub passive_opens: Option<PassiveOpens>,
    pub gate: Gate,
    /// The cheaper first proof, from the devices' received packets; `None`: not available.
    pub devices: Option<DeviceTier>,
    /// The last sample of this namespace failed (and that was said).
    pub failing: bool,
    /// Per address family: no listener in the last complete sample. Such a family is dumped
    /// only every [`FULL_EVERY`] samples: each dump walks the kernel's whole listening hash,
    /// listeners or not (measured: 0.03-0.06 ms of a 0.65 ms sample with 1 000 listeners).
    pub empty: [bool; 2],
    /// Samples since the last dump of every family.
    pub since_whole: u64,
    /// Samples taken of this namespace.
    pub samples: u64,
    /// Samples of this namespace that dumped (the others the gate let pass).
    pub dumps: u64,
    /// Samples let pass on the devices' received packets, without reading PassiveOpens.
    pub passed_on_devices: u64,
    /// A failure to say, waiting for the report thread: it says it through its own warnings,
    /// which go where the format wants them (stderr, or collectd notifications). One at most:
    /// said once per failure streak.
    pub news: Option<String>,
}

impl Target {
    /// A target without a gate: every sample dumps.
    pub fn new(id: NsId, name: String, sock: DiagSocket) -> Self {
        Target {
            id,
            name,
            sock,
            passive_opens: None,
            gate: Gate::default(),
            devices: None,
            failing: false,
            empty: [false; 2],
            since_whole: FULL_EVERY,
            samples: 0,
            dumps: 0,
            passed_on_devices: 0,
            news: None,
        }
    }

    /// The same, skipping the dump of samples in which no queue can have changed.
    pub fn gated(mut self, passive_opens: PassiveOpens) -> Self {
        self.passive_opens = Some(passive_opens);
        self
    }

    /// The same, with the devices' received packets as a first proof.
    pub fn with_devices(mut self, devices: DeviceTier) -> Self {
        self.devices = Some(devices);
        self
    }
}

/// The first tier of a namespace's gate: the sum of `rx_packets` over its devices, when every
/// device counts a packet before TCP sees it (`source::netdev` says which do and why). A child
/// enters an accept queue only through a packet received, so that sum still is as good a proof
/// as PassiveOpens (same [`Gate`], same trust rule), and `/proc/net/dev` costs a third of
/// `/proc/net/snmp` to read. It is the only proof read while it holds; when it moved (chatter,
/// pings) PassiveOpens is read and decides.
pub struct DeviceTier {
    rx: RxPackets,
    links: LinkWatch,
    /// What the last link dump found; `None`: not classified since the last link event.
    class: Option<Class>,
    pub gate: Gate,
}

impl DeviceTier {
    /// Opened in the namespace; classified at the first sample.
    pub fn new(rx: RxPackets, links: LinkWatch) -> Self {
        DeviceTier {
            rx,
            links,
            class: None,
            gate: Gate::default(),
        }
    }

    /// A link event: the devices must be classified again before their counters prove anything.
    fn changed(&mut self) {
        self.class = None;
        self.gate = Gate::default();
    }

    /// The received packets now, when every device counts live; `None` otherwise (the
    /// PassiveOpens tier decides alone). Classifies the devices first if a link event came.
    fn read(&mut self) -> Option<u64> {
        if self.class.is_none() {
            // A dump interrupted by a change leaves its rest (or the event) on the socket, which
            // brings the next sample back here; one that fails waits for the next event.
            self.class = Some(match self.links.classify() {
                Ok(Some(c)) => c,
                _ => Class::Unverified,
            });
        }
        let Some(Class::Live(names)) = self.class else {
            return None;
        };
        let now = self.rx.read().ok()?;
        if now.names != names {
            // A device came or went and its event is still on the way.
            self.changed();
            return None;
        }
        Some(now.rx_packets)
    }

    /// For [`DEBUG_ENV`]: whether the devices' counters are a proof.
    fn state(&self) -> &'static str {
        match self.class {
            Some(Class::Live(_)) => "devices count live",
            Some(Class::Unverified) => {
                "a device of a kind not verified to count live, or a qdisc that can hold a filter past the counts (or no link dump)"
            }
            None => "devices not classified",
        }
    }
}

/// Every this many samples all families are dumped (at the first dump after, when the gate let
/// the sample pass), so a first IPv6 (or IPv4) listener is sampled within a second of its
/// first connection at the default period.
pub const FULL_EVERY: u64 = 10;

/// The sampler's namespaces; the report thread adds and removes entries when `--all-netns`
/// finds namespaces coming and going.
pub type Targets = Arc<Mutex<Vec<Target>>>;

pub struct Sampler {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// Kept to say the counts at exit under [`DEBUG_ENV`].
    targets: Targets,
}

impl Sampler {
    /// Starts sampling `targets` every `every`.
    pub fn start(
        targets: Targets,
        every: Duration,
        peaks: Arc<Mutex<Peaks>>,
    ) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let sampled = targets.clone();
        let thread = std::thread::Builder::new()
            .name("acceptq-sampler".into())
            .spawn(move || {
                let mut records: Vec<Record> = Vec::with_capacity(1024);
                let mut next = Instant::now() + every;
                while !flag.load(Ordering::Relaxed) {
                    let now = Instant::now();
                    if next > now {
                        std::thread::park_timeout(next - now);
                        continue;
                    }
                    // After a stall, skip the missed ticks instead of sampling in a burst.
                    while next <= now {
                        next += every;
                    }
                    let Ok(mut targets) = sampled.lock() else {
                        return;
                    };
                    sample_once(&mut targets, &mut records, &peaks);
                }
            })?;
        Ok(Sampler {
            stop,
            thread: Some(thread),
            targets,
        })
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
        if std::env::var_os(DEBUG_ENV).is_some_and(|v| !v.is_empty() && v != "0") {
            if let Ok(targets) = self.targets.lock() {
                for t in targets.iter() {
                    eprintln!("D! [acceptq] {}", counts(t));
                }
            }
        }
    }
}

/// What [`DEBUG_ENV`] says of one namespace: its samples, its dumps, and of the samples let
/// pass, how many on received packets alone (the rest on PassiveOpens).
fn counts(t: &Target) -> String {
    let gate = match t.passive_opens {
        Some(_) => "gated",
        None => "no gate",
    };
    let devices = t
        .devices
        .as_ref()
        .map_or("no device tier", DeviceTier::state);
    format!(
        "sampler: netns {}: {} samples, {} dumps, {} passed on received packets, {} on PassiveOpens; {devices} ({gate})",
        t.name,
        t.samples,
        t.dumps,
        t.passed_on_devices,
        t.samples - t.dumps - t.passed_on_devices
    )
}

/// What one sample of a namespace did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sampled {
    /// `records` hold its listeners.
    Dumped,
    /// The gate proved every queue still empty: nothing to record but the sample itself.
    Skipped,
}

/// Samples one namespace: reads its PassiveOpens and, unless the gate lets it pass, dumps its
/// listeners into `records`, skipping families known to be empty except every [`FULL_EVERY`]
/// samples and whenever the dump could settle the gate.
///
/// Two tiers, each sound alone: received packets first (no PassiveOpens read when they prove
/// it), then PassiveOpens. A tier's [`Gate`] learns only from a reading taken just before a
/// dump, or just before PassiveOpens proved every queue still empty, which is what a dump
/// finding them empty would have shown: so the devices' gate settles while PassiveOpens lets
/// the samples pass, and takes over from it.
fn sample_target(t: &mut Target, records: &mut Vec<Record>) -> Result<Sampled, DiagError> {
    t.samples += 1;
    let rx = t.devices.as_mut().and_then(DeviceTier::read);
    let counter = &mut t.passive_opens;
    let (pass, now) = two_tiers(t.devices.as_mut().map(|d| &mut d.gate), rx, &t.gate, || {
        counter.as_mut().and_then(|p| p.read().ok())
    });
    if let Some(pass) = pass {
        if pass == Pass::Devices {
            t.passed_on_devices += 1;
        }
        t.since_whole = t.since_whole.saturating_add(1);
        return Ok(Sampled::Skipped);
    }
    records.clear();
    let whole = t.since_whole >= FULL_EVERY
        || t.gate.wants_whole(now)
        || t.devices.as_ref().is_some_and(|d| d.gate.wants_whole(rx));
    t.since_whole = if whole { 1 } else { t.since_whole + 1 };
    t.dumps += 1;
    for (i, family) in FAMILIES.into_iter().enumerate() {
        if t.empty[i] && !whole {
            continue;
        }
        let before = records.len();
        if let Err(e) = t.sock.append_family(family, STATE_LISTEN, false, records) {
            t.gate.failed(now);
            if let Some(d) = &mut t.devices {
                d.gate.failed(rx);
            }
            return Err(e);
        }
        t.empty[i] = records.len() == before;
    }
    let all_empty = records.iter().all(|r| r.rqueue == 0);
    t.gate.dumped(now, whole, all_empty);
    if let Some(d) = &mut t.devices {
        d.gate.dumped(rx, whole, all_empty);
    }
    Ok(Sampled::Dumped)
}

/// The proof that let a sample pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pass {
    Devices,
    PassiveOpens,
}

/// The two tiers' decision from the devices' gate (`None`: no device tier) and their received
/// packets `rx`, then PassiveOpens' gate and the counter, read by `read` only when the devices
/// prove nothing. A pass on PassiveOpens is what a dump finding every queue empty would have
/// shown, so the devices' gate learns from it. Also gives the counter read (`None`: not read,
/// or unreadable), for the dump that follows when neither proves anything.
fn two_tiers(
    devices: Option<&mut Gate>,
    rx: Option<u64>,
    passive_opens: &Gate,
    read: impl FnOnce() -> Option<u64>,
) -> (Option<Pass>, Option<u64>) {
    if devices.as_deref().is_some_and(|g| g.may_skip(rx)) {
        return (Some(Pass::Devices), None);
    }
    let now = read();
    if !passive_opens.may_skip(now) {
        return (None, now);
    }
    if let Some(g) = devices {
        g.dumped(rx, true, true);
    }
    (Some(Pass::PassiveOpens), now)
}

/// Marks the namespaces whose devices changed since the last sample: one `epoll_wait` that
/// does not wait, for all of them.
fn link_events(targets: &mut [Target]) {
    let Ok(events) = LinkEvents::get() else {
        return;
    };
    let rounds = targets.len() / MAX_EVENTS + 1;
    each_ready(
        |out| events.ready(out),
        rounds,
        |fd| {
            for d in targets.iter_mut().filter_map(|t| t.devices.as_mut()) {
                if d.links.fd() == fd {
                    d.changed();
                }
            }
        },
    );
}

/// Gives `each` every descriptor `ready` reports, asking again while a call fills its array, up
/// to `rounds` calls: more than [`MAX_EVENTS`] namespaces can change in one period, and one
/// left for the next sample would be let pass on the devices it had before. (Epoll reports a
/// socket still readable again after the others, so `rounds` calls cover that many arrays.)
fn each_ready(
    mut ready: impl FnMut(&mut [RawFd; MAX_EVENTS]) -> usize,
    rounds: usize,
    mut each: impl FnMut(RawFd),
) {
    let mut out = [0; MAX_EVENTS];
    for _ in 0..rounds {
        let n = ready(&mut out);
        out[..n].iter().for_each(|&fd| each(fd));
        if n < MAX_EVENTS {
            return;
        }
    }
}

/// One sample of every namespace: dump outside the peaks lock, record under it. A namespace
/// the gate let pass counts one sample in which none of its queues was full, with no work per
/// listener: its peaks stand.
pub fn sample_once(targets: &mut [Target], records: &mut Vec<Record>, peaks: &Mutex<Peaks>) {
    if targets.iter().any(|t| t.devices.is_some()) {
        link_events(targets);
    }
    let mut first = true;
    for t in targets.iter_mut() {
        let sampled = match sample_target(t, records) {
            Ok(s) => s,
            Err(e) => {
                // Said once per failure streak, and nothing formatted while it lasts.
                if !t.failing {
                    t.failing = true;
                    t.news = Some(format!(
                        "sampler: netns {}: {e}; peaks come from reports only until it recovers",
                        t.name
                    ));
                }
                continue;
            }
        };
        t.failing = false;
        let Ok(mut p) = peaks.lock() else { return };
        p.count_round(t.id);
        if sampled == Sampled::Skipped {
            continue;
        }
        if first {
            p.begin_sample();
            first = false;
        }
        for r in records.iter() {
            p.observe(t.id, r.endpoint(), r.inode, r.rqueue, Some(r.wqueue));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_skips_only_after_a_trusted_whole_dump_of_empty_queues() {
        let mut g = Gate::default();
        assert!(!g.may_skip(Some(5)), "never dumped");
        g.dumped(Some(5), true, true);
        assert!(!g.may_skip(Some(5)), "first reading: not trusted yet");
        assert!(g.wants_whole(Some(5)));
        g.dumped(Some(5), true, true);
        assert!(g.may_skip(Some(5)));
        assert!(!g.may_skip(Some(6)), "a child was created");
        assert!(!g.may_skip(Some(4)), "backwards: a namespace recreated");
        assert!(!g.may_skip(None), "unreadable");
        // A move: the dump right after it is not trusted, the next one is.
        g.dumped(Some(9), true, true);
        assert!(!g.may_skip(Some(9)));
        g.dumped(Some(9), true, true);
        assert!(g.may_skip(Some(9)));
        // A queue not empty at the dump: no skip while it lasts, counter still or not, and no
        // whole dump asked until one finds every queue empty again.
        g.dumped(Some(9), true, false);
        assert!(!g.may_skip(Some(9)) && !g.wants_whole(Some(9)));
        g.dumped(Some(9), false, true);
        assert!(!g.may_skip(Some(9)) && g.wants_whole(Some(9)));
        // A dump that left a family out proves nothing for that family.
        g.dumped(Some(9), false, true);
        assert!(!g.may_skip(Some(9)));
        g.dumped(Some(9), true, true);
        assert!(g.may_skip(Some(9)));
        g.failed(Some(9));
        assert!(!g.may_skip(Some(9)));
        // Without the counter: never.
        let mut blind = Gate::default();
        for _ in 0..3 {
            blind.dumped(None, true, true);
            assert!(!blind.may_skip(None));
        }
    }

    #[test]
    fn every_namespace_whose_devices_changed_is_marked_though_more_than_one_array_of_events_came() {
        // 150 sockets readable; epoll hands them 64 at a time.
        let mut pending: Vec<RawFd> = (1000..1150).collect();
        let mut seen = Vec::new();
        each_ready(
            |out| {
                let n = pending.len().min(MAX_EVENTS);
                for (o, fd) in out.iter_mut().zip(pending.drain(..n)) {
                    *o = fd;
                }
                n
            },
            150 / MAX_EVENTS + 1,
            |fd| seen.push(fd),
        );
        assert_eq!(seen, (1000..1150).collect::<Vec<_>>());
        // A level-triggered set that never empties: bounded by the rounds asked.
        let mut calls = 0;
        each_ready(
            |_| {
                calls += 1;
                MAX_EVENTS
            },
            3,
            |_| {},
        );
        assert_eq!(calls, 3);
    }

    /// Both gates settled: the devices at 100 received packets, PassiveOpens at 7.
    fn settled() -> (Gate, Gate) {
        let (mut devices, mut passive) = (Gate::default(), Gate::default());
        for _ in 0..2 {
            devices.dumped(Some(100), true, true);
            passive.dumped(Some(7), true, true);
        }
        (devices, passive)
    }

    #[test]
    fn received_packets_still_pass_without_reading_passive_opens() {
        let (mut devices, passive) = settled();
        let got = two_tiers(Some(&mut devices), Some(100), &passive, || {
            panic!("PassiveOpens read although the devices proved it")
        });
        assert_eq!(got, (Some(Pass::Devices), None));
    }

    #[test]
    fn chatter_passes_on_passive_opens_and_the_devices_take_over_once_quiet_for_a_period() {
        let (mut devices, passive) = settled();
        // Packets without a connection: PassiveOpens decides.
        let got = two_tiers(Some(&mut devices), Some(130), &passive, || Some(7));
        assert_eq!(got, (Some(Pass::PassiveOpens), Some(7)));
        // Quiet since, but the devices' reading of 130 is not trusted yet: PassiveOpens again.
        let got = two_tiers(Some(&mut devices), Some(130), &passive, || Some(7));
        assert_eq!(got.0, Some(Pass::PassiveOpens));
        // Trusted now: the devices alone.
        let got = two_tiers(Some(&mut devices), Some(130), &passive, || panic!("read"));
        assert_eq!(got.0, Some(Pass::Devices));
    }

    #[test]
    fn a_connection_moves_both_and_the_sample_dumps() {
        let (mut devices, passive) = settled();
        let got = two_tiers(Some(&mut devices), Some(103), &passive, || Some(8));
        assert_eq!(got, (None, Some(8)));
        // Devices not classified (or of a kind not verified): PassiveOpens alone decides.
        let (_, passive) = settled();
        assert_eq!(
            two_tiers(None, None, &passive, || Some(7)).0,
            Some(Pass::PassiveOpens)
        );
        assert_eq!(two_tiers(None, None, &passive, || Some(8)).0, None);
        // A device tier without a reading proves nothing, and learns nothing it could trust.
        let (mut devices, passive) = settled();
        assert_eq!(
            two_tiers(Some(&mut devices), None, &passive, || Some(7)).0,
            Some(Pass::PassiveOpens)
        );
        assert!(!devices.may_skip(Some(100)));
    }
}
