//! Turns one reading (per-namespace snapshots, the interval's peaks, the owner cache) plus the
//! previous report's counters into metrics.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::filter::Filter;
#[cfg(test)]
use crate::metric::Metric;
use crate::metric::{push_address, Decimal, Metrics, Value, LISTENER, NETNS};
use crate::snapshot::{Endpoint, NetnsSnapshot, Socket};
use crate::source::ifname;
use crate::source::owners::{Owner, OwnerCache};
use crate::state::{delta, NsId, Peaks, Previous, RowKey};

pub struct ReportOptions {
    pub per_socket: bool,
    pub max_listeners: usize,
    /// Add the `netns` tag (more than one namespace watched).
    pub netns_tag: bool,
    /// Add the `unit` tag (`--unit`).
    pub unit_tag: bool,
}

/// A namespace's reading, with the name the `netns` tag uses.
pub struct NsReading<'a> {
    /// Stable for the namespace's whole watch, unlike its position: keys deltas and peaks.
    pub id: NsId,
    pub name: &'a str,
    /// The `container` tag: the container id of the namespace's application process.
    pub container: Option<&'a str>,
    /// The `pod` tag: on Kubernetes, the pod the namespace belongs to.
    pub pod: Option<&'a str>,
    pub snap: &'a NetnsSnapshot,
}

/// One `acceptq_listener` row before it becomes a metric.
struct Row<'a> {
    key: RowKey,
    /// Position of the row's namespace in this report's readings.
    pos: usize,
    /// The row's sockets, sorted by inode: a run of the namespace's sorted sockets.
    sockets: &'a [&'a Socket],
    depth: u64,
    depth_max: u64,
    limit: Option<u64>,
    full_ratio: Option<f64>,
    drops: Option<u64>,
    drops_delta: Option<u64>,
    syn: Option<u64>,
    /// Longest wait (ms) of a connection now in the queue; with `--per-socket` the group's.
    wait_ms: Option<u32>,
    owner: Option<&'a Owner>,
    /// The `interface` tag: the device the row's sockets are bound to; `None` when unbound.
    interface: Option<Cow<'a, str>>,
}

#[derive(Default)]
pub struct Built {
    pub metrics: Metrics,
    /// Rows left out by `--max-listeners`.
    pub omitted: usize,
}

/// Everything a report is built from besides the readings and the previous counters.
pub struct Context<'a> {
    /// The interval's peaks (the sampler's and the report's own reading).
    pub peaks: &'a Peaks,
    pub owners: &'a OwnerCache,
    pub filter: &'a Filter,
    pub opts: &'a ReportOptions,
    /// Nanoseconds since the Unix epoch, the same on every metric of the report.
    pub timestamp: i64,
    /// No report follows (`--once`): the counters a next report's deltas need are not kept.
    pub last: bool,
}

/// Builds the report's metrics and replaces `prev` with this report's counters: rows from the
/// readings, the `--max-listeners` cut, then metrics.
pub fn build(readings: &[NsReading], ctx: &Context, prev: &mut Previous) -> Built {
    let mut built = Built::default();
    build_into(readings, ctx, prev, &mut built);
    built
}

/// [`build`] into the metrics of an earlier report, reusing their tags' text and their field
/// lists: a long-running reporter then allocates nothing per row once warmed up, only a few
/// buffers per report.
pub fn build_into(readings: &[NsReading], ctx: &Context, prev: &mut Previous, built: &mut Built) {
    let sockets = readings.iter().map(|r| r.snap.sockets.len()).sum();
    let mut next = match ctx.last {
        true => Previous::default(),
        false => Previous::with_capacity(sockets, readings.len()),
    };
    let sorted: Vec<Vec<&Socket>> = readings.iter().map(|r| by_listener(r.snap)).collect();
    let mut rows = Vec::with_capacity(sorted.iter().map(Vec::len).sum());
    for (pos, reading) in readings.iter().enumerate() {
        namespace_rows(pos, reading, &sorted[pos], ctx, prev, &mut next, &mut rows);
    }
    let mut per_ns_rows = vec![0usize; readings.len()];
    for r in &rows {
        per_ns_rows[r.pos] += 1;
    }
    let omitted_per_ns = keep_most_important(&mut rows, readings.len(), ctx.opts.max_listeners);

    let metrics = &mut built.metrics;
    metrics.clear_for(rows.len() + readings.len());
    for row in &rows {
        listener_metric(row, &readings[row.pos], ctx, metrics);
    }
    for (pos, reading) in readings.iter().enumerate() {
        let counts = (per_ns_rows[pos], omitted_per_ns[pos]);
        netns_metric(reading, prev, ctx, counts, metrics);
        if let Some(t) = reading.snap.tcpext.filter(|_| !ctx.last) {
            next.counters.insert(reading.id, t);
        }
    }
    if !ctx.last {
        *prev = next;
    }
    built.omitted = omitted_per_ns.iter().sum();
}

/// The rows of one namespace that pass the filter, appended to `rows`; every socket's counters
/// go to `next`, filtered or not, so a row's delta is right when it is shown again.
#[allow(clippy::too_many_arguments)]
fn namespace_rows<'a>(
    pos: usize,
    reading: &NsReading<'a>,
    sorted: &'a [&'a Socket],
    ctx: &Context<'a>,
    prev: &Previous,
    next: &mut Previous,
    rows: &mut Vec<Row<'a>>,
) {
    let ns = reading.id;
    let snap = reading.snap;
    let syn = snap
        .syn_queue
        .as_ref()
        .map(|c| attribute_syn(c, &snap.sockets));
    let waits = snap
        .queue_wait
        .as_ref()
        .map(|w| attribute_waits(w, &snap.sockets));
    for group in sorted.chunk_by(|a, b| a.endpoint() == b.endpoint()) {
        let endpoint = group[0].endpoint();
        let shared = Shared::of(snap, endpoint, group, syn.as_ref(), waits.as_ref());
        for s in group.iter().filter(|_| !ctx.last) {
            if let Some(d) = s.drops {
                next.socket_drops.insert((ns, s.inode), d);
            }
        }
        for (socket, members) in split(group, ctx.opts.per_socket) {
            let key = RowKey {
                ns,
                addr: endpoint.addr,
                port: endpoint.port,
                ifindex: endpoint.ifindex,
                socket,
            };
            let pairs = members.iter().map(|s| (s.inode, s.drops));
            let drops_delta = prev.row_drops_delta(&key, pairs);
            if !ctx.last {
                next.rows.insert(key);
            }
            // Each SO_REUSEPORT socket may belong to another process.
            let owner = ctx.owners.owner_of(members.iter().map(|s| s.inode));
            let row = Row {
                drops_delta,
                // The SYN queue cannot be split among a group's sockets: socket 0 has it.
                syn: shared.syn.filter(|_| socket.unwrap_or(0) == 0),
                // Nor can a queued connection be told apart among them: the group's oldest is
                // on socket 0 too.
                wait_ms: shared.wait_ms.filter(|_| socket.unwrap_or(0) == 0),
                owner,
                interface: shared.interface.clone(),
                ..measure(key, pos, members, ctx.peaks)
            };
            if ctx.filter.matches(
                &row.key.addr,
                row.interface.as_deref(),
                row.key.port,
                row.owner.map(|o| o.comm.as_str()),
            ) {
                rows.push(row);
            }
        }
    }
}

/// What every row of one listener (an SO_REUSEPORT group) shares.
struct Shared<'a> {
    /// The `interface` tag: the bound device's name; `None` when unbound.
    interface: Option<Cow<'a, str>>,
    /// Requests in the SYN queue, when it was counted.
    syn: Option<u64>,
    /// The oldest queued connection's wait in ms, when measured and the queue is not empty.
    wait_ms: Option<u32>,
}

impl<'a> Shared<'a> {
    fn of(
        snap: &'a NetnsSnapshot,
        endpoint: Endpoint,
        group: &[&Socket],
        syn: Option<&HashMap<Endpoint, u32>>,
        waits: Option<&HashMap<Endpoint, u32>>,
    ) -> Shared<'a> {
        // A device's name is borrowed; only one that has none is written out (`if:N`).
        let interface =
            (endpoint.ifindex != 0).then(|| match snap.interfaces.get(&endpoint.ifindex) {
                Some(name) => Cow::Borrowed(name.as_str()),
                None => Cow::Owned(ifname::tag(endpoint.ifindex, None)),
            });
        // Absent for an empty queue: a connection found queued after the listener was read
        // empty belongs to the next report.
        let depth: u64 = group.iter().map(|s| u64::from(s.depth)).sum();
        Shared {
            interface,
            syn: syn.map(|m| u64::from(m.get(&endpoint).copied().unwrap_or(0))),
            wait_ms: waits
                .and_then(|m| m.get(&endpoint).copied())
                .filter(|_| depth > 0),
        }
    }
}

/// One row for an SO_REUSEPORT group (sorted by inode), or with `--per-socket` one per socket,
/// each with its rank in the group.
fn split<'a>(
    group: &'a [&'a Socket],
    per_socket: bool,
) -> impl Iterator<Item = (Option<u16>, &'a [&'a Socket])> {
    let (size, ranked) = if per_socket {
        (1, true)
    } else {
        (group.len().max(1), false)
    };
    group
        .chunks(size)
        .enumerate()
        .map(move |(i, members)| (ranked.then_some(i as u16), members))
}

