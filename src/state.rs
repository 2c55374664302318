//! What carries over between reports: previous counters (for deltas) and the peaks the sampler
//! saw since the last report. Plain data and pure functions; no I/O.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::net::IpAddr;

use crate::snapshot::Endpoint;

/// The increase of a cumulative u64 counter, or `None` when there is no previous value or the
/// counter went backwards (a reset: the namespace was recreated). Never negative, never invented.
pub fn delta(prev: Option<u64>, cur: Option<u64>) -> Option<u64> {
    match (prev, cur) {
        (Some(p), Some(c)) if c >= p => Some(c - p),
        _ => None,
    }
}

/// The increase of the kernel's 32-bit `sk_drops` of one socket (same inode, so it can only
/// grow): a smaller value means it wrapped past 2^32.
pub fn delta_u32(prev: u32, cur: u32) -> u64 {
    u64::from(cur.wrapping_sub(prev))
}

/// A table keyed by what the kernel reports (namespace ids, inodes, addresses, ports): a report
/// and every sample look up each listener, and std's SipHash costs more than the rest of that
/// lookup. Its resistance to chosen keys buys nothing much here: the keys are sockets of the
/// host, and a namespace's user who could pick colliding ones can only slow a lookup.
pub type Map<K, V> = HashMap<K, V, BuildHasherDefault<WordHasher>>;
pub type Set<K> = HashSet<K, BuildHasherDefault<WordHasher>>;

/// A multiply-rotate hash over machine words (the scheme of rustc's FxHasher).
#[derive(Default)]
pub struct WordHasher(u64);

impl WordHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for WordHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().unwrap_or_default()));
        }
        let mut last = [0u8; 8];
        let rest = chunks.remainder();
        if !rest.is_empty() {
            last[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(last));
        }
    }

    fn write_u8(&mut self, v: u8) {
        self.add(u64::from(v));
    }

    fn write_u16(&mut self, v: u16) {
        self.add(u64::from(v));
    }

    fn write_u32(&mut self, v: u32) {
        self.add(u64::from(v));
    }

    fn write_u64(&mut self, v: u64) {
        self.add(v);
    }

    fn write_u128(&mut self, v: u128) {
        self.add(v as u64);
        self.add((v >> 64) as u64);
    }

    fn write_usize(&mut self, v: usize) {
        self.add(v as u64);
    }

    /// A product's high bits mix every input bit, its low ones only the last words' low bits,
    /// and hashbrown takes the bucket from the low bits: fold the high ones down (MurmurHash3's
    /// finalizer).
    fn finish(&self) -> u64 {
        let h = (self.0 ^ (self.0 >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^ (h >> 33)
    }
}

/// A listener row's identity: namespace index, address, port, bound device, and with
/// `--per-socket` the socket's rank by inode within its SO_REUSEPORT group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RowKey {
    pub ns: NsId,
    pub addr: IpAddr,
    pub port: u16,
    /// Interface index the row's sockets are bound to; 0: none.
    pub ifindex: u32,
    pub socket: Option<u16>,
}

impl RowKey {
    pub fn endpoint(&self) -> Endpoint {
        Endpoint {
            addr: self.addr,
            port: self.port,
            ifindex: self.ifindex,
        }
    }
}

/// Counters of the previous report. Rebuilt whole every report, so rows and sockets that
/// vanished leave nothing behind.
#[derive(Default, Debug)]
pub struct Previous {
    /// (namespace, inode) → sk_drops.
    pub socket_drops: Map<(NsId, u32), u32>,
    /// Every row of the previous report, filtered or left out by `--max-listeners` too: a
    /// socket new in one of these was created since.
    pub rows: Set<RowKey>,
    /// Namespace → TcpExt counters. By id, not name: a namespace deleted and re-created under
    /// the same name must not get a delta against the old one.
    pub counters: Map<NsId, crate::source::netstat::TcpExt>,
}

impl Previous {
    /// An empty `Previous` with room for a report of `sockets` listening sockets in
    /// `namespaces` namespaces: its counters go in without the tables growing row by row.
    pub fn with_capacity(sockets: usize, namespaces: usize) -> Previous {
        Previous {
            socket_drops: Map::with_capacity_and_hasher(sockets, Default::default()),
            rows: Set::with_capacity_and_hasher(sockets, Default::default()),
            counters: Map::with_capacity_and_hasher(namespaces, Default::default()),
        }
    }

    /// The drops a row gained since the previous report: the growth of each socket that
    /// persisted, plus the whole `drops` of each socket created since. A socket is new when the
    /// previous report recorded no drops for it; it was created in the interval only if its row
    /// was there at the previous report (whose `socket_drops` holds every socket of every row,
    /// shown or not), so all its drops fell in the interval. `None` for a row that is new, one
    /// with no socket that persisted (a replaced listener: the new socket's drops may predate
    /// anything we saw, as on a namespace first watched), or whose drops are unknown now.
    pub fn row_drops_delta(
        &self,
        key: &RowKey,
        sockets: impl IntoIterator<Item = (u32, Option<u32>)>,
    ) -> Option<u64> {
        if !self.rows.contains(key) {
            return None;
        }
        let mut sum = 0u64;
        let mut persisted = false;
        for (inode, drops) in sockets {
            let drops = drops?;
            match self.socket_drops.get(&(key.ns, inode)) {
                Some(prev) => {
                    persisted = true;
                    sum += delta_u32(*prev, drops);
                }
                None => sum += u64::from(drops),
            }
        }
        persisted.then_some(sum)
    }
}

/// Identifies a watched namespace for as long as it is watched (positions shift when one comes
/// or goes, ids do not).
pub type NsId = u32;

/// Peak tracking for one socket over a report interval. Only samples in which the socket had
/// connections waiting are recorded: an empty queue raises no peak and is never full.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SocketPeak {
    pub max_depth: u32,
    /// Samples in which the queue was full (depth > limit, as `sk_acceptq_is_full`).
    pub full: u32,
}

/// Peak of a listener's summed depth (all its SO_REUSEPORT sockets in one sample).
#[derive(Clone, Copy, Debug, Default)]
struct ListenerPeak {
    sample: u64,
    current: u32,
    max: u32,
}

/// Beyond this many busy sockets in one interval (listener churn), new ones are not tracked:
/// memory stays bounded and the report still has their current depth.
pub const MAX_TRACKED: usize = 65_536;

/// Peaks since the last report, fed by every sample (the sampler's and the report's own).
#[derive(Default, Debug)]
pub struct Peaks {
    sample: u64,
    /// Samples taken of each namespace: the denominator of its sockets' full ratios.
    rounds: Map<NsId, u32>,
    sockets: Map<(NsId, u32), SocketPeak>,
    listeners: Map<(NsId, Endpoint), ListenerPeak>,
}

impl Peaks {
    /// Starts a new sample: summed depths restart from zero.
    pub fn begin_sample(&mut self) {
        self.sample += 1;
    }

    /// Counts one complete reading of namespace `ns` in this interval.
    pub fn count_round(&mut self, ns: NsId) {
        *self.rounds.entry(ns).or_default() += 1;
    }

    /// Records one socket of the current sample. Most listeners are idle most of the time, so
    /// an empty queue costs nothing here: no lookup, no hashing. Allocates only when a busy
    /// socket or listener is first seen in this interval.
    pub fn observe(
        &mut self,
        ns: NsId,
        endpoint: Endpoint,
        inode: u32,
        depth: u32,
        limit: Option<u32>,
    ) {
        if depth == 0 {
            return;
        }
        let room = self.sockets.len() < MAX_TRACKED;
        if let Some(s) = lookup(&mut self.sockets, (ns, inode), room) {
            s.max_depth = s.max_depth.max(depth);
            if limit.is_some_and(|l| depth > l) {
                s.full += 1;
            }
        }
        let room = self.listeners.len() < MAX_TRACKED;
        if let Some(l) = lookup(&mut self.listeners, (ns, endpoint), room) {
            if l.sample != self.sample {
                l.sample = self.sample;
                l.current = 0;
            }
            l.current = l.current.saturating_add(depth);
            l.max = l.max.max(l.current);
        }
    }