/// Applies `--max-listeners`: keeps the `max` rows an operator most needs to see (see `rank`),
/// in report order, and returns how many were left out of each of `namespaces`.
fn keep_most_important(rows: &mut Vec<Row>, namespaces: usize, max: usize) -> Vec<usize> {
    let mut omitted = vec![0usize; namespaces];
    if rows.len() > max {
        rows.sort_by_key(|r| std::cmp::Reverse(rank(r)));
        for r in rows.drain(max..) {
            omitted[r.pos] += 1;
        }
        rows.sort_by_key(|r| (r.pos, r.key.addr, r.key.port, r.key.ifindex, r.key.socket));
    }
    omitted
}

/// A namespace's sockets in listener order, each listener's by inode: an SO_REUSEPORT group
/// shares address, port and device, so it is one run of equal endpoints; sockets bound to
/// different devices are separate listeners even on the same address. One sort instead of a
/// map of groups: no allocation per listener.
fn by_listener(snap: &NetnsSnapshot) -> Vec<&Socket> {
    let mut sorted: Vec<&Socket> = snap.sockets.iter().collect();
    // Keys computed once each: a sort compares each element some log2(n) times.
    sorted.sort_by_cached_key(|s| (order_of(&s.addr), s.port, s.ifindex, s.inode));
    sorted
}

/// An address as a number that orders as [`IpAddr`] does (every IPv4 address before every
/// IPv6 one, each by its bits), cheaper to compare in a sort.
fn order_of(addr: &IpAddr) -> (bool, u128) {
    match addr {
        IpAddr::V4(a) => (false, u128::from(a.to_bits())),
        IpAddr::V6(a) => (true, a.to_bits()),
    }
}

/// Assigns request sockets (counted by the local address the client reached and their
/// `idiag_if`) to the listener that took the SYN: the one bound to that address, else the same
/// family's wildcard, else for IPv4 a dual-stack `[::]` listener; at each address, the listener
/// bound to the request's device before an unbound one. A request to a device-bound listener
/// carries that listener's device (IPv4 and IPv6: the request inherits `sk_bound_dev_if`);
/// an unbound IPv6 listener's request from a link-local client carries the device the SYN came
/// in on, and so falls through to the unbound listener. A request never goes to a listener
/// bound to another device: the kernel does not deliver it there.
pub fn attribute_syn(
    counts: &HashMap<Endpoint, u32>,
    listeners: &[Socket],
) -> HashMap<Endpoint, u32> {
    let endpoints = listener_endpoints(listeners);
    let mut out: HashMap<Endpoint, u32> = HashMap::new();
    for (request, &n) in counts {
        if let Some(t) = listener_for(request, &endpoints) {
            *out.entry(t).or_insert(0) += n;
        }
    }
    out
}

/// Assigns the connections waiting in accept queues (their longest wait by the local address,
/// port and `idiag_if` they carry) to their listener, keeping the longest per listener. A
/// connection was made from a request of that listener, so it goes where the request went (see
/// [`attribute_syn`]): the child inherits the listener's device, or for an IPv6 link-local
/// client of an unbound listener carries the device it came in on. Only a listener with a
/// non-empty queue can hold one: a specific listener opened after connections queued on the
/// wildcard of its port must not take them. (When both queues hold connections to the same
/// address, the dump cannot tell whose each is: the specific listener is given them.)
pub fn attribute_waits(
    waits: &HashMap<Endpoint, u32>,
    listeners: &[Socket],
) -> HashMap<Endpoint, u32> {
    let endpoints = listeners
        .iter()
        .filter(|s| s.depth > 0)
        .map(Socket::endpoint)
        .collect();
    let mut out: HashMap<Endpoint, u32> = HashMap::new();
    for (child, &ms) in waits {
        if let Some(t) = listener_for(child, &endpoints) {
            let w = out.entry(t).or_insert(0);
            *w = (*w).max(ms);
        }
    }
    out
}

fn listener_endpoints(listeners: &[Socket]) -> HashSet<Endpoint> {
    listeners.iter().map(Socket::endpoint).collect()
}

/// The listener that took a connection to `local`: the one bound to that address, else the same
/// family's wildcard, else for IPv4 a dual-stack `[::]` listener; at each address the one bound
/// to the connection's device before an unbound one. An IPv4 address may also be held by an
/// `AF_INET6` socket bound to its mapped form (`::ffff:a.b.c.d`, or `::ffff:0.0.0.0` for the
/// wildcard): the kernel's IPv4 lookup scores an `AF_INET` socket above it, so it comes second.
fn listener_for(local: &Endpoint, endpoints: &HashSet<Endpoint>) -> Option<Endpoint> {
    let port = local.port;
    let v6_any = IpAddr::V6(Ipv6Addr::UNSPECIFIED);
    let addrs: &[IpAddr] = match local.addr {
        IpAddr::V4(v4) => &[
            IpAddr::V4(v4),
            IpAddr::V6(v4.to_ipv6_mapped()),
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(Ipv4Addr::UNSPECIFIED.to_ipv6_mapped()),
            v6_any,
        ],
        IpAddr::V6(_) => &[local.addr, v6_any],
    };
    let devices = [local.ifindex, 0];
    addrs
        .iter()
        .flat_map(|&addr| {
            devices.into_iter().map(move |ifindex| Endpoint {
                addr,
                port,
                ifindex,
            })
        })
        .find(|e| endpoints.contains(e))
}