    /// The deepest queue a socket had in this interval (0 if never seen busy).
    pub fn socket_max(&self, ns: NsId, inode: u32) -> u32 {
        self.sockets.get(&(ns, inode)).map_or(0, |s| s.max_depth)
    }

    /// Share of this interval's samples of `ns` in which the socket's queue was full; `None`
    /// before any sample. A socket that appeared mid-interval is measured against every sample.
    pub fn full_ratio(&self, ns: NsId, inode: u32) -> Option<f64> {
        let rounds = *self.rounds.get(&ns)?;
        let full = self.sockets.get(&(ns, inode)).map_or(0, |s| s.full);
        (rounds > 0).then(|| f64::from(full.min(rounds)) / f64::from(rounds))
    }

    pub fn rounds(&self, ns: NsId) -> u32 {
        self.rounds.get(&ns).copied().unwrap_or(0)
    }

    /// The peak of a listener's summed depth (0 if never seen busy), over every socket it had
    /// in this interval, closed ones included.
    pub fn listener_max(&self, ns: NsId, endpoint: Endpoint) -> u32 {
        self.listeners.get(&(ns, endpoint)).map_or(0, |l| l.max)
    }

    /// The peak of a row made of `members` (its sockets now: inode and limit), summed over an
    /// SO_REUSEPORT group when `summed` names its endpoint. A peak belongs to the sockets that
    /// made it: the row's never exceeds the sum of its current sockets' own peaks (a socket
    /// closed or replaced takes its share with it), nor what they can hold (limit + 1 each, so a
    /// socket listening again with a smaller backlog does not carry its old peak either).
    pub fn row_max(
        &self,
        ns: NsId,
        summed: Option<Endpoint>,
        members: impl Iterator<Item = (u32, Option<u32>)>,
    ) -> u64 {
        let mut own = 0u64;
        let mut capacity = Some(0u64);
        for (inode, limit) in members {
            own += u64::from(self.socket_max(ns, inode));
            capacity = capacity.zip(limit).map(|(c, l)| c + u64::from(l) + 1);
        }
        let mut peak = own;
        if let Some(endpoint) = summed {
            // The highest sum seen in one sample: below the sum of the members' own peaks
            // when they peaked at different moments.
            peak = peak.min(u64::from(self.listener_max(ns, endpoint)));
        }
        capacity.map_or(peak, |c| peak.min(c))
    }

    /// Moves everything recorded into `into` (whose old content is dropped) and leaves `self`
    /// empty. Both tables keep their capacity, so the sampler does not allocate again every
    /// interval, unless a burst of churn left one far larger than what is now in use.
    pub fn take_into(&mut self, into: &mut Peaks) {
        std::mem::swap(self, into);
        self.sample = into.sample;
        self.rounds.clear();
        self.sockets.clear();
        self.listeners.clear();
        shrink(&mut self.sockets, into.sockets.len());
        shrink(&mut self.listeners, into.listeners.len());
    }

    /// Busy sockets tracked in this interval.
    pub fn tracked(&self) -> usize {
        self.sockets.len()
    }
}

fn lookup<K: Hash + Eq, V: Default>(map: &mut Map<K, V>, key: K, room: bool) -> Option<&mut V> {
    if room {
        Some(map.entry(key).or_default())
    } else {
        map.get_mut(&key)
    }
}

/// Gives back the memory of a table that a burst inflated far past the `in_use` load of the
/// interval just handed over.
fn shrink<K: Hash + Eq, V>(map: &mut Map<K, V>, in_use: usize) {
    let keep = in_use.max(1024);
    if map.capacity() > 4 * keep {
        map.shrink_to(keep);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const A: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    /// Listeners differ in a few low bits of a late word (the port, the inode): the bucket
    /// hashbrown takes from the hash's low bits must still differ.
    #[test]
    fn word_hasher_spreads_close_keys_over_the_low_bits() {
        use std::hash::BuildHasher;
        let hasher = BuildHasherDefault::<WordHasher>::default();
        let low = |h: u64| h & 1023;
        let inodes: HashSet<u64> = (0..1000u32)
            .map(|i| low(hasher.hash_one((7u64, 40_000 + i))))
            .collect();
        let rows: HashSet<u64> = (0..1000u16)
            .map(|port| {
                low(hasher.hash_one(RowKey {
                    ns: 0,
                    addr: A,
                    port: 20_000 + port,
                    ifindex: 0,
                    socket: None,
                }))
            })
            .collect();
        // Random hashes fill about 632 of 1024 buckets with 1000 keys.
        assert!(inodes.len() > 550, "{} buckets", inodes.len());
        assert!(rows.len() > 550, "{} buckets", rows.len());
    }

    fn ep(port: u16) -> Endpoint {
        Endpoint {
            addr: A,
            port,
            ifindex: 0,
        }
    }

    #[test]
    fn delta_needs_a_previous_value_and_never_goes_negative() {
        assert_eq!(delta(None, Some(5)), None);
        assert_eq!(delta(Some(5), None), None);
        assert_eq!(delta(Some(5), Some(3)), None);
        assert_eq!(delta(Some(5), Some(5)), Some(0));
        assert_eq!(delta(Some(u64::MAX - 1), Some(u64::MAX)), Some(1));
    }

    #[test]
    fn drops_wrap_at_32_bits() {
        assert_eq!(delta_u32(u32::MAX - 2, 4), 7);
        assert_eq!(delta_u32(10, 10), 0);
    }

    fn key() -> RowKey {
        RowKey {
            ns: 0,
            addr: A,
            port: 80,
            ifindex: 0,
            socket: None,
        }
    }

    #[test]
    fn row_delta_counts_sockets_that_persisted_and_those_created_since() {
        let mut prev = Previous::default();
        prev.rows.insert(key());
        prev.socket_drops.insert((0, 1), 10);
        prev.socket_drops.insert((0, 2), u32::MAX);
        assert_eq!(
            prev.row_drops_delta(&key(), [(1, Some(15)), (2, Some(1))]),
            Some(5 + 2)
        );
        // A socket joined the group: created since the previous report, so all its drops are.
        assert_eq!(
            prev.row_drops_delta(&key(), [(1, Some(15)), (2, Some(1)), (3, Some(4))]),
            Some(5 + 2 + 4)
        );
        // A socket left it: the others' growth stands.
        assert_eq!(prev.row_drops_delta(&key(), [(2, Some(3))]), Some(4));
        // Replaced: no socket persisted, so nothing says when the new one's drops happened.
        assert_eq!(prev.row_drops_delta(&key(), [(3, Some(0))]), None);
        // New row: its sockets' drops may predate the previous report.
        let other = RowKey { port: 81, ..key() };
        assert_eq!(
            prev.row_drops_delta(&other, [(1, Some(15)), (2, Some(1))]),
            None
        );
        // Drops unknown now.
        assert_eq!(
            prev.row_drops_delta(&key(), [(1, None), (2, Some(1))]),
            None
        );
    }

    #[test]
    fn peaks_sum_sockets_within_a_sample_and_track_full_share() {
        let mut p = Peaks::default();
        for (d1, d2) in [(1, 2), (5, 0), (3, 3), (0, 0)] {
            p.begin_sample();
            p.count_round(0);
            p.observe(0, ep(80), 1, d1, Some(4));
            p.observe(0, ep(80), 2, d2, Some(2));
        }
        assert_eq!(p.listener_max(0, ep(80)), 6);
        assert_eq!(p.socket_max(0, 1), 5);
        assert_eq!(p.full_ratio(0, 1), Some(1.0 / 4.0));
        assert_eq!(p.full_ratio(0, 2), Some(1.0 / 4.0));
        // Never busy: peak 0, ratio 0 over the samples taken; no sample of the namespace: none.
        assert_eq!((p.socket_max(0, 9), p.full_ratio(0, 9)), (0, Some(0.0)));
        assert_eq!(p.full_ratio(7, 1), None);
        assert_eq!(p.tracked(), 2, "idle samples leave no entry");
        let mut taken = Peaks::default();
        p.take_into(&mut taken);
        assert_eq!(taken.listener_max(0, ep(80)), 6);
        assert_eq!(taken.rounds(0), 4);
        assert_eq!((p.listener_max(0, ep(80)), p.rounds(0)), (0, 0));
        // A new sample after the swap starts from zero, not from the old sum.
        p.begin_sample();
        p.observe(0, ep(80), 1, 1, Some(4));
        assert_eq!(p.listener_max(0, ep(80)), 1);
    }

    #[test]
    fn a_row_peak_never_exceeds_what_its_current_sockets_reached_or_hold() {
        let mut p = Peaks::default();
        // listen(16) filled to 17, then closed and replaced by listen(1) holding 2.
        p.begin_sample();
        p.observe(0, ep(80), 1, 17, Some(16));
        p.begin_sample();
        p.observe(0, ep(80), 2, 2, Some(1));
        assert_eq!(p.listener_max(0, ep(80)), 17, "the endpoint saw 17");
        assert_eq!(p.row_max(0, Some(ep(80)), [(2, Some(1))].into_iter()), 2);
        // A group of three that shrank to one: only the survivor's own peak is left.
        p.begin_sample();
        for inode in [10, 11, 12] {
            p.observe(0, ep(81), inode, 5, Some(4));
        }
        assert_eq!(p.row_max(0, Some(ep(81)), [(10, Some(4))].into_iter()), 5);
        // Members that peaked at different moments: the highest sum of one sample.
        p.begin_sample();
        p.observe(0, ep(82), 20, 3, Some(8));
        p.begin_sample();
        p.observe(0, ep(82), 21, 4, Some(8));
        let both = [(20, Some(8)), (21, Some(8))];
        assert_eq!(p.row_max(0, Some(ep(82)), both.into_iter()), 4);
        // The same socket listening again with a smaller backlog: capped at what it holds now.
        assert_eq!(p.row_max(0, None, [(1, Some(3))].into_iter()), 4);
        // Unknown limits (the /proc fallback) leave the peak uncapped.
        assert_eq!(p.row_max(0, None, [(1, None)].into_iter()), 17);
    }

    #[test]
    fn tracking_is_bounded_under_churn() {
        let mut p = Peaks::default();
        p.begin_sample();
        for inode in 0..(MAX_TRACKED as u32 + 1000) {
            p.observe(0, ep((inode % 60_000) as u16), inode, 1, Some(1));
        }
        assert_eq!(p.tracked(), MAX_TRACKED);
        // Handed over against a quiet interval, the table that held the burst comes back
        // empty and small.
        let mut quiet = Peaks::default();
        quiet.take_into(&mut p);
        assert!(
            quiet.sockets.capacity() <= 4096,
            "capacity {} kept",
            quiet.sockets.capacity()
        );
    }

    #[test]
    fn steady_load_keeps_its_capacity() {
        let mut p = Peaks::default();
        let mut other = Peaks::default();
        for _ in 0..3 {
            p.begin_sample();
            for inode in 0..5000 {
                p.observe(0, ep(1), inode, 1, Some(8));
            }
            p.take_into(&mut other);
        }
        // 5000 busy sockets every interval: the emptied table is not shrunk below that.
        assert!(
            p.sockets.capacity() >= 5000,
            "capacity {}",
            p.sockets.capacity()
        );
    }
}