/// A row's figures from its sockets and the interval's peaks; the caller adds what comes from
/// elsewhere (deltas, SYN queue, owner, device name).
fn measure<'a>(key: RowKey, pos: usize, members: &'a [&'a Socket], peaks: &Peaks) -> Row<'a> {
    let depth: u64 = members.iter().map(|s| u64::from(s.depth)).sum();
    let limit = members
        .iter()
        .map(|s| s.limit.map(u64::from))
        .sum::<Option<u64>>();
    let drops = members
        .iter()
        .map(|s| s.drops.map(u64::from))
        .sum::<Option<u64>>();
    let summed = key.socket.is_none().then(|| key.endpoint());
    let peak = peaks.row_max(key.ns, summed, members.iter().map(|s| (s.inode, s.limit)));
    let full_ratio = if members.iter().all(|s| s.limit.is_some()) {
        members
            .iter()
            .filter_map(|s| peaks.full_ratio(key.ns, s.inode))
            .fold(None, |acc: Option<f64>, r| {
                Some(acc.map_or(r, |a| a.max(r)))
            })
    } else {
        None
    };
    Row {
        key,
        pos,
        sockets: members,
        depth,
        // The report's own reading is one of the samples, so the peak is never below `depth`.
        depth_max: peak.max(depth),
        limit,
        full_ratio,
        drops,
        drops_delta: None,
        syn: None,
        wait_ms: None,
        owner: None,
        interface: None,
    }
}

/// How `--max-listeners` orders rows, most important first: a listener dropping now outranks
/// any depth, because a full SYN queue drops with an empty accept queue; of those, the
/// most-dropping first (drops since the previous report). Without a previous report to count
/// from (`--once`, the first report, a row new since the last), a listener counts as dropping
/// now when the kernel shows it full (see [`seen_full`]). Then the accept queue's peak, the
/// time it was full, the SYN queue, the depth now, and last the drops of the past (`drops`
/// since boot).
fn rank(r: &Row) -> (bool, u64, u64, u64, u64, u64, u64) {
    let dropping = match r.drops_delta {
        Some(d) => d > 0,
        None => seen_full(r),
    };
    (
        dropping,
        r.drops_delta.unwrap_or(0),
        r.depth_max,
        // Ratios are compared in parts per million: ranks are integers.
        r.full_ratio.map_or(0, |f| (f * 1e6) as u64),
        r.syn.unwrap_or(0),
        r.depth,
        r.drops.unwrap_or(0),
    )
}

/// Whether a row's queues are full now or were seen full in this interval, so that a connection
/// arriving meets a full queue: the accept queue past its limit (`sk_acceptq_is_full`: the
/// kernel refuses a new connection once depth exceeds the limit), full in some sample
/// (`queue_full_ratio` above 0), or the SYN queue holding as many requests as the limit it
/// shares with the accept queue (`sk_max_ack_backlog`; past that the kernel drops SYNs or, with
/// syncookies, answers with cookies instead of queueing).
fn seen_full(r: &Row) -> bool {
    let accept_full = r.limit.is_some_and(|l| r.depth > l);
    let was_full = r.full_ratio.is_some_and(|f| f > 0.0);
    let syn_full = r.syn.zip(r.limit).is_some_and(|(s, l)| s > 0 && s >= l);
    accept_full || was_full || syn_full
}

fn listener_metric(row: &Row, ns: &NsReading, ctx: &Context, m: &mut Metrics) {
    let opts = ctx.opts;
    m.begin(LISTENER, ctx.timestamp);
    m.tag_with("address", |t| push_address(&row.key.addr, t));
    m.tag("port", Decimal::new(u64::from(row.key.port)).as_str());
    if let Some(interface) = &row.interface {
        m.tag("interface", interface);
    }
    if let Some(owner) = row.owner {
        m.tag("process", &owner.comm);
        if let Some(unit) = owner.unit.as_ref().filter(|_| opts.unit_tag) {
            m.tag("unit", unit);
        }
    }
    if let Some(i) = row.key.socket {
        m.tag("socket", Decimal::new(u64::from(i)).as_str());
    }
    push_netns_tags(m, ns, opts);
    m.field("queue_depth", Value::Int(row.depth));
    m.field("queue_depth_max", Value::Int(row.depth_max));
    if let Some(l) = row.limit {
        m.field("queue_limit", Value::Int(l));
    }
    if let Some(r) = row.full_ratio {
        m.field("queue_full_ratio", Value::Float(r));
    }
    if let Some(d) = row.drops {
        m.field("drops", Value::Int(d));
    }
    if let Some(d) = row.drops_delta {
        m.field("drops_delta", Value::Int(d));
    }
    if let Some(s) = row.syn {
        m.field("syn_queue_depth", Value::Int(s));
    }
    if let Some(ms) = row.wait_ms {
        m.field("queue_wait_max", Value::Float(f64::from(ms) / 1000.0));
    }
    m.field("sockets", Value::Int(row.sockets.len() as u64));
    if let Some(pid) = row.owner.map(|o| o.pid) {
        m.field("pid", Value::Int(pid as u64));
    }
}

/// The tags naming a row's namespace: `netns` when more than one is watched; `container` and
/// `pod` whenever known (only a namespace other than the host's has them).
fn push_netns_tags(m: &mut Metrics, ns: &NsReading, opts: &ReportOptions) {
    if opts.netns_tag {
        m.tag("netns", ns.name);
    }
    if let Some(c) = ns.container {
        m.tag("container", c);
    }
    if let Some(p) = ns.pod.filter(|p| !p.is_empty()) {
        m.tag("pod", p);
    }
}

/// The namespace's row; `(rows, omitted)`: its listener rows after filters, and how many of
/// them `--max-listeners` left out.
fn netns_metric(
    reading: &NsReading,
    prev: &Previous,
    ctx: &Context,
    (rows, omitted): (usize, usize),
    m: &mut Metrics,
) {
    m.begin(NETNS, ctx.timestamp);
    push_netns_tags(m, reading, ctx.opts);
    if let Some(cur) = reading.snap.tcpext {
        let before = prev.counters.get(&reading.id);
        for (counter, v) in cur.iter() {
            let Some(v) = v else { continue };
            m.field(counter.field, Value::Int(v));
            if let Some(d) = delta(before.and_then(|b| b.get(counter.kernel)), Some(v)) {
                m.field(counter.delta, Value::Int(d));
            }
        }
    }
    for (sysctl, v) in reading.snap.sysctls.iter() {
        if let Some(v) = v {
            m.field(sysctl.field, Value::Int(v));
        }
    }
    m.field("listeners", Value::Int(rows as u64));
    m.field("listeners_omitted", Value::Int(omitted as u64));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::netstat::TcpExt;
    use crate::source::sysctl::Sysctls;

    const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
    const ANY4: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    const TWO: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    const ANY6: IpAddr = IpAddr::V6(Ipv6Addr::UNSPECIFIED);

    fn sock(addr: IpAddr, port: u16, inode: u32, depth: u32, limit: u32, drops: u32) -> Socket {
        Socket {
            addr,
            port,
            ifindex: 0,
            inode,
            depth,
            limit: Some(limit),
            drops: Some(drops),
        }
    }

    fn ep(addr: IpAddr, port: u16, ifindex: u32) -> Endpoint {
        Endpoint {
            addr,
            port,
            ifindex,
        }
    }

    /// A socket bound to device `ifindex`.
    fn on(ifindex: u32, s: Socket) -> Socket {
        Socket { ifindex, ..s }
    }

    fn opts() -> ReportOptions {
        ReportOptions {
            per_socket: false,
            max_listeners: 1000,
            netns_tag: false,
            unit_tag: false,
        }
    }

    /// A report's metrics one by one, for tests to index.
    struct Flat {
        metrics: Vec<Metric>,
        omitted: usize,
    }

    /// The one way tests build a report: defaults for the filter and the timestamp.
    fn report_with(
        readings: &[NsReading],
        peaks: &Peaks,
        owners: &OwnerCache,
        opts: &ReportOptions,
        prev: &mut Previous,
    ) -> Flat {
        let ctx = Context {
            peaks,
            owners,
            filter: &Filter::default(),
            opts,
            timestamp: 1,
            last: false,
        };
        let built = build(readings, &ctx, prev);
        Flat {
            metrics: built.metrics.to_vec(),
            omitted: built.omitted,
        }
    }

    fn run(snap: &NetnsSnapshot, prev: &mut Previous, o: &ReportOptions) -> Vec<Metric> {
        let readings = [NsReading {
            id: 0,
            name: "default",
            container: None,
            pod: None,
            snap,
        }];
        report_with(
            &readings,
            &Peaks::default(),
            &OwnerCache::default(),
            o,
            prev,
        )
        .metrics
    }

    #[test]
    fn the_last_report_keeps_no_counters_and_reads_as_any_other() {
        let snap = NetnsSnapshot {
            sockets: vec![sock(LO, 80, 1, 3, 2, 14), sock(LO, 81, 2, 0, 2, 1)],
            tcpext: Some(TcpExt::all(5)),
            ..Default::default()
        };
        let readings = [NsReading {
            id: 0,
            name: "default",
            container: None,
            pod: None,
            snap: &snap,
        }];
        let (peaks, owners, filter, o) = (
            Peaks::default(),
            OwnerCache::default(),
            Filter::default(),
            opts(),
        );
        let ctx = |last| Context {
            peaks: &peaks,
            owners: &owners,
            filter: &filter,
            opts: &o,
            timestamp: 1,
            last,
        };
        let mut kept = Previous::default();
        let mut dropped = Previous::default();
        let usual = build(&readings, &ctx(false), &mut kept);
        let last = build(&readings, &ctx(true), &mut dropped);
        assert_eq!(usual.metrics, last.metrics);
        assert_eq!(kept.rows.len(), 2);
        assert!(dropped.rows.is_empty() && dropped.socket_drops.is_empty());
        assert!(dropped.counters.is_empty());
    }

    #[test]
    fn first_report_has_no_deltas_second_has_them() {
        let mut snap = NetnsSnapshot {
            sockets: vec![sock(LO, 80, 1, 3, 2, 14)],
            ..Default::default()
        };
        snap.tcpext = Some(
            TcpExt::default()
                .with("ListenOverflows", 10)
                .with("ListenDrops", 12),
        );
        let mut prev = Previous::default();
        let m = run(&snap, &mut prev, &opts());
        assert_eq!(m[0].field("queue_depth"), Some(Value::Int(3)));
        assert_eq!(m[0].field("queue_limit"), Some(Value::Int(2)));
        assert_eq!(m[0].field("drops"), Some(Value::Int(14)));
        assert_eq!(m[0].field("drops_delta"), None);
        assert_eq!(m[1].field("listen_overflows_delta"), None);
        snap.sockets[0].drops = Some(20);
        snap.tcpext = Some(
            TcpExt::default()
                .with("ListenOverflows", 16)
                .with("ListenDrops", 18),
        );
        let m = run(&snap, &mut prev, &opts());
        assert_eq!(m[0].field("drops_delta"), Some(Value::Int(6)));
        assert_eq!(m[1].field("listen_overflows_delta"), Some(Value::Int(6)));
        assert_eq!(
            m[1].field("reqq_full_drop"),
            None,
            "absent counter is absent, not 0"
        );
    }

    #[test]
    fn each_namespace_field_carries_its_own_kernel_counter() {
        // Every counter and sysctl distinct, and the expected pairs written out here rather
        // than taken from the tables, so a swapped row in any table fails this test.
        let want = [
            ("ListenOverflows", "listen_overflows"),
            ("ListenDrops", "listen_drops"),
            ("TCPReqQFullDrop", "reqq_full_drop"),
            ("TCPReqQFullDoCookies", "reqq_full_do_cookies"),
            ("SyncookiesSent", "syncookies_sent"),
            ("SyncookiesRecv", "syncookies_recv"),
            ("SyncookiesFailed", "syncookies_failed"),
            ("TCPMigrateReqSuccess", "migrate_req_success"),
            ("TCPMigrateReqFailure", "migrate_req_failure"),
        ];
        let names: Vec<&str> = want.iter().map(|(k, _)| *k).collect();
        let value = |i: usize| 100 + 10 * i as u64;
        let values: Vec<String> = (0..want.len()).map(|i| value(i).to_string()).collect();
        let text = |bump: u64| {
            let values: Vec<String> = (0..want.len())
                .map(|i| (value(i) + bump * (i as u64 + 1)).to_string())
                .collect();
            format!(
                "TcpExt: Other {}\nTcpExt: 7 {}\n",
                names.join(" "),
                values.join(" ")
            )
        };
        assert_eq!(values.len(), names.len());
        let mut snap = NetnsSnapshot {
            tcpext: Some(crate::source::netstat::parse(&text(0)).unwrap()),
            sysctls: Sysctls::default()
                .with("somaxconn", 4096)
                .with("tcp_max_syn_backlog", 512)
                .with("tcp_syncookies", 2)
                .with("tcp_abort_on_overflow", 1),
            ..Default::default()
        };
        let mut prev = Previous::default();
        run(&snap, &mut prev, &opts());
        snap.tcpext = Some(crate::source::netstat::parse(&text(1)).unwrap());
        let m = run(&snap, &mut prev, &opts());
        let row = m.iter().find(|m| m.name == NETNS).unwrap();
        for (i, (kernel, field)) in want.iter().enumerate() {
            assert_eq!(
                row.field(field),
                Some(Value::Int(value(i) + i as u64 + 1)),
                "{field} must carry {kernel}"
            );
            assert_eq!(
                row.field(&format!("{field}_delta")),
                Some(Value::Int(i as u64 + 1)),
                "{field}_delta must be the increase of {kernel}"
            );
        }
        for (field, v) in [
            ("somaxconn", 4096),
            ("tcp_max_syn_backlog", 512),
            ("tcp_syncookies", 2),
            ("tcp_abort_on_overflow", 1),
        ] {
            assert_eq!(row.field(field), Some(Value::Int(v)), "{field}");
        }
    }

    #[test]
    fn replaced_or_reset_gets_no_delta() {
        let mut snap = NetnsSnapshot {
            sockets: vec![sock(LO, 80, 1, 0, 2, 14)],
            ..Default::default()
        };
        snap.tcpext = Some(TcpExt::all(10));
        let mut prev = Previous::default();
        run(&snap, &mut prev, &opts());
        snap.sockets[0] = sock(LO, 80, 2, 0, 2, 15); // same port, new inode
        snap.tcpext = Some(TcpExt::all(3)); // namespace counters went back
        let m = run(&snap, &mut prev, &opts());
        assert_eq!(m[0].field("drops_delta"), None);
        assert_eq!(m[1].field("listen_overflows_delta"), None);
        assert_eq!(m[1].field("listen_overflows"), Some(Value::Int(3)));
        // Gone listeners leave nothing behind.
        snap.sockets.clear();
        run(&snap, &mut prev, &opts());
        assert!(prev.rows.is_empty() && prev.socket_drops.is_empty());
    }

    #[test]
    fn reuseport_group_sums_or_splits() {
        let snap = NetnsSnapshot {
            sockets: vec![
                sock(LO, 80, 30, 0, 4, 0),
                sock(LO, 80, 10, 5, 4, 9),
                sock(LO, 80, 20, 0, 4, 0),
            ],
            ..Default::default()
        };
        let mut prev = Previous::default();
        let m = run(&snap, &mut prev, &opts());
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].field("sockets"), Some(Value::Int(3)));
        assert_eq!(m[0].field("queue_depth"), Some(Value::Int(5)));
        assert_eq!(m[0].field("queue_limit"), Some(Value::Int(12)));
        assert_eq!(m[0].field("drops"), Some(Value::Int(9)));
        let m = run(
            &snap,
            &mut prev,
            &ReportOptions {
                per_socket: true,
                ..opts()
            },
        );
        let rows: Vec<(&str, Option<Value>)> = m[..3]
            .iter()
            .map(|m| (m.tag("socket").unwrap(), m.field("drops")))
            .collect();
        // Ranked by inode: inode 10 (the full one) is socket 0.
        assert_eq!(
            rows,
            vec![
                ("0", Some(Value::Int(9))),
                ("1", Some(Value::Int(0))),
                ("2", Some(Value::Int(0)))
            ]
        );
    }

    #[test]
    fn each_reuseport_socket_names_its_own_process() {
        use crate::source::owners::{Owner, Scan};
        let snap = NetnsSnapshot {
            sockets: vec![sock(LO, 80, 10, 0, 4, 0), sock(LO, 80, 20, 0, 4, 0)],
            ..Default::default()
        };
        let mut owners = OwnerCache::default();
        let owner = |pid, comm: &str| Owner {
            pid,
            comm: comm.into(),
            unit: None,
            fd: 3,
        };
        owners.refresh(&[10, 20], |_| Scan {
            found: HashMap::from([(10, owner(300, "worker")), (20, owner(200, "other"))]),
            denied: 0,
        });
        let readings = [NsReading {
            id: 0,
            name: "default",
            container: None,
            pod: None,
            snap: &snap,
        }];
        let per_socket = ReportOptions {
            per_socket: true,
            ..opts()
        };
        let mut prev = Previous::default();
        let m = report_with(
            &readings,
            &Peaks::default(),
            &owners,
            &per_socket,
            &mut prev,
        )
        .metrics;
        let who: Vec<_> = m[..2]
            .iter()
            .map(|m| (m.tag("socket"), m.tag("process"), m.field("pid")))
            .collect();
        assert_eq!(
            who,
            vec![
                (Some("0"), Some("worker"), Some(Value::Int(300))),
                (Some("1"), Some("other"), Some(Value::Int(200)))
            ]
        );
        // The summed row names the lowest pid of the group.
        let m = report_with(&readings, &Peaks::default(), &owners, &opts(), &mut prev).metrics;
        assert_eq!(
            (m[0].tag("process"), m[0].field("pid")),
            (Some("other"), Some(Value::Int(200)))
        );
    }

    #[test]
    fn every_name_emitted_is_in_the_schema() {
        use crate::metric::{field_spec, SCHEMA};
        use crate::source::owners::{Owner, Scan};
        let mut snap = NetnsSnapshot {
            sockets: vec![
                sock(LO, 80, 10, 3, 2, 5),
                sock(LO, 80, 20, 0, 2, 0),
                on(3, sock(LO, 80, 30, 0, 2, 0)),
            ],
            syn_queue: Some(HashMap::from([(ep(LO, 80, 0), 1)])),
            queue_wait: Some(HashMap::from([(ep(LO, 80, 0), 1500)])),
            interfaces: HashMap::from([(3, "v0".to_string())]),
            tcpext: Some(TcpExt::all(1)),
            ..Default::default()
        };
        snap.sysctls = Sysctls::default()
            .with("somaxconn", 4096)
            .with("tcp_max_syn_backlog", 1)
            .with("tcp_syncookies", 1)
            .with("tcp_abort_on_overflow", 0);
        let mut owners = OwnerCache::default();
        owners.refresh(&[10, 20], |_| Scan {
            found: HashMap::from([
                (
                    10,
                    Owner {
                        pid: 7,
                        comm: "a".into(),
                        unit: Some("a.service".into()),
                        fd: 3,
                    },
                ),
                (
                    20,
                    Owner {
                        pid: 8,
                        comm: "b".into(),
                        unit: None,
                        fd: 4,
                    },
                ),
            ]),
            denied: 0,
        });
        let readings = [
            NsReading {
                id: 0,
                name: "x",
                container: None,
                pod: None,
                snap: &snap,
            },
            NsReading {
                id: 1,
                name: "y",
                container: Some("3f2a9c1b7d4e"),
                pod: Some("web-0"),
                snap: &snap,
            },
        ];
        let mut peaks = Peaks::default();
        peaks.count_round(0);
        let mut prev = Previous::default();
        let mut seen = std::collections::HashSet::new();
        for per_socket in [false, true] {
            let o = ReportOptions {
                per_socket,
                max_listeners: 1000,
                netns_tag: true,
                unit_tag: true,
            };
            // Twice, so the second report carries deltas.
            for _ in 0..2 {
                for m in report_with(&readings, &peaks, &owners, &o, &mut prev).metrics {
                    let spec = SCHEMA
                        .iter()
                        .find(|s| s.name == m.name)
                        .expect("measurement in schema");
                    for (k, _) in &m.tags {
                        assert!(
                            spec.tags.iter().any(|t| t.name == *k),
                            "tag {k} of {} not in schema",
                            m.name
                        );
                        seen.insert(*k);
                    }
                    for (k, _) in &m.fields {
                        assert!(
                            field_spec(m.name, k).is_some(),
                            "field {k} of {} not in schema",
                            m.name
                        );
                        seen.insert(*k);
                    }
                }
            }
        }
        // And the schema has nothing the code never emits.
        for spec in &SCHEMA {
            for name in spec
                .tags
                .iter()
                .map(|t| t.name)
                .chain(spec.fields.iter().map(|f| f.name))
            {
                assert!(
                    seen.contains(name),
                    "{}.{name} in the schema but never emitted",
                    spec.name
                );
            }
        }
    }

    #[test]
    fn syn_requests_go_to_the_listener_that_took_them() {
        let listeners = [
            sock(ANY4, 80, 1, 0, 1, 0),
            sock(LO, 81, 2, 0, 1, 0),
            sock(ANY6, 82, 3, 0, 1, 0),
        ];
        let counts = HashMap::from([
            (ep(LO, 80, 0), 2),
            (ep(LO, 81, 0), 3),
            (ep(LO, 82, 0), 4),
            (ep(LO, 99, 0), 7),
        ]);
        let got = attribute_syn(&counts, &listeners);
        assert_eq!(
            got,
            HashMap::from([
                (ep(ANY4, 80, 0), 2),
                (ep(LO, 81, 0), 3),
                (ep(ANY6, 82, 0), 4)
            ])
        );
    }

    #[test]
    fn an_ipv4_mapped_listener_is_a_row_of_its_own_and_gets_its_requests() {
        let mapped = IpAddr::V6(Ipv4Addr::LOCALHOST.to_ipv6_mapped());
        let snap = NetnsSnapshot {
            sockets: vec![
                // AF_INET and AF_INET6 on 127.0.0.1:7901: two groups, the kernel's IPv4
                // lookup takes the AF_INET one.
                sock(LO, 7901, 1, 3, 3, 0),
                sock(mapped, 7901, 2, 0, 8, 0),
                // Only an AF_INET6 socket on the mapped address.
                sock(mapped, 7902, 3, 0, 8, 0),
                // A dual-stack [::] still takes IPv4 clients.
                sock(ANY6, 7903, 4, 0, 8, 0),
            ],
            // Requests are folded to IPv4 whichever family's socket took them.
            syn_queue: Some(HashMap::from([
                (ep(LO, 7901, 0), 2),
                (ep(LO, 7902, 0), 3),
                (ep(LO, 7903, 0), 4),
            ])),
            ..Default::default()
        };
        let m = run(&snap, &mut Previous::default(), &opts());
        let rows: Vec<_> = m
            .iter()
            .filter(|m| m.name == LISTENER)
            .map(|m| {
                (
                    format!("{}:{}", m.tag("address").unwrap(), m.tag("port").unwrap()),
                    ["queue_limit", "sockets", "syn_queue_depth"].map(|f| m.field(f)),
                )
            })
            .collect();
        let row = |a: &str, v: [u64; 3]| (a.to_string(), v.map(|x| Some(Value::Int(x))));
        assert_eq!(
            rows,
            vec![
                row("127.0.0.1:7901", [3, 1, 2]),
                row(":::7903", [8, 1, 4]),
                row("::ffff:127.0.0.1:7901", [8, 1, 0]),
                row("::ffff:127.0.0.1:7902", [8, 1, 3]),
            ]
        );
    }

    #[test]
    fn max_listeners_keeps_the_deepest_and_counts_the_rest() {
        let sockets = (0..10)
            .map(|i| sock(LO, 1000 + i, u32::from(i) + 1, u32::from(i % 4), 8, 0))
            .collect();
        let snap = NetnsSnapshot {
            sockets,
            ..Default::default()
        };
        let mut prev = Previous::default();
        let readings = [NsReading {
            id: 0,
            name: "default",
            container: None,
            pod: None,
            snap: &snap,
        }];
        let o = ReportOptions {
            max_listeners: 3,
            ..opts()
        };
        let built = report_with(
            &readings,
            &Peaks::default(),
            &OwnerCache::default(),
            &o,
            &mut prev,
        );
        assert_eq!(built.omitted, 7);
        // Depths are 0,1,2,3,0,1,2,3,0,1: the two 3s and one 2 stay.
        let mut depths: Vec<_> = built.metrics[..3]
            .iter()
            .map(|m| m.field("queue_depth"))
            .collect();
        depths.sort_by_key(|d| format!("{d:?}"));
        assert_eq!(
            depths,
            vec![
                Some(Value::Int(2)),
                Some(Value::Int(3)),
                Some(Value::Int(3))
            ]
        );
        assert_eq!(built.metrics[3].field("listeners"), Some(Value::Int(10)));
        assert_eq!(
            built.metrics[3].field("listeners_omitted"),
            Some(Value::Int(7))
        );
        // Omitted rows still keep their counters, so their delta is right when they return.
        assert_eq!(prev.rows.len(), 10);
    }

    fn build_one(
        snap: &NetnsSnapshot,
        peaks: &Peaks,
        prev: &mut Previous,
        o: &ReportOptions,
    ) -> Flat {
        let readings = [NsReading {
            id: 0,
            name: "default",
            container: None,
            pod: None,
            snap,
        }];
        report_with(&readings, peaks, &OwnerCache::default(), o, prev)
    }

    #[test]
    fn a_report_built_over_another_equals_one_built_fresh() {
        let bound = NetnsSnapshot {
            sockets: vec![
                on(3, sock(LO, 80, 1, 2, 4, 0)),
                sock(ANY6, 443, 2, 1, 8, 3),
                sock(ANY6, 443, 3, 0, 8, 1),
            ],
            interfaces: HashMap::from([(3, "eth0".to_string())]),
            tcpext: Some(TcpExt::all(7)),
            ..Default::default()
        };
        let plain = NetnsSnapshot {
            sockets: vec![sock(TWO, 8080, 9, 0, 2, 0)],
            ..Default::default()
        };
        let reading = |snap| NsReading {
            id: 0,
            name: "a-namespace",
            container: Some("3f2a9c1b7d4e"),
            pod: Some("web-0"),
            snap,
        };
        let per_socket = ReportOptions {
            per_socket: true,
            netns_tag: true,
            ..opts()
        };
        let (peaks, owners, filter) = (Peaks::default(), OwnerCache::default(), Filter::default());
        let ctx = |o| Context {
            peaks: &peaks,
            owners: &owners,
            filter: &filter,
            opts: o,
            timestamp: 5,
            last: false,
        };
        // Every order of a bigger and a smaller report, with and without the namespace tags.
        for (first, second, o) in [
            (&bound, &plain, &per_socket),
            (&plain, &bound, &per_socket),
            (&bound, &plain, &opts()),
            (&plain, &bound, &opts()),
        ] {
            let mut reused = Built::default();
            build_into(
                &[reading(first)],
                &ctx(o),
                &mut Previous::default(),
                &mut reused,
            );
            build_into(
                &[reading(second)],
                &ctx(o),
                &mut Previous::default(),
                &mut reused,
            );
            let fresh = build(&[reading(second)], &ctx(o), &mut Previous::default());
            assert_eq!(reused.metrics, fresh.metrics);
            assert_eq!(reused.omitted, fresh.omitted);
        }
    }

    #[test]
    fn device_bound_listeners_are_separate_rows_tagged_with_their_device() {
        let ll: IpAddr = "fe80::1".parse().unwrap();
        let v0_addr: IpAddr = "10.1.0.1".parse().unwrap();
        let snap = NetnsSnapshot {
            sockets: vec![
                on(3, sock(ll, 7000, 1, 2, 4, 0)),
                on(5, sock(ll, 7000, 2, 3, 8, 6)),
                on(3, sock(ANY4, 7001, 3, 1, 4, 0)),
                on(5, sock(ANY4, 7001, 4, 0, 16, 0)),
                on(3, sock(ll, 7002, 5, 0, 4, 0)),
                sock(ANY6, 7002, 6, 0, 4, 0),
                sock(LO, 80, 7, 0, 4, 0),
            ],
            syn_queue: Some(HashMap::from([
                (ep(ll, 7000, 3), 2),
                (ep(ll, 7000, 5), 1),
                (ep(v0_addr, 7001, 3), 2),
                // The unbound [::] listener's request from a link-local client carries the
                // device it came in on; the one bound to v0 took those from v0.
                (ep(ll, 7002, 3), 4),
                (ep(ll, 7002, 5), 1),
            ])),
            // Index 5 has no name any more: it still gets a tag of its own.
            interfaces: HashMap::from([(3, "v0".to_string())]),
            ..Default::default()
        };
        let m = run(&snap, &mut Previous::default(), &opts());
        let rows: Vec<_> = m
            .iter()
            .filter(|m| m.name == LISTENER)
            .map(|m| {
                (
                    m.tag("address").unwrap().to_string(),
                    m.tag("port").unwrap().to_string(),
                    m.tag("interface").map(str::to_string),
                    [
                        "queue_depth",
                        "queue_limit",
                        "sockets",
                        "drops",
                        "syn_queue_depth",
                    ]
                    .map(|f| m.field(f)),
                )
            })
            .collect();
        let row = |a: &str, p: &str, i: Option<&str>, v: [u64; 5]| {
            (
                a.to_string(),
                p.to_string(),
                i.map(str::to_string),
                v.map(|x| Some(Value::Int(x))),
            )
        };
        assert_eq!(
            rows,
            vec![
                row("0.0.0.0", "7001", Some("v0"), [1, 4, 1, 0, 2]),
                row("0.0.0.0", "7001", Some("if:5"), [0, 16, 1, 0, 0]),
                row("127.0.0.1", "80", None, [0, 4, 1, 0, 0]),
                row("::", "7002", None, [0, 4, 1, 0, 1]),
                row("fe80::1", "7000", Some("v0"), [2, 4, 1, 0, 2]),
                row("fe80::1", "7000", Some("if:5"), [3, 8, 1, 6, 1]),
                row("fe80::1", "7002", Some("v0"), [0, 4, 1, 0, 4]),
            ]
        );
    }

    #[test]
    fn a_listener_dropping_now_outranks_deeper_ones_under_max_listeners() {
        // Ten listeners with one connection queued, and one whose SYN queue overflows: its
        // accept queue stays empty while its drops climb.
        let mut snap = NetnsSnapshot {
            sockets: (0..10)
                .map(|i| sock(LO, 1000 + i, u32::from(i) + 1, 1, 8, 0))
                .chain([sock(LO, 2000, 99, 0, 8, 100)])
                .collect(),
            ..Default::default()
        };
        let o = ReportOptions {
            max_listeners: 10,
            ..opts()
        };
        let mut prev = Previous::default();
        build_one(&snap, &Peaks::default(), &mut prev, &o);
        snap.sockets[10].drops = Some(154);
        let built = build_one(&snap, &Peaks::default(), &mut prev, &o);
        assert_eq!(built.omitted, 1);
        let dropping = built
            .metrics
            .iter()
            .find(|m| m.tag("port") == Some("2000"))
            .expect("the dropping listener is kept");
        assert_eq!(dropping.field("drops_delta"), Some(Value::Int(54)));
    }

    #[test]
    fn a_full_listener_outranks_deeper_ones_without_a_previous_report() {
        // Each case: two deep listeners that are not full, and one full in one way the kernel
        // shows, on the first report (no drops_delta yet) with room for two rows.
        let deep = [sock(LO, 7702, 1, 3, 5, 0), sock(LO, 7704, 2, 4, 5, 0)];
        let full_port = 7705;
        let mut seen_full = Peaks::default();
        seen_full.begin_sample();
        seen_full.count_round(0);
        seen_full.observe(0, ep(LO, full_port, 0), 3, 2, Some(1));
        let cases = [
            // listen(0) holding one connection: full now, dropping the rest.
            (
                "full now",
                sock(LO, full_port, 3, 1, 0, 30),
                None,
                Peaks::default(),
            ),
            // Empty at the report, full in a sample of the interval.
            (
                "seen full",
                sock(LO, full_port, 3, 0, 1, 0),
                None,
                seen_full,
            ),
            // An empty accept queue whose SYN queue holds as many requests as the limit.
            (
                "SYN queue full",
                sock(LO, full_port, 3, 0, 2, 0),
                Some(HashMap::from([(ep(LO, full_port, 0), 2)])),
                Peaks::default(),
            ),
        ];
        let o = ReportOptions {
            max_listeners: 2,
            ..opts()
        };
        for (case, full, syn_queue, peaks) in cases {
            let snap = NetnsSnapshot {
                sockets: deep.iter().copied().chain([full]).collect(),
                syn_queue,
                ..Default::default()
            };
            let built = build_one(&snap, &peaks, &mut Previous::default(), &o);
            let kept: Vec<_> = built.metrics[..2]
                .iter()
                .map(|m| m.tag("port").unwrap().to_string())
                .collect();
            assert_eq!(kept, ["7704", "7705"], "{case}");
        }
        // Not full anywhere and no delta: the deepest two stay.
        let snap = NetnsSnapshot {
            sockets: deep
                .iter()
                .copied()
                .chain([sock(LO, full_port, 3, 1, 2, 9)])
                .collect(),
            syn_queue: Some(HashMap::from([(ep(LO, full_port, 0), 1)])),
            ..Default::default()
        };
        let built = build_one(&snap, &Peaks::default(), &mut Previous::default(), &o);
        let kept: Vec<_> = built.metrics[..2]
            .iter()
            .map(|m| m.tag("port").unwrap().to_string())
            .collect();
        assert_eq!(kept, ["7702", "7704"]);
    }

    #[test]
    fn a_peak_leaves_with_the_socket_that_made_it() {
        // listen(16) filled to 17, closed and replaced by listen(1) on the same port.
        let mut peaks = Peaks::default();
        peaks.begin_sample();
        peaks.count_round(0);
        peaks.observe(0, ep(LO, 80, 0), 1, 17, Some(16));
        // A group of three full listen(4) sockets, of which two close.
        for inode in [10, 11, 12] {
            peaks.observe(0, ep(LO, 81, 0), inode, 5, Some(4));
        }
        let snap = NetnsSnapshot {
            sockets: vec![sock(LO, 80, 2, 1, 1, 0), sock(LO, 81, 11, 5, 4, 0)],
            ..Default::default()
        };
        for per_socket in [false, true] {
            let o = ReportOptions {
                per_socket,
                ..opts()
            };
            let m = build_one(&snap, &peaks, &mut Previous::default(), &o).metrics;
            let peak = |port: &str| {
                let row = m.iter().find(|m| m.tag("port") == Some(port)).unwrap();
                (row.field("queue_depth_max"), row.field("queue_limit"))
            };
            assert_eq!(peak("80"), (Some(Value::Int(1)), Some(Value::Int(1))));
            assert_eq!(peak("81"), (Some(Value::Int(5)), Some(Value::Int(4))));
        }
    }

    fn waits(m: &[Metric]) -> Vec<(String, Option<String>, Option<Value>)> {
        m.iter()
            .filter(|m| m.name == LISTENER)
            .map(|m| {
                (
                    format!("{}:{}", m.tag("address").unwrap(), m.tag("port").unwrap()),
                    m.tag("interface").or(m.tag("socket")).map(str::to_string),
                    m.field("queue_wait_max"),
                )
            })
            .collect()
    }

    fn secs(ms: u32) -> Option<Value> {
        Some(Value::Float(f64::from(ms) / 1000.0))
    }

    #[test]
    fn a_listener_with_an_empty_queue_takes_no_wait_from_the_wildcard() {
        // Connections to 127.0.0.1:84 queued on the wildcard before a 127.0.0.1 listener
        // opened; the new listener's queue is empty, so they are the wildcard's.
        let snap = NetnsSnapshot {
            sockets: vec![sock(ANY4, 84, 1, 2, 8, 0), sock(LO, 84, 2, 0, 8, 0)],
            queue_wait: Some(HashMap::from([
                (ep(LO, 84, 0), 2750),
                (ep(TWO, 84, 0), 1750),
            ])),
            ..Default::default()
        };
        let m = run(&snap, &mut Previous::default(), &opts());
        assert_eq!(
            waits(&m),
            vec![
                ("0.0.0.0:84".into(), None, secs(2750)),
                ("127.0.0.1:84".into(), None, None),
            ]
        );
    }

    #[test]
    fn queued_connections_go_to_the_specific_listener_before_the_wildcard() {
        let ll: IpAddr = "fe80::1".parse().unwrap();
        let ten: IpAddr = "10.0.0.1".parse().unwrap();
        let snap = NetnsSnapshot {
            sockets: vec![
                sock(LO, 80, 1, 1, 8, 0),
                sock(ANY4, 80, 2, 2, 8, 0),
                // Dual-stack [::]: IPv4 clients (`::ffff:a.b.c.d`, folded to IPv4) land here.
                sock(ANY6, 81, 3, 1, 8, 0),
                on(3, sock(ll, 82, 4, 1, 8, 0)),
                sock(ANY6, 82, 5, 1, 8, 0),
                // Nothing queued: no wait even if a connection shows up after the reading.
                sock(LO, 83, 6, 0, 8, 0),
            ],
            queue_wait: Some(HashMap::from([
                (ep(LO, 80, 0), 900),
                (ep(ten, 80, 0), 2500),
                (ep(LO, 81, 0), 1200),
                (ep(ll, 82, 3), 700),
                // A link-local client of the unbound [::] listener, from device 5.
                (ep(ll, 82, 5), 3000),
                (ep(LO, 83, 0), 50),
                // No listener of this port at all: ignored.
                (ep(LO, 99, 0), 9999),
            ])),
            interfaces: HashMap::from([(3, "v0".to_string())]),
            ..Default::default()
        };
        let m = run(&snap, &mut Previous::default(), &opts());
        assert_eq!(
            waits(&m),
            vec![
                ("0.0.0.0:80".into(), None, secs(2500)),
                ("127.0.0.1:80".into(), None, secs(900)),
                ("127.0.0.1:83".into(), None, None),
                (":::81".into(), None, secs(1200)),
                (":::82".into(), None, secs(3000)),
                ("fe80::1:82".into(), Some("v0".into()), secs(700)),
            ]
        );
    }

    #[test]
    fn a_reuseport_group_reports_its_oldest_summed_or_on_socket_0() {
        let snap = NetnsSnapshot {
            sockets: vec![
                sock(LO, 80, 10, 0, 4, 0),
                sock(LO, 80, 20, 2, 4, 0),
                sock(LO, 80, 30, 1, 4, 0),
            ],
            queue_wait: Some(HashMap::from([(ep(LO, 80, 0), 4200)])),
            ..Default::default()
        };
        let m = run(&snap, &mut Previous::default(), &opts());
        assert_eq!(waits(&m), vec![("127.0.0.1:80".into(), None, secs(4200))]);
        let per_socket = ReportOptions {
            per_socket: true,
            ..opts()
        };
        let m = run(&snap, &mut Previous::default(), &per_socket);
        assert_eq!(
            waits(&m),
            vec![
                ("127.0.0.1:80".into(), Some("0".into()), secs(4200)),
                ("127.0.0.1:80".into(), Some("1".into()), None),
                ("127.0.0.1:80".into(), Some("2".into()), None),
            ]
        );
    }

    #[test]
    fn no_wait_without_the_dump() {
        let snap = NetnsSnapshot {
            sockets: vec![sock(LO, 80, 1, 3, 8, 0)],
            queue_wait: None,
            ..Default::default()
        };
        let m = run(&snap, &mut Previous::default(), &opts());
        assert_eq!(m[0].field("queue_wait_max"), None);
        assert_eq!(m[0].field("queue_depth"), Some(Value::Int(3)));
    }
}

/// A long-running reporter builds each report over the last one's metrics and encodes it with
/// encoders that keep buffers from one report to the next; whatever churns between reports
/// (owners exiting, devices, groups growing and shrinking, containers and pods, fields coming
/// and going, namespaces appearing), each report must be byte for byte what a fresh build and
/// fresh encoders give for the same reading.
#[cfg(test)]
mod reuse_differential {
    use super::*;
    use crate::encode::collectd::Collectd;
    use crate::encode::influx::Influx;
    use crate::encode::json::JsonLines;
    use crate::encode::prometheus::Prometheus;
    use crate::encode::{Encoder, UserTags};
    use crate::source::netstat::TcpExt;
    use crate::source::owners::Scan;
    use std::time::Duration;

    /// xorshift64*: the same steps on every run, no dependency.
    pub(super) struct Rng(pub(super) u64);

    impl Rng {
        pub(super) fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        pub(super) fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
        pub(super) fn chance(&mut self, one_in: u64) -> bool {
            self.below(one_in) == 0
        }
        pub(super) fn pick<T: Copy>(&mut self, from: &[T]) -> T {
            from[self.below(from.len() as u64) as usize]
        }
    }

    const ADDRS: [IpAddr; 5] = [
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)),
        IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1)),
    ];

    fn snapshot(rng: &mut Rng) -> NetnsSnapshot {
        let n = rng.below(12) as usize;
        let mut sockets = Vec::with_capacity(n);
        for _ in 0..n {
            sockets.push(Socket {
                addr: rng.pick(&ADDRS),
                port: rng.pick(&[80, 443, 8080]),
                ifindex: rng.pick(&[0, 0, 0, 3, 7]),
                // Few inodes: the same socket shows up again, in another group or not.
                inode: 1 + rng.below(20) as u32,
                depth: rng.pick(&[0, 0, 1, 5, 129]),
                limit: (!rng.chance(8)).then(|| rng.pick(&[4, 128])),
                drops: (!rng.chance(8)).then(|| rng.below(50) as u32),
            });
        }
        // One inode is one socket.
        sockets.sort_by_key(|s| s.inode);
        sockets.dedup_by_key(|s| s.inode);
        let endpoints: Vec<Endpoint> = sockets.iter().map(Socket::endpoint).collect();
        let per_endpoint = |rng: &mut Rng| {
            let mut m = HashMap::new();
            for e in &endpoints {
                if rng.chance(2) {
                    m.insert(*e, rng.below(300) as u32);
                }
            }
            m
        };
        let syn_queue = (!rng.chance(3)).then(|| per_endpoint(rng));
        let queue_wait = (!rng.chance(3)).then(|| per_endpoint(rng));
        let mut interfaces = HashMap::new();
        if rng.chance(2) {
            interfaces.insert(3, "eth0".to_string());
        }
        if rng.chance(2) {
            interfaces.insert(7, "a-much-longer-device".to_string());
        }
        NetnsSnapshot {
            sockets,
            syn_queue,
            queue_wait,
            interfaces,
            tcpext: (!rng.chance(4)).then(|| TcpExt::all(rng.below(1000))),
            sysctls: Default::default(),
        }
    }

    /// The owners this step: a process may have exited (no owner), another taken over.
    fn owners(rng: &mut Rng) -> OwnerCache {
        let mut found = HashMap::new();
        for inode in 1..=20 {
            if rng.chance(2) {
                let comm = rng.pick(&["nginx", "a-fifteen-char-", "x"]);
                let unit = rng.chance(2).then(|| format!("{comm}.service"));
                let pid = 1 + rng.below(4) as i32;
                let owner = Owner {
                    pid,
                    comm: comm.into(),
                    unit,
                    fd: 3,
                };
                found.insert(inode, owner);
            }
        }
        let mut cache = OwnerCache::default();
        let inodes: Vec<u32> = (1..=20).collect();
        cache.refresh_with(&inodes, |_, _| false, |_| Scan { found, denied: 0 });
        cache
    }

    fn encoders(user: &UserTags) -> Vec<Box<dyn Encoder>> {
        vec![
            Box::new(Influx::new(user.clone())),
            Box::new(JsonLines::new(user.clone())),
            Box::new(Prometheus::new(user.clone())),
            Box::new(Collectd::new("host", Duration::from_secs(10))),
        ]
    }

    #[test]
    fn every_report_built_and_encoded_over_the_last_equals_a_fresh_one() {
        let names = ["default", "ino-4026532000", "web"];
        for seed in 1..=40u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
            let opts = ReportOptions {
                per_socket: rng.chance(2),
                max_listeners: rng.pick(&[1000, 3, 1]),
                netns_tag: rng.chance(2),
                unit_tag: rng.chance(2),
            };
            let user: UserTags = if rng.chance(2) {
                vec![("dc".into(), "east".into()), ("zz".into(), "1".into())]
            } else {
                vec![]
            };
            let filter = Filter::default();
            let mut reused = Built::default();
            let mut prev_reused = Previous::default();
            let mut prev_fresh = Previous::default();
            let mut long_lived = encoders(&user);
            for step in 0..60 {
                let count = 1 + rng.below(3) as usize;
                let snaps: Vec<NetnsSnapshot> = (0..count).map(|_| snapshot(&mut rng)).collect();
                let tags: Vec<(Option<&str>, Option<&str>)> = (0..count)
                    .map(|_| {
                        let container = rng.chance(2).then_some("3f2a9c1b7d4e");
                        let pod = rng.pick(&[None, Some(""), Some("web-0")]);
                        (container, pod)
                    })
                    .collect();
                let readings: Vec<NsReading> = snaps
                    .iter()
                    .zip(&tags)
                    .enumerate()
                    .map(|(i, (snap, &(container, pod)))| NsReading {
                        id: i as NsId,
                        name: names[i],
                        container,
                        pod,
                        snap,
                    })
                    .collect();
                let mut peaks = Peaks::default();
                for (i, snap) in snaps.iter().enumerate() {
                    if rng.chance(2) {
                        peaks.begin_sample();
                        peaks.count_round(i as NsId);
                        for s in &snap.sockets {
                            let depth = s.depth + rng.pick(&[0, 3, 200]);
                            peaks.observe(i as NsId, s.endpoint(), s.inode, depth, s.limit);
                        }
                    }
                }
                let owners = owners(&mut rng);
                let ctx = Context {
                    peaks: &peaks,
                    owners: &owners,
                    filter: &filter,
                    opts: &opts,
                    timestamp: 1_700_000_000_000_000_000 + step,
                    last: false,
                };
                build_into(&readings, &ctx, &mut prev_reused, &mut reused);
                let fresh = build(&readings, &ctx, &mut prev_fresh);
                assert_eq!(reused.metrics, fresh.metrics, "seed {seed} step {step}");
                assert_eq!(reused.omitted, fresh.omitted, "seed {seed} step {step}");
                for (enc, mut new) in long_lived.iter_mut().zip(encoders(&user)) {
                    let (mut a, mut b) = (Vec::new(), Vec::new());
                    enc.encode(&reused.metrics, &mut a);
                    new.encode(&fresh.metrics, &mut b);
                    assert_eq!(
                        String::from_utf8_lossy(&a),
                        String::from_utf8_lossy(&b),
                        "seed {seed} step {step}"
                    );
                }
            }
        }
    }
}

/// The bytes of seeded random reports in every format, pinned: a change to how reports are
/// built or encoded must leave them byte for byte as they were. Many listeners over odd names
/// and addresses, IPv6, SO_REUSEPORT groups, peaks, waits, SYN counts, drops deltas, every
/// optional tag and user tags, first reports and later ones with churn.
#[cfg(test)]
mod pinned_bytes {
    use super::reuse_differential::Rng;
    use super::*;
    use crate::encode::collectd::Collectd;
    use crate::encode::influx::Influx;
    use crate::encode::json::JsonLines;
    use crate::encode::prometheus::Prometheus;
    use crate::encode::{fnv1a64, Encoder, UserTags};
    use crate::source::netstat::TcpExt;
    use crate::source::owners::Scan;
    use crate::source::sysctl::Sysctls;
    use std::time::Duration;

    const NAMES: [&str; 3] = ["default", "we ird,\"name\"=\\x", "ino-4026532000"];
    const COMMS: [&str; 6] = [
        "nginx",
        "a b,c=d",
        "q\"uo\\te",
        "x",
        "é-ü",
        "a-fifteen-char-",
    ];
    const DEVICES: [&str; 3] = ["eth0", "br-lan", "v 0"];

    fn address(rng: &mut Rng) -> IpAddr {
        match rng.below(6) {
            0 => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            1 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            2 => IpAddr::V4(Ipv4Addr::from_bits(rng.next() as u32)),
            3 => IpAddr::V6(Ipv6Addr::from_bits(u128::from(rng.next()) << 64 | 1)),
            4 => IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, rng.below(3) as u16)),
            _ => IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1 + rng.below(3) as u8)),
        }
    }

    /// A namespace's listeners: some endpoints held by several sockets (SO_REUSEPORT groups).
    fn snapshot(rng: &mut Rng, inodes: &mut u32) -> NetnsSnapshot {
        let mut sockets = Vec::new();
        for _ in 0..rng.below(150) {
            let addr = address(rng);
            let port = rng.pick(&[80, 443, 8080, 1, 65533]) + rng.below(3) as u16;
            let ifindex = rng.pick(&[0, 0, 0, 0, 3, 7, 9]);
            for _ in 0..rng.pick(&[1, 1, 1, 2, 4]) {
                *inodes += 1 + rng.below(3) as u32;
                sockets.push(Socket {
                    addr,
                    port,
                    ifindex,
                    inode: *inodes,
                    depth: rng.pick(&[0, 0, 0, 1, 5, 129, 4097]),
                    limit: (!rng.chance(10)).then(|| rng.pick(&[4, 128, 4096])),
                    drops: (!rng.chance(10)).then(|| rng.below(100_000) as u32),
                });
            }
        }
        let endpoints: Vec<Endpoint> = sockets.iter().map(Socket::endpoint).collect();
        let mut per_endpoint = |one_in: u64, max: u64| {
            let mut m = HashMap::new();
            for e in &endpoints {
                if rng.chance(one_in) {
                    m.insert(*e, rng.below(max) as u32);
                }
            }
            m
        };
        let syn_queue = Some(per_endpoint(3, 300));
        let queue_wait = Some(per_endpoint(2, 40_000));
        let mut interfaces = HashMap::new();
        for (i, name) in [3, 7]
            .into_iter()
            .zip(DEVICES.iter().skip(rng.below(2) as usize))
        {
            interfaces.insert(i, name.to_string());
        }
        let (syn_queue, queue_wait) = match rng.below(4) {
            0 => (None, None),
            _ => (syn_queue, queue_wait),
        };
        NetnsSnapshot {
            sockets,
            syn_queue,
            queue_wait,
            interfaces,
            tcpext: (!rng.chance(4)).then(|| TcpExt::all(rng.below(1 << 40))),
            sysctls: Sysctls::default()
                .with("somaxconn", 4096)
                .with("tcp_syncookies", rng.below(3)),
        }
    }

    fn owners(rng: &mut Rng, inodes: &[u32]) -> OwnerCache {
        let mut found = HashMap::new();
        for &inode in inodes {
            if !rng.chance(4) {
                let comm = rng.pick(&COMMS);
                let unit = rng
                    .chance(2)
                    .then(|| format!("{comm}@{}.service", rng.below(9)));
                let pid = 1 + rng.below(100_000) as i32;
                found.insert(
                    inode,
                    Owner {
                        pid,
                        comm: comm.into(),
                        unit,
                        fd: 3,
                    },
                );
            }
        }
        let mut cache = OwnerCache::default();
        cache.refresh_with(inodes, |_, _| false, |_| Scan { found, denied: 0 });
        cache
    }

    fn encoders(user: &UserTags, host: &str) -> Vec<Box<dyn Encoder>> {
        vec![
            Box::new(Influx::new(user.clone())),
            Box::new(Prometheus::new(user.clone())),
            Box::new(Collectd::new(host, Duration::from_secs(10))),
            Box::new(JsonLines::new(user.clone())),
        ]
    }

    /// FNV-1a of every report of a seed's run, per format (influx, Prometheus, collectd, JSON),
    /// each report built over the last and encoded by long-lived encoders, as a reporter does.
    fn digests(seed: u64) -> [u64; 4] {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let opts = ReportOptions {
            per_socket: rng.chance(3),
            max_listeners: rng.pick(&[100_000, 100_000, 50]),
            netns_tag: rng.chance(2),
            unit_tag: rng.chance(2),
        };
        let user: UserTags = match rng.below(3) {
            0 => vec![],
            1 => vec![("dc".into(), "east 1,\"x\"=\\y".into())],
            _ => vec![("zz".into(), "1".into()), ("aa".into(), "é".into())],
        };
        let mut encoders = encoders(&user, rng.pick(&["web-1", "h"]));
        let filter = Filter::default();
        let mut built = Built::default();
        let mut prev = Previous::default();
        let mut out = vec![Vec::new(); 4];
        let mut inodes = 0;
        let mut snaps: Vec<NetnsSnapshot> = Vec::new();
        for step in 0..5 {
            // Churn: a namespace's listeners kept, changed in their figures, or replaced.
            let count = 1 + rng.below(3) as usize;
            snaps.truncate(count);
            for s in snaps.iter_mut() {
                if rng.chance(3) {
                    *s = snapshot(&mut rng, &mut inodes);
                } else {
                    for sock in &mut s.sockets {
                        sock.drops = sock.drops.map(|d| d + rng.pick(&[0, 0, 1, 70]));
                        sock.depth = rng.pick(&[0, sock.depth, 3]);
                    }
                }
            }
            while snaps.len() < count {
                snaps.push(snapshot(&mut rng, &mut inodes));
            }
            let tags: Vec<(Option<&str>, Option<&str>)> = (0..count)
                .map(|i| match i {
                    0 => (None, None),
                    _ => (
                        rng.chance(2).then_some("3f2a9c1b7d4e"),
                        rng.pick(&[None, Some(""), Some("web-0")]),
                    ),
                })
                .collect();
            let readings: Vec<NsReading> = snaps
                .iter()
                .zip(&tags)
                .enumerate()
                .map(|(i, (snap, &(container, pod)))| NsReading {
                    id: i as NsId,
                    name: NAMES[i],
                    container,
                    pod,
                    snap,
                })
                .collect();
            let mut peaks = Peaks::default();
            for _ in 0..rng.below(4) {
                peaks.begin_sample();
                for (i, snap) in snaps.iter().enumerate() {
                    peaks.count_round(i as NsId);
                    for s in &snap.sockets {
                        let depth = s.depth + rng.pick(&[0, 0, 3, 200, 5000]);
                        peaks.observe(i as NsId, s.endpoint(), s.inode, depth, s.limit);
                    }
                }
            }
            let all: Vec<u32> = snaps
                .iter()
                .flat_map(|s| s.sockets.iter().map(|s| s.inode))
                .collect();
            let owners = owners(&mut rng, &all);
            let ctx = Context {
                peaks: &peaks,
                owners: &owners,
                filter: &filter,
                opts: &opts,
                timestamp: 1_764_000_000_123_456_789
                    + step * 10_000_000_000
                    + rng.below(1000) as i64,
                // The last report keeps no counters for a next one, and reads the same.
                last: step == 4,
            };
            build_into(&readings, &ctx, &mut prev, &mut built);
            for (enc, out) in encoders.iter_mut().zip(out.iter_mut()) {
                enc.encode(&built.metrics, out);
            }
        }
        let mut d = [0; 4];
        for (d, out) in d.iter_mut().zip(&out) {
            *d = fnv1a64(out);
        }
        d
    }

    #[test]
    fn seeded_reports_keep_their_bytes_in_every_format() {
        // Taken from the encoders as they were before their rewrite for speed.
        let pinned: [(u64, [u64; 4]); 12] = [
            (
                1,
                [
                    0x2ab3d086d1057817,
                    0x83b6543c16d25dc2,
                    0xd321773de5737a7d,
                    0x70cc27196ba96c14,
                ],
            ),
            (
                2,
                [
                    0x360463359012565f,
                    0xd612d963e7c9ccea,
                    0x7092b4251f74d126,
                    0xf129e9ed4d92babe,
                ],
            ),
            (
                3,
                [
                    0xc306c883b93fe785,
                    0x930cd4f3d0ca37ab,
                    0x29b775a986bb91bd,
                    0x26edb9cdf31984e4,
                ],
            ),
            (
                4,
                [
                    0xbda85d23cf2d241f,
                    0x4cdfbfc38a1e8964,
                    0x2e91a1b3623145e8,
                    0xc76d95392509cc1a,
                ],
            ),
            (
                5,
                [
                    0x43343d3390decc61,
                    0x863c0236273e1ca4,
                    0x9c07177c67ef785c,
                    0x9f560a29554dd605,
                ],
            ),
            (
                6,
                [
                    0xefbd5eb21f8cd5f,
                    0x83e914d919d63518,
                    0x1ca56e2b4a1a32ac,
                    0x2b262dc9616a6d91,
                ],
            ),
            (
                7,
                [
                    0xc86ae724c6d0e705,
                    0x78a51812143f2196,
                    0x1831d0548cac855f,
                    0x5985c4b68764073d,
                ],
            ),
            (
                8,
                [
                    0x8da8f1ba7d5e806f,
                    0x3d6e0cc29e8f70b8,
                    0xa5e1274b00848b37,
                    0xbdfbbec372c787db,
                ],
            ),
            (
                9,
                [
                    0x17dfd1c271dc97e1,
                    0x2e8a69ae67bc94bf,
                    0x38b0c2c4f4b5d530,
                    0x9bd729d4feab6f8e,
                ],
            ),
            (
                10,
                [
                    0x70d8e3321206c25a,
                    0xada92b1f19297fcc,
                    0x8588c0d7ea5ba078,
                    0x85bc533e1a178814,
                ],
            ),
            (
                11,
                [
                    0xb9a46a3c515fef0f,
                    0x69ace282b556c723,
                    0x9ce71905c3061af6,
                    0x57573314667d904f,
                ],
            ),
            (
                12,
                [
                    0x890f505d93f38110,
                    0xeb8237483fd166d8,
                    0xdc8d92ca7101eb0c,
                    0x731acfc4332b506d,
                ],
            ),
        ];
        for (seed, want) in pinned {
            let hex = |d: [u64; 4]| d.map(|d| format!("{d:#x}"));
            assert_eq!(
                hex(digests(seed)),
                hex(want),
                "seed {seed}: influx, Prometheus, collectd, JSON"
            );
        }
    }
}
