//! The reasoning of `acceptq check`: what was seen over the window goes in, verdicts come out,
//! each with a severity, a machine-readable kind, the listener or namespace it is about, and a
//! sentence for the person at the terminal. Pure: no I/O and no clock, so every case an
//! operator can meet is a unit test.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::Duration;

/// One socket of a listener (an SO_REUSEPORT group has several) over the window.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SocketFacts {
    /// Rank by inode within its SO_REUSEPORT group (0 for a lone socket).
    pub rank: u16,
    pub process: Option<String>,
    pub pid: Option<u64>,
    /// The accept-queue limit (`idiag_wqueue`); the queue holds limit + 1.
    pub limit: Option<u64>,
    /// The deepest queue seen in any sample of the window.
    pub peak: u64,
    /// Share of the window's samples with the queue full (depth > limit).
    pub full_ratio: Option<f64>,
    /// Packets the socket dropped during the window; `None` when unknown.
    pub drops: Option<u64>,
    /// Seen during the window but gone at its end (its group may live on).
    pub closed: bool,
}

impl SocketFacts {
    /// Seen full: depth above the limit in some sample (`sk_acceptq_is_full`).
    fn full(&self) -> bool {
        self.full_ratio.is_some_and(|r| r > 0.0) || self.limit.is_some_and(|l| self.peak > l)
    }

    fn dropped(&self) -> u64 {
        self.drops.unwrap_or(0)
    }

    /// Had room all along: never full, nothing dropped, never past half its limit.
    fn idle(&self) -> bool {
        !self.full() && self.dropped() == 0 && self.limit.is_some_and(|l| self.peak * 2 <= l)
    }
}

/// One listener (address, port, device; an SO_REUSEPORT group is one listener) over the window.
#[derive(Clone, Debug, PartialEq)]
pub struct ListenerFacts {
    /// The namespace's name when more than one is watched.
    pub netns: Option<String>,
    pub address: IpAddr,
    pub port: u16,
    pub interface: Option<String>,
    /// Its sockets by rank; never empty.
    pub sockets: Vec<SocketFacts>,
    /// The most half-open requests seen at once for its address and port.
    pub syn_peak: Option<u64>,
    /// The longest any connection was seen waiting in its queue, in seconds.
    pub wait_max: Option<f64>,
    /// Seen during the window but gone at its end.
    pub closed: bool,
}

/// A namespace over the window: TcpExt increases and the sysctls bounding the queues.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NetnsFacts {
    pub netns: Option<String>,
    pub listen_overflows: Option<u64>,
    pub listen_drops: Option<u64>,
    pub reqq_full_drop: Option<u64>,
    pub reqq_full_do_cookies: Option<u64>,
    pub syncookies_sent: Option<u64>,
    pub somaxconn: Option<u64>,
    pub tcp_max_syn_backlog: Option<u64>,
    pub tcp_syncookies: Option<u64>,
    pub tcp_abort_on_overflow: Option<u64>,
}

impl NetnsFacts {
    /// SYNs dropped because a SYN queue was full. With `tcp_syncookies=2` the SYN queue is not
    /// used at all and the flood counters rise with every SYN: they say nothing then.
    fn syn_dropped(&self) -> u64 {
        if self.tcp_syncookies == Some(2) {
            return 0;
        }
        self.reqq_full_drop.unwrap_or(0)
    }

    /// SYNs answered with a syncookie because a SYN queue was full (`tcp_syncookies=1`).
    fn syn_cookies(&self) -> u64 {
        if self.tcp_syncookies == Some(2) {
            return 0;
        }
        self.reqq_full_do_cookies
            .or(self.syncookies_sent)
            .unwrap_or(0)
    }

    fn abort_on_overflow(&self) -> bool {
        self.tcp_abort_on_overflow == Some(1)
    }
}

/// Everything `check` saw.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Facts {
    pub window: Duration,
    /// The sampler's period; zero when off.
    pub sample: Duration,
    pub listeners: Vec<ListenerFacts>,
    pub namespaces: Vec<NetnsFacts>,
    /// The listener filters given (`--port 80`), when any: drops outside them are not ours.
    pub filters: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Nothing wrong.
    Ok,
    /// Worth knowing; not a queue of the selection that was full or dropped.
    Note,
    /// A queue was full, nothing lost yet (or syncookies stood in).
    Warning,
    /// Connections were dropped (or reset).
    Critical,
}

impl Severity {
    pub fn name(self) -> &'static str {
        match self {
            Severity::Ok => "ok",
            Severity::Note => "note",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Nothing overflowed: what was checked, and the deepest queue.
    Healthy,
    /// A namespace's counters and sysctls over the window.
    Namespace,
    /// Accept queue full and packets dropped.
    AcceptQueueOverflow,
    /// Accept queue full, nothing dropped yet.
    AcceptQueueFull,
    /// Drops on a listener never seen full.
    DropsNotSeenFull,
    /// SYN queue full, SYNs dropped.
    SynQueueOverflow,
    /// SYN queue full, answered with syncookies.
    SynCookies,
    /// One socket of an SO_REUSEPORT group full while others had room.
    UnevenReuseport,
    /// The namespace counted overflows no watched listener shows.
    UnattributedOverflow,
    /// A connection waited a second or more in a queue that never filled.
    SlowAccept,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Healthy => "healthy",
            Kind::Namespace => "namespace",
            Kind::AcceptQueueOverflow => "accept_queue_overflow",
            Kind::AcceptQueueFull => "accept_queue_full",
            Kind::DropsNotSeenFull => "drops_not_seen_full",
            Kind::SynQueueOverflow => "syn_queue_overflow",
            Kind::SynCookies => "syn_cookies",
            Kind::UnevenReuseport => "uneven_reuseport",
            Kind::UnattributedOverflow => "unattributed_overflow",
            Kind::SlowAccept => "slow_accept",
        }
    }
}

/// What bounds a listener's accept-queue limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cap {
    /// The limit equals `net.core.somaxconn`: the sysctl may be what caps it.
    Somaxconn,
    /// The limit is below `net.core.somaxconn`: the backlog passed to `listen()` is the cap.
    Backlog,
    /// The limit is above `net.core.somaxconn` now: the sysctl was lowered after `listen()`.
    SomaxconnLowered,
    /// `net.core.somaxconn` could not be read.
    Unknown,
}

impl Cap {
    pub fn name(self) -> &'static str {
        match self {
            Cap::Somaxconn => "somaxconn",
            Cap::Backlog => "backlog",
            Cap::SomaxconnLowered => "somaxconn_lowered",
            Cap::Unknown => "unknown",
        }
    }

    pub fn of(limit: u64, somaxconn: Option<u64>) -> Cap {
        match somaxconn {
            None => Cap::Unknown,
            Some(s) if limit == s => Cap::Somaxconn,
            Some(s) if limit < s => Cap::Backlog,
            Some(_) => Cap::SomaxconnLowered,
        }
    }
}

/// The listener a verdict is about.
#[derive(Clone, Debug, PartialEq)]
pub struct Subject {
    pub address: IpAddr,
    pub port: u16,
    pub interface: Option<String>,
    pub process: Option<String>,
    pub pid: Option<u64>,
    /// The socket of its SO_REUSEPORT group the verdict is about, when it has several.
    pub socket: Option<u16>,
}

/// A figure behind a verdict, for scripts.
#[derive(Clone, Debug, PartialEq)]
pub enum Figure {
    Int(u64),
    Float(f64),
    Text(&'static str),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    pub severity: Severity,
    pub kind: Kind,
    /// The namespace, when more than one is watched.
    pub netns: Option<String>,
    pub listener: Option<Subject>,
    pub text: String,
    pub figures: Vec<(&'static str, Figure)>,
}

impl Verdict {
    /// Whether it makes `check` exit 1: a queue of the selection was full or dropped.
    pub fn is_problem(&self) -> bool {
        self.severity >= Severity::Warning
    }
}

/// The verdicts over `facts`: per listener those that have something to say, per namespace
/// what its counters say (and what no listener explains), and when nothing was full or
/// dropped, one `Healthy` verdict first saying what was checked.
pub fn judge(facts: &Facts) -> Vec<Verdict> {
    let mut out = Vec::new();
    let mut summaries = Vec::new();
    for ns in &facts.namespaces {
        let listeners: Vec<&ListenerFacts> = facts
            .listeners
            .iter()
            .filter(|l| l.netns == ns.netns)
            .collect();
        let mut syn_blamed = false;
        let mut overflow_blamed = false;
        for l in &listeners {
            let judged = judge_listener(l, ns, facts);
            syn_blamed |= judged.syn_blamed;
            overflow_blamed |= judged.dropped_or_full;
            out.extend(judged.verdicts);
        }
        out.extend(syn_unblamed(ns, syn_blamed, facts));
        out.extend(overflow_unblamed(ns, &listeners, overflow_blamed, facts));
        summaries.push(namespace_summary(ns, facts));
    }
    // A listener whose namespace's counters are missing is still judged on its own figures.
    let orphan = NetnsFacts::default();
    for l in &facts.listeners {
        if !facts.namespaces.iter().any(|ns| ns.netns == l.netns) {
            out.extend(judge_listener(l, &orphan, facts).verdicts);
        }
    }
    if !out.iter().any(Verdict::is_problem) {
        out.insert(0, healthy(facts));
    }
    out.extend(summaries);
    out
}

/// What one listener's verdicts are, and what they explain of its namespace's counters.
struct Judged {
    verdicts: Vec<Verdict>,
    syn_blamed: bool,
    dropped_or_full: bool,
}

fn judge_listener(l: &ListenerFacts, ns: &NetnsFacts, facts: &Facts) -> Judged {
    let mut verdicts = Vec::new();
    let drops: u64 = l.sockets.iter().map(SocketFacts::dropped).sum();
    let drops_known = l.sockets.iter().any(|s| s.drops.is_some());
    let accept_full = l.sockets.iter().any(SocketFacts::full);
    let worst = worst_socket(l);
    if accept_full {
        let drops = drops_known.then_some(drops);
        verdicts.push(accept_verdict(l, worst, drops, ns, facts));
    }
    let syn_trouble = ns.syn_dropped() > 0 || ns.syn_cookies() > 0;
    // A SYN queue shares the accept queue's limit (`inet_csk_reqsk_queue_is_full`: full at the
    // limit on older kernels, past it on recent ones, so reaching it is taken as full); a group's
    // requests cannot be split among its sockets, so only the group's summed limit proves one
    // of them full. Drops with the accept queue never full are the other sign.
    let syn_limit: Option<u64> = l.sockets.iter().map(|s| s.limit).sum();
    let syn_full = l
        .syn_peak
        .zip(syn_limit)
        .is_some_and(|(s, lim)| s > 0 && s >= lim);
    let syn_blamed = syn_trouble && (syn_full || (drops > 0 && !accept_full));
    if syn_blamed {
        verdicts.push(syn_verdict(Some(l), ns, facts));
    } else if drops > 0 && !accept_full {
        verdicts.push(drops_not_seen_full(l, worst, drops, ns, facts));
    }
    if let Some(v) = uneven_reuseport(l, facts) {
        verdicts.push(v);
    }
    if verdicts.is_empty() {
        verdicts.extend(slow_accept(l, worst, facts));
    }
    Judged {
        verdicts,
        syn_blamed,
        dropped_or_full: accept_full || drops > 0,
    }
}

/// The socket that fared worst: full longest, then most drops, then deepest against its limit.
fn worst_socket(l: &ListenerFacts) -> &SocketFacts {
    l.sockets
        .iter()
        .max_by(|a, b| {
            let key = |s: &SocketFacts| {
                (
                    s.full(),
                    s.full_ratio.unwrap_or(0.0),
                    s.dropped(),
                    s.peak as f64 / (s.limit.unwrap_or(0) + 1) as f64,
                )
            };
            let (ka, kb) = (key(a), key(b));
            ka.0.cmp(&kb.0)
                .then(ka.1.total_cmp(&kb.1))
                .then(ka.2.cmp(&kb.2))
                .then(ka.3.total_cmp(&kb.3))
                // On a tie the lowest rank, as listed.
                .then(b.rank.cmp(&a.rank))
        })
        .expect("a listener has at least one socket")
}

fn subject(l: &ListenerFacts, s: &SocketFacts) -> Subject {
    Subject {
        address: l.address,
        port: l.port,
        interface: l.interface.clone(),
        process: s.process.clone(),
        pid: s.pid,
        socket: (l.sockets.len() > 1).then_some(s.rank),
    }
}

/// `127.0.0.1:8080`, `[::1]:8080`, `[fe80::1]%v0:7000`, as `ss` writes them.
pub fn endpoint(address: IpAddr, port: u16, interface: Option<&str>) -> String {
    let addr = match address {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => format!("[{a}]"),
    };
    match interface {
        Some(i) => format!("{addr}%{i}:{port}"),
        None => format!("{addr}:{port}"),
    }
}

/// `127.0.0.1:8080 in netns blue (gunicorn, pid 6451)`; `socket 1 of 3` for a group's socket.
fn label(l: &ListenerFacts, s: &SocketFacts) -> String {
    let mut out = endpoint(l.address, l.port, l.interface.as_deref());
    if let Some(ns) = &l.netns {
        let _ = write!(out, " in netns {ns}");
    }
    let mut inside = Vec::new();
    if l.sockets.len() > 1 {
        inside.push(format!(
            "SO_REUSEPORT socket {} of {}",
            s.rank,
            l.sockets.len()
        ));
    }
    match (&s.process, s.pid) {
        (Some(p), Some(pid)) => inside.push(format!("{p}, pid {pid}")),
        (Some(p), None) => inside.push(p.clone()),
        (None, Some(pid)) => inside.push(format!("pid {pid}")),
        (None, None) => {}
    }
    if l.closed || s.closed {
        inside.push("closed during the check".into());
    }
    if !inside.is_empty() {
        let _ = write!(out, " ({})", inside.join(", "));
    }
    out
}

/// `10 s`, `1.5 s`, `250 ms`.
pub fn seconds(d: f64) -> String {
    if d < 1.0 {
        format!("{} ms", (d * 1000.0).round() as u64)
    } else if (d - d.round()).abs() < 0.05 {
        format!("{} s", d.round() as u64)
    } else {
        format!("{d:.1} s")
    }
}

fn percent(r: f64) -> String {
    let p = (r * 100.0).round();
    if p < 1.0 && r > 0.0 {
        "under 1 %".into()
    } else {
        format!("{p} %")
    }
}

/// The sentence naming what caps the limit and what to raise.
fn cap_advice(limit: u64, somaxconn: Option<u64>) -> (Cap, String) {
    let cap = Cap::of(limit, somaxconn);
    let text = match (cap, somaxconn) {
        (Cap::Somaxconn, _) => format!(
            "Its limit is {limit} = net.core.somaxconn, which caps the backlog passed to \
             listen(): raise both net.core.somaxconn and the application's backlog (the limit \
             is fixed when it calls listen(): restart it)"
        ),
        // The kernel fixes the limit at listen(): a sysctl raised since (the usual first move
        // in an incident) leaves the old cap in place, and looks like a small backlog.
        (Cap::Backlog, Some(s)) => format!(
            "Its limit is {limit} = the backlog passed to listen() (net.core.somaxconn is {s}): \
             raise the application's backlog (if net.core.somaxconn was raised after the \
             application called listen(), the old value still caps it: restart it)"
        ),
        (Cap::SomaxconnLowered, Some(s)) => format!(
            "Its limit is {limit}, above net.core.somaxconn ({s}) now: the sysctl was lowered \
             after the application called listen(), and a restart would cap the queue at {s}; \
             raise net.core.somaxconn and the application's backlog together"
        ),
        _ => format!(
            "Its limit is {limit}, the smaller of the backlog passed to listen() and \
             net.core.somaxconn (which could not be read): raise whichever is smaller"
        ),
    };
    (cap, text)
}

/// "in 10 s" for the window.
fn window(facts: &Facts) -> String {
    seconds(facts.window.as_secs_f64())
}

/// `drops`: `None` when the kernel does not report them.
fn accept_verdict(
    l: &ListenerFacts,
    s: &SocketFacts,
    drops: Option<u64>,
    ns: &NetnsFacts,
    facts: &Facts,
) -> Verdict {
    let mut text = format!("{}: accept queue full", label(l, s));
    if let Some(r) = s.full_ratio.filter(|r| *r > 0.0) {
        let _ = write!(text, " in {} of samples", percent(r));
    }
    let limit = s.limit.unwrap_or(0);
    let _ = write!(
        text,
        ", peak {} of {limit} (a full queue holds its limit + 1)",
        s.peak
    );
    if let Some(w) = l.wait_max {
        let _ = write!(text, ", oldest connection waited {}", seconds(w));
    }
    let mut figures = vec![("peak", Figure::Int(s.peak)), ("limit", Figure::Int(limit))];
    if let Some(d) = drops {
        figures.push(("drops", Figure::Int(d)));
    }
    if let Some(r) = s.full_ratio {
        figures.push(("full_ratio", Figure::Float(r)));
    }
    if let Some(w) = l.wait_max {
        figures.push(("wait_max_seconds", Figure::Float(w)));
    }
    let (cap, advice) = cap_advice(limit, ns.somaxconn);
    figures.push(("cap", Figure::Text(cap.name())));
    if let Some(sx) = ns.somaxconn {
        figures.push(("somaxconn", Figure::Int(sx)));
    }
    let (severity, kind) = if let Some(drops) = drops.filter(|d| *d > 0) {
        let _ = write!(
            text,
            ", {drops} packets dropped in {}. The server is not calling accept() fast enough. ",
            window(facts)
        );
        if ns.abort_on_overflow() {
            text.push_str(
                "net.ipv4.tcp_abort_on_overflow is 1: clients whose handshake completed into \
                 the full queue got a reset (connection reset by peer) at once, not a \
                 retransmission a second later. ",
            );
        }
        (Severity::Critical, Kind::AcceptQueueOverflow)
    } else if drops.is_none() {
        text.push_str(
            ". This kernel does not report the listener's drops: connections that arrived while \
             it was full were dropped (or reset). ",
        );
        (Severity::Warning, Kind::AcceptQueueFull)
    } else {
        let _ = write!(
            text,
            ", but nothing was dropped in {}: it is at the edge, the next connection to \
             arrive while it is full is dropped. ",
            window(facts)
        );
        (Severity::Warning, Kind::AcceptQueueFull)
    };
    let _ = write!(text, "{advice}, and find what blocks its accept loop.");
    Verdict {
        severity,
        kind,
        netns: l.netns.clone(),
        listener: Some(subject(l, s)),
        text,
        figures,
    }
}

fn drops_not_seen_full(
    l: &ListenerFacts,
    s: &SocketFacts,
    drops: u64,
    ns: &NetnsFacts,
    facts: &Facts,
) -> Verdict {
    let limit = s.limit.unwrap_or(0);
    let mut text = format!(
        "{}: {drops} packets dropped in {}, but its accept queue was never seen full (peak {} \
         of {limit}",
        label(l, s),
        window(facts),
        s.peak,
    );
    if facts.sample.is_zero() {
        text.push_str(", sampling off). ");
    } else {
        let _ = write!(
            text,
            ", sampled every {}). ",
            seconds(facts.sample.as_secs_f64())
        );
    }
    text.push_str(
        "Either bursts filled and drained it between two samples (try a shorter --sample), or \
         the listener uses TCP_DEFER_ACCEPT, whose deferred bare ACKs count as drops without \
         any overflow.",
    );
    // Every connection lost to a full queue goes through tcp_listendrop(), which counts it in
    // ListenDrops as well as on the listener; a deferred bare ACK (and any other segment the
    // listener discards) is counted on the listener alone. ListenDrops standing still in the
    // namespace proves that nothing was lost to a queue: a TCP_DEFER_ACCEPT listener counts one
    // such "drop" for nearly every connection it serves (nginx's `listen ... deferred`).
    let none_lost = ns.listen_drops == Some(0);
    match ns.listen_overflows {
        _ if none_lost => text.push_str(
            " ListenDrops did not rise in its namespace, so no connection was lost to a full \
             queue: these are segments the kernel discards on the listener, as it does with a \
             TCP_DEFER_ACCEPT listener's bare ACKs (one for nearly every connection it serves).",
        ),
        Some(0) => text.push_str(
            " ListenOverflows did not rise in its namespace, which points to TCP_DEFER_ACCEPT.",
        ),
        Some(n) => {
            let _ = write!(
                text,
                " ListenOverflows rose by {n} in its namespace, which points to short bursts."
            );
        }
        None => {}
    }
    Verdict {
        severity: if none_lost {
            Severity::Note
        } else {
            Severity::Critical
        },
        kind: Kind::DropsNotSeenFull,
        netns: l.netns.clone(),
        listener: Some(subject(l, s)),
        text,
        figures: vec![
            ("drops", Figure::Int(drops)),
            ("peak", Figure::Int(s.peak)),
            ("limit", Figure::Int(limit)),
        ],
    }
}

/// A connection that waited a second or more in a queue that never filled: no overflow, but
/// clients wait that long before the server sees them (and a SYN retransmits after 1 s: a
/// wait that long is felt).
fn slow_accept(l: &ListenerFacts, s: &SocketFacts, facts: &Facts) -> Option<Verdict> {
    let wait = l.wait_max.filter(|w| *w >= 1.0)?;
    let mut text = format!(
        "{}: a connection waited {} in its accept queue during the {} check (peak {}",
        label(l, s),
        seconds(wait),
        window(facts),
        s.peak
    );
    if let Some(limit) = s.limit {
        let _ = write!(text, " of {limit}");
    }
    text.push_str(
        ") though the queue never filled: the server is slow to call accept(), and clients \
         wait that long before it sees them. Find what blocks its accept loop.",
    );
    Some(Verdict {
        severity: Severity::Note,
        kind: Kind::SlowAccept,
        netns: l.netns.clone(),
        listener: Some(subject(l, s)),
        text,
        figures: vec![
            ("wait_max_seconds", Figure::Float(wait)),
            ("peak", Figure::Int(s.peak)),
        ],
    })
}

/// A SYN-queue overflow, about `l` when a listener is to blame, else about the namespace.
fn syn_verdict(l: Option<&ListenerFacts>, ns: &NetnsFacts, facts: &Facts) -> Verdict {
    let dropped = ns.syn_dropped();
    let cookies = ns.syn_cookies();
    let who = match l {
        Some(l) => label(l, worst_socket(l)),
        None => match &ns.netns {
            Some(n) => format!("netns {n}"),
            None => "This namespace".into(),
        },
    };
    let mut text = format!("{who}: SYN queue full");
    if let Some((peak, limit)) = l.and_then(|l| {
        let limit: Option<u64> = l.sockets.iter().map(|s| s.limit).sum();
        l.syn_peak.zip(limit)
    }) {
        let _ = write!(text, " (peak {peak} half-open requests, limit {limit})");
    }
    let syncookies = ns
        .tcp_syncookies
        .map_or("unknown".to_string(), |v| v.to_string());
    let w = window(facts);
    // The counters are the namespace's: with a listener to blame, its own drops say its share.
    let whose = if l.is_some() { " in its namespace" } else { "" };
    let own: u64 = l.map_or(0, |l| l.sockets.iter().map(SocketFacts::dropped).sum());
    let (severity, kind) = if dropped > 0 {
        let _ = write!(
            text,
            ": {dropped} SYNs dropped{whose} in {w} (TCPReqQFullDrop; net.ipv4.tcp_syncookies \
             is {syncookies})"
        );
        if own > 0 {
            let _ = write!(text, ", {own} packets dropped by this listener");
        }
        text.push_str(". ");
        (Severity::Critical, Kind::SynQueueOverflow)
    } else {
        let _ = write!(
            text,
            ": {cookies} SYNs answered with syncookies{whose} in {w} instead of being queued \
             (TCPReqQFullDoCookies). Clients still connect, though a cookie loses TCP options \
             (window scaling, SACK) when timestamps are off. "
        );
        (Severity::Warning, Kind::SynCookies)
    };
    if l.is_none() {
        text.push_str("No watched listener was seen with a full SYN queue at the readings. ");
    }
    text.push_str(
        "Handshakes arrive faster than they complete: a SYN flood, or a burst larger than the \
         SYN queue. ",
    );
    let max_syn = ns
        .tcp_max_syn_backlog
        .map_or("unknown".to_string(), |v| v.to_string());
    let _ = write!(
        text,
        "A listener's SYN queue is bounded by its accept-queue limit (the backlog passed to \
         listen(), capped by net.core.somaxconn): it holds that many requests (one more on \
         recent kernels, as the accept queue does); with syncookies off, requests from peers \
         not seen before are also refused past 3/4 of net.ipv4.tcp_max_syn_backlog \
         ({max_syn}). "
    );
    if ns.tcp_syncookies == Some(0) {
        text.push_str(
            "For a flood, turn syncookies on (net.ipv4.tcp_syncookies=1); for real traffic, \
             raise the backlog (and net.core.somaxconn) and net.ipv4.tcp_max_syn_backlog.",
        );
    } else {
        text.push_str(
            "Syncookies keep a flood from costing connections; for real traffic, raise the \
             backlog (and net.core.somaxconn) and net.ipv4.tcp_max_syn_backlog.",
        );
    }
    let mut figures = vec![
        ("syn_dropped", Figure::Int(dropped)),
        ("syncookies", Figure::Int(cookies)),
    ];
    if let Some(p) = l.and_then(|l| l.syn_peak) {
        figures.push(("syn_peak", Figure::Int(p)));
    }
    if let Some(v) = ns.tcp_syncookies {
        figures.push(("tcp_syncookies", Figure::Int(v)));
    }
    if let Some(v) = ns.tcp_max_syn_backlog {
        figures.push(("tcp_max_syn_backlog", Figure::Int(v)));
    }
    Verdict {
        severity,
        kind,
        netns: ns.netns.clone(),
        listener: l.map(|l| subject(l, worst_socket(l))),
        text,
        figures,
    }
}

/// SYN-queue trouble in the namespace that no listener shows.
fn syn_unblamed(ns: &NetnsFacts, blamed: bool, facts: &Facts) -> Option<Verdict> {
    if blamed || (ns.syn_dropped() == 0 && ns.syn_cookies() == 0) {
        return None;
    }
    let mut v = syn_verdict(None, ns, facts);
    if let Some(flags) = &facts.filters {
        let _ = write!(v.text, " It may be a listener {flags} leaves out.");
        v.severity = Severity::Note;
    }
    Some(v)
}

/// One full (or dropping) socket in an SO_REUSEPORT group while another had room: the kernel
/// picks the socket by a hash of the connection's addresses and ports, not by room.
fn uneven_reuseport(l: &ListenerFacts, facts: &Facts) -> Option<Verdict> {
    if l.sockets.len() < 2 {
        return None;
    }
    let troubled: Vec<&SocketFacts> = l
        .sockets
        .iter()
        .filter(|s| s.full() || s.dropped() > 0)
        .collect();
    // A socket that closed took no connections after: its room was no room.
    let idle: Vec<&SocketFacts> = l.sockets.iter().filter(|s| s.idle() && !s.closed).collect();
    if troubled.is_empty() || idle.is_empty() {
        return None;
    }
    let worst = worst_socket(l);
    let ranks = |v: &[&SocketFacts]| {
        v.iter()
            .map(|s| s.rank.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let idle_peak = idle.iter().map(|s| s.peak).max().unwrap_or(0);
    let whose = match (&worst.process, worst.pid) {
        (Some(p), Some(pid)) => format!("{p}, pid {pid}"),
        (_, Some(pid)) => format!("pid {pid}"),
        _ => format!("socket {}", worst.rank),
    };
    let text = format!(
        "{}: uneven SO_REUSEPORT balancing in {}: socket{} {} of {} full or dropping while \
         socket{} {} had room (peak at most {idle_peak}). The kernel picks a socket by a hash \
         of each connection's addresses and ports, not by room, so one slow or stuck process \
         overflows while the others idle: find what blocks the accept loop of {whose}.",
        endpoint(l.address, l.port, l.interface.as_deref()),
        window(facts),
        if troubled.len() > 1 { "s" } else { "" },
        ranks(&troubled),
        l.sockets.len(),
        if idle.len() > 1 { "s" } else { "" },
        ranks(&idle),
    );
    Some(Verdict {
        severity: Severity::Warning,
        kind: Kind::UnevenReuseport,
        netns: l.netns.clone(),
        listener: Some(subject(l, worst)),
        text,
        figures: vec![
            ("sockets", Figure::Int(l.sockets.len() as u64)),
            ("full_or_dropping", Figure::Int(troubled.len() as u64)),
            ("idle", Figure::Int(idle.len() as u64)),
        ],
    })
}

/// Overflows the namespace counted while no watched listener was full or dropped: a listener
/// that closed takes its drops with it.
fn overflow_unblamed(
    ns: &NetnsFacts,
    listeners: &[&ListenerFacts],
    blamed: bool,
    facts: &Facts,
) -> Option<Verdict> {
    let overflows = ns.listen_overflows.unwrap_or(0);
    let drops = ns.listen_drops.unwrap_or(0);
    // ListenDrops also counts the SYN-queue drops, said on their own.
    let unexplained = overflows > 0 || drops > ns.syn_dropped();
    if blamed || !unexplained {
        return None;
    }
    let who = match &ns.netns {
        Some(n) => format!("netns {n}"),
        None => "This namespace".into(),
    };
    let mut text = format!(
        "{who}: {overflows} accept-queue overflows (ListenOverflows) and {drops} listen drops \
         (ListenDrops) in {}, but no watched listener was seen full or dropping. ",
        window(facts)
    );
    let closed: Vec<String> = listeners
        .iter()
        .filter(|l| l.closed)
        .map(|l| endpoint(l.address, l.port, l.interface.as_deref()))
        .collect();
    let mut severity = Severity::Critical;
    if !closed.is_empty() {
        let _ = write!(
            text,
            "A listener that closes takes its drops with it, and {} closed during the check: \
             its queue overflowed before it went (a restart under load?).",
            closed.join(", ")
        );
    } else if let Some(flags) = &facts.filters {
        let _ = write!(
            text,
            "They belong to a listener {flags} leaves out, or to one that opened and closed \
             between two readings (a closing listener takes its drops with it)."
        );
        severity = Severity::Note;
    } else {
        text.push_str(
            "A listener that closes takes its drops with it: one opened, overflowed and \
             closed during the check, between two readings (a restart under load?).",
        );
    }
    Some(Verdict {
        severity,
        kind: Kind::UnattributedOverflow,
        netns: ns.netns.clone(),
        listener: None,
        text,
        figures: vec![
            ("listen_overflows", Figure::Int(overflows)),
            ("listen_drops", Figure::Int(drops)),
        ],
    })
}

fn namespace_summary(ns: &NetnsFacts, facts: &Facts) -> Verdict {
    let who = match &ns.netns {
        Some(n) => format!("netns {n}"),
        None => "Namespace counters".into(),
    };
    let counters = [
        ("ListenOverflows", ns.listen_overflows),
        ("ListenDrops", ns.listen_drops),
        ("TCPReqQFullDrop", ns.reqq_full_drop),
        ("TCPReqQFullDoCookies", ns.reqq_full_do_cookies),
        ("SyncookiesSent", ns.syncookies_sent),
    ];
    let rose: Vec<String> = counters
        .iter()
        .filter_map(|(name, v)| v.filter(|v| *v > 0).map(|v| format!("{name} +{v}")))
        .collect();
    let known = counters.iter().any(|(_, v)| v.is_some());
    let mut text = if !known {
        format!("{who}: TcpExt counters could not be read")
    } else if rose.is_empty() {
        format!(
            "{who}: no overflow, listen drop or syncookie counted in {}",
            window(facts)
        )
    } else {
        format!("{who}: {} in {}", rose.join(", "), window(facts))
    };
    let sysctls = [
        ("net.core.somaxconn", ns.somaxconn),
        ("net.ipv4.tcp_max_syn_backlog", ns.tcp_max_syn_backlog),
        ("net.ipv4.tcp_syncookies", ns.tcp_syncookies),
        ("net.ipv4.tcp_abort_on_overflow", ns.tcp_abort_on_overflow),
    ];
    let set: Vec<String> = sysctls
        .iter()
        .filter_map(|(name, v)| v.map(|v| format!("{name} {v}")))
        .collect();
    if !set.is_empty() {
        let _ = write!(text, " ({})", set.join(", "));
    }
    text.push('.');
    let mut figures = Vec::new();
    for (name, v) in [
        ("listen_overflows", ns.listen_overflows),
        ("listen_drops", ns.listen_drops),
        ("reqq_full_drop", ns.reqq_full_drop),
        ("reqq_full_do_cookies", ns.reqq_full_do_cookies),
        ("syncookies_sent", ns.syncookies_sent),
        ("somaxconn", ns.somaxconn),
        ("tcp_max_syn_backlog", ns.tcp_max_syn_backlog),
        ("tcp_syncookies", ns.tcp_syncookies),
        ("tcp_abort_on_overflow", ns.tcp_abort_on_overflow),
    ] {
        if let Some(v) = v {
            figures.push((name, Figure::Int(v)));
        }
    }
    Verdict {
        severity: if rose.is_empty() {
            Severity::Ok
        } else {
            Severity::Note
        },
        kind: Kind::Namespace,
        netns: ns.netns.clone(),
        listener: None,
        text,
        figures,
    }
}

/// "No overflow seen in 10 s on 14 listeners (deepest: 0.0.0.0:443 nginx, peak 3 of 511)".
fn healthy(facts: &Facts) -> Verdict {
    let n = facts.listeners.len();
    let mut text = format!(
        "No overflow seen in {} on {n} listener{}",
        window(facts),
        if n == 1 { "" } else { "s" }
    );
    if facts.namespaces.len() > 1 {
        let _ = write!(text, " in {} namespaces", facts.namespaces.len());
    }
    // The deepest against its limit; a group by its deepest socket.
    let deepest = facts
        .listeners
        .iter()
        .flat_map(|l| l.sockets.iter().map(move |s| (l, s)))
        .max_by(|(_, a), (_, b)| {
            let fill = |s: &SocketFacts| s.peak as f64 / (s.limit.unwrap_or(0) + 1) as f64;
            a.peak
                .cmp(&b.peak)
                .then(fill(a).total_cmp(&fill(b)))
                .then(b.rank.cmp(&a.rank))
        });
    let mut figures = vec![("listeners", Figure::Int(n as u64))];
    match deepest {
        Some((_, s)) if s.peak == 0 => text.push_str(" (every queue stayed empty)"),
        Some((l, s)) => {
            let mut who = endpoint(l.address, l.port, l.interface.as_deref());
            if let Some(p) = &s.process {
                let _ = write!(who, " {p}");
            }
            if let Some(ns) = &l.netns {
                let _ = write!(who, " in netns {ns}");
            }
            let _ = write!(text, " (deepest: {who}, peak {}", s.peak);
            if let Some(limit) = s.limit {
                let _ = write!(text, " of {limit}");
                figures.push(("limit", Figure::Int(limit)));
            }
            text.push(')');
            figures.push(("peak", Figure::Int(s.peak)));
        }
        None => {
            if let Some(flags) = &facts.filters {
                let _ = write!(text, ": no listener matches {flags}");
            }
        }
    }
    text.push('.');
    let deepest = deepest.filter(|(_, s)| s.peak > 0);
    let listener = deepest.map(|(l, s)| subject(l, s));
    Verdict {
        severity: Severity::Ok,
        kind: Kind::Healthy,
        netns: deepest.and_then(|(l, _)| l.netns.clone()),
        listener,
        text,
        figures,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    fn sock(limit: u64, peak: u64, full_ratio: f64, drops: u64) -> SocketFacts {
        SocketFacts {
            rank: 0,
            process: Some("gunicorn".into()),
            pid: Some(6451),
            limit: Some(limit),
            peak,
            full_ratio: Some(full_ratio),
            drops: Some(drops),
            closed: false,
        }
    }

    fn listener(port: u16, sockets: Vec<SocketFacts>) -> ListenerFacts {
        let sockets = sockets
            .into_iter()
            .enumerate()
            .map(|(i, s)| SocketFacts {
                rank: i as u16,
                ..s
            })
            .collect();
        ListenerFacts {
            netns: None,
            address: LO,
            port,
            interface: None,
            sockets,
            syn_peak: Some(0),
            wait_max: None,
            closed: false,
        }
    }

    fn quiet_ns() -> NetnsFacts {
        NetnsFacts {
            netns: None,
            listen_overflows: Some(0),
            listen_drops: Some(0),
            reqq_full_drop: Some(0),
            reqq_full_do_cookies: Some(0),
            syncookies_sent: Some(0),
            somaxconn: Some(4096),
            tcp_max_syn_backlog: Some(512),
            tcp_syncookies: Some(1),
            tcp_abort_on_overflow: Some(0),
        }
    }

    fn facts(listeners: Vec<ListenerFacts>, ns: NetnsFacts) -> Facts {
        Facts {
            window: Duration::from_secs(10),
            sample: Duration::from_millis(100),
            listeners,
            namespaces: vec![ns],
            filters: None,
        }
    }

    fn kinds(v: &[Verdict]) -> Vec<Kind> {
        v.iter().map(|v| v.kind).collect()
    }

    fn only(v: &[Verdict], kind: Kind) -> &Verdict {
        let found: Vec<&Verdict> = v.iter().filter(|v| v.kind == kind).collect();
        assert_eq!(found.len(), 1, "one {kind:?} in {v:#?}");
        found[0]
    }

    fn overflowing_ns() -> NetnsFacts {
        NetnsFacts {
            listen_overflows: Some(412),
            listen_drops: Some(412),
            ..quiet_ns()
        }
    }

    #[test]
    fn healthy_says_what_was_checked_and_the_deepest_queue() {
        let mut deep = listener(443, vec![sock(511, 3, 0.0, 0)]);
        deep.address = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        deep.sockets[0].process = Some("nginx".into());
        let mut ls = vec![deep];
        for p in 0..13 {
            ls.push(listener(8000 + p, vec![sock(128, 1, 0.0, 0)]));
        }
        let v = judge(&facts(ls, quiet_ns()));
        assert_eq!(kinds(&v), [Kind::Healthy, Kind::Namespace]);
        assert_eq!(
            v[0].text,
            "No overflow seen in 10 s on 14 listeners (deepest: 0.0.0.0:443 nginx, peak 3 of 511)."
        );
        assert!(!v.iter().any(Verdict::is_problem));
        assert_eq!(v[0].listener.as_ref().map(|s| s.port), Some(443));
        // Nothing queued anywhere: no listener is singled out.
        let idle = vec![listener(80, vec![sock(128, 0, 0.0, 0)])];
        let w = judge(&facts(idle, quiet_ns()));
        assert_eq!(
            w[0].text,
            "No overflow seen in 10 s on 1 listener (every queue stayed empty)."
        );
        assert_eq!(w[0].listener, None);
        assert!(
            v[1].text.contains("no overflow") && v[1].text.contains("net.core.somaxconn 4096"),
            "{}",
            v[1].text
        );
    }

    #[test]
    fn overflow_at_the_application_backlog_says_raise_the_backlog() {
        let mut l = listener(8080, vec![sock(128, 129, 0.23, 412)]);
        l.wait_max = Some(2.4);
        let v = judge(&facts(vec![l], overflowing_ns()));
        let o = only(&v, Kind::AcceptQueueOverflow);
        assert_eq!(o.severity, Severity::Critical);
        assert!(o.is_problem());
        assert_eq!(
            o.text,
            "127.0.0.1:8080 (gunicorn, pid 6451): accept queue full in 23 % of samples, peak 129 \
             of 128 (a full queue holds its limit + 1), oldest connection waited 2.4 s, 412 \
             packets dropped in 10 s. The server is not calling accept() fast enough. Its limit \
             is 128 = the backlog passed to listen() (net.core.somaxconn is 4096): raise the \
             application's backlog (if net.core.somaxconn was raised after the application \
             called listen(), the old value still caps it: restart it), and find what blocks \
             its accept loop."
        );
        assert!(o.figures.contains(&("cap", Figure::Text("backlog"))));
        assert!(!v.iter().any(|v| v.kind == Kind::Healthy));
        assert!(!v.iter().any(|v| v.kind == Kind::UnattributedOverflow));
        assert!(!v.iter().any(|v| v.kind == Kind::DropsNotSeenFull));
    }

    #[test]
    fn limit_equal_to_somaxconn_says_raise_both() {
        let ns = NetnsFacts {
            somaxconn: Some(128),
            ..overflowing_ns()
        };
        let v = judge(&facts(vec![listener(80, vec![sock(128, 129, 0.5, 9)])], ns));
        let o = only(&v, Kind::AcceptQueueOverflow);
        assert!(
            o.text.contains(
                "Its limit is 128 = net.core.somaxconn, which caps the backlog passed to \
                 listen(): raise both net.core.somaxconn and the application's backlog"
            ),
            "{}",
            o.text
        );
        assert!(!o.text.contains("(net.core.somaxconn is"), "{}", o.text);
        assert!(o.figures.contains(&("cap", Figure::Text("somaxconn"))));
    }

    #[test]
    fn limit_above_somaxconn_says_it_was_lowered_after_listen() {
        let ns = NetnsFacts {
            somaxconn: Some(64),
            ..overflowing_ns()
        };
        let v = judge(&facts(vec![listener(80, vec![sock(128, 129, 0.5, 9)])], ns));
        let o = only(&v, Kind::AcceptQueueOverflow);
        assert!(
            o.text.contains("above net.core.somaxconn (64) now"),
            "{}",
            o.text
        );
        assert_eq!(Cap::of(128, None), Cap::Unknown);
    }

    #[test]
    fn full_without_drops_is_at_the_edge() {
        let v = judge(&facts(
            vec![listener(8080, vec![sock(16, 17, 0.1, 0)])],
            quiet_ns(),
        ));
        let o = only(&v, Kind::AcceptQueueFull);
        assert_eq!(o.severity, Severity::Warning);
        assert!(o.is_problem(), "a full queue exits 1");
        assert!(
            o.text
                .contains("nothing was dropped in 10 s: it is at the edge"),
            "{}",
            o.text
        );
        assert!(
            o.text.contains("raise the application's backlog"),
            "{}",
            o.text
        );
        assert!(!v.iter().any(|v| v.kind == Kind::AcceptQueueOverflow));
        // Seen full by its peak alone (no ratio known) counts too.
        let mut s = sock(16, 17, 0.0, 0);
        s.full_ratio = None;
        let v = judge(&facts(vec![listener(8080, vec![s])], quiet_ns()));
        only(&v, Kind::AcceptQueueFull);
        // At its limit but not past it: not full.
        let v = judge(&facts(
            vec![listener(8080, vec![sock(16, 16, 0.0, 0)])],
            quiet_ns(),
        ));
        assert_eq!(kinds(&v), [Kind::Healthy, Kind::Namespace]);
    }

    #[test]
    fn full_with_drops_unknown_does_not_claim_none_were_dropped() {
        let mut s = sock(16, 17, 0.1, 0);
        s.drops = None;
        let v = judge(&facts(vec![listener(8080, vec![s])], quiet_ns()));
        let o = only(&v, Kind::AcceptQueueFull);
        assert!(
            o.text.contains("does not report the listener's drops"),
            "{}",
            o.text
        );
        assert!(!o.text.contains("nothing was dropped"), "{}", o.text);
        assert!(!o.figures.iter().any(|(k, _)| *k == "drops"));
    }

    #[test]
    fn a_long_wait_in_a_queue_that_never_filled_is_a_note() {
        let mut l = listener(8080, vec![sock(16, 3, 0.0, 0)]);
        l.wait_max = Some(2.5);
        let v = judge(&facts(vec![l.clone()], quiet_ns()));
        assert_eq!(
            kinds(&v),
            [Kind::Healthy, Kind::SlowAccept, Kind::Namespace]
        );
        let o = &v[1];
        assert_eq!(o.severity, Severity::Note);
        assert!(!o.is_problem(), "no overflow: status 0");
        assert!(
            o.text.starts_with(
                "127.0.0.1:8080 (gunicorn, pid 6451): a connection waited 2.5 s in its accept \
                 queue during the 10 s check (peak 3 of 16) though the queue never filled"
            ),
            "{}",
            o.text
        );
        l.wait_max = Some(0.3);
        let v = judge(&facts(vec![l], quiet_ns()));
        assert_eq!(kinds(&v), [Kind::Healthy, Kind::Namespace]);
    }

    #[test]
    fn drops_never_seen_full_name_both_bursts_and_defer_accept() {
        let v = judge(&facts(
            vec![listener(8080, vec![sock(128, 4, 0.0, 7)])],
            overflowing_ns(),
        ));
        let o = only(&v, Kind::DropsNotSeenFull);
        assert_eq!(o.severity, Severity::Critical);
        assert!(o.text.contains("7 packets dropped in 10 s"), "{}", o.text);
        assert!(o.text.contains("between two samples"), "{}", o.text);
        assert!(o.text.contains("TCP_DEFER_ACCEPT"), "{}", o.text);
        assert!(o.text.contains("sampled every 100 ms"), "{}", o.text);
        assert!(o.text.contains("points to short bursts"), "{}", o.text);
        // No overflow counted anywhere: the deferred ACKs are the likelier cause.
        let ns = NetnsFacts {
            listen_drops: Some(7),
            ..quiet_ns()
        };
        let v = judge(&facts(vec![listener(8080, vec![sock(128, 4, 0.0, 7)])], ns));
        let o = only(&v, Kind::DropsNotSeenFull);
        assert!(o.text.contains("points to TCP_DEFER_ACCEPT"), "{}", o.text);
        assert_eq!(
            o.severity,
            Severity::Critical,
            "ListenDrops rose: maybe ours"
        );
        assert!(!v.iter().any(|v| v.kind == Kind::UnattributedOverflow));
        // ListenDrops still: nothing was lost to a queue (a deferred-accept server's every
        // connection). A note, status 0, after the healthy answer.
        let v = judge(&facts(
            vec![listener(8080, vec![sock(128, 0, 0.0, 20)])],
            quiet_ns(),
        ));
        assert_eq!(
            kinds(&v),
            [Kind::Healthy, Kind::DropsNotSeenFull, Kind::Namespace]
        );
        let o = only(&v, Kind::DropsNotSeenFull);
        assert_eq!(o.severity, Severity::Note);
        assert!(!o.is_problem());
        assert!(
            o.text.contains("so no connection was lost to a full queue"),
            "{}",
            o.text
        );
        assert!(o.text.contains("TCP_DEFER_ACCEPT"), "{}", o.text);
    }

    #[test]
    fn syn_queue_overflow_with_syncookies_off_is_a_flood_or_a_burst() {
        let ns = NetnsFacts {
            reqq_full_drop: Some(37),
            listen_drops: Some(37),
            tcp_syncookies: Some(0),
            ..quiet_ns()
        };
        let mut l = listener(8080, vec![sock(16, 0, 0.0, 37)]);
        l.syn_peak = Some(16);
        let v = judge(&facts(vec![l], ns.clone()));
        let o = only(&v, Kind::SynQueueOverflow);
        assert_eq!(o.severity, Severity::Critical);
        let head = "127.0.0.1:8080 (gunicorn, pid 6451): SYN queue full (peak 16 half-open \
                    requests, limit 16): 37 SYNs dropped in its namespace in 10 s \
                    (TCPReqQFullDrop; net.ipv4.tcp_syncookies is 0), 37 packets dropped by \
                    this listener. ";
        assert!(o.text.starts_with(head), "{}", o.text);
        assert!(o.text.contains("turn syncookies on"), "{}", o.text);
        assert!(
            o.text.contains("net.ipv4.tcp_syncookies is 0"),
            "{}",
            o.text
        );
        assert!(
            o.text
                .contains("a SYN flood, or a burst larger than the SYN queue"),
            "{}",
            o.text
        );
        assert!(
            o.text.contains("net.ipv4.tcp_max_syn_backlog"),
            "{}",
            o.text
        );
        assert!(
            !v.iter().any(|v| v.kind == Kind::DropsNotSeenFull),
            "{v:#?}"
        );
        assert!(
            !v.iter().any(|v| v.kind == Kind::UnattributedOverflow),
            "{v:#?}"
        );
        // The SYN queue seen full by its depth alone, no drops on the listener yet: still it.
        let mut l = listener(8080, vec![sock(16, 0, 0.0, 0)]);
        l.syn_peak = Some(16);
        let v = judge(&facts(vec![l], ns.clone()));
        assert!(only(&v, Kind::SynQueueOverflow).listener.is_some());
        // Nobody seen full: the namespace says it.
        let v = judge(&facts(vec![listener(8080, vec![sock(16, 0, 0.0, 0)])], ns));
        let o = only(&v, Kind::SynQueueOverflow);
        assert_eq!(o.listener, None);
        assert!(
            o.text
                .starts_with("This namespace: SYN queue full: 37 SYNs dropped in 10 s ("),
            "{}",
            o.text
        );
    }

    #[test]
    fn syncookies_sent_for_a_full_syn_queue_warn_and_always_on_cookies_do_not() {
        let ns = NetnsFacts {
            reqq_full_do_cookies: Some(50),
            syncookies_sent: Some(50),
            ..quiet_ns()
        };
        let mut l = listener(8080, vec![sock(16, 0, 0.0, 0)]);
        l.syn_peak = Some(16);
        let v = judge(&facts(vec![l.clone()], ns.clone()));
        let o = only(&v, Kind::SynCookies);
        assert_eq!(o.severity, Severity::Warning);
        assert!(o.is_problem());
        assert!(
            o.text
                .contains("50 SYNs answered with syncookies in its namespace in 10 s"),
            "{}",
            o.text
        );
        assert!(o
            .text
            .contains("a SYN flood, or a burst larger than the SYN queue"));
        assert!(
            !o.text.contains("turn syncookies on"),
            "they are on: {}",
            o.text
        );
        // tcp_syncookies=2 sends a cookie for every SYN: no sign of a full queue.
        let always = NetnsFacts {
            tcp_syncookies: Some(2),
            reqq_full_do_cookies: Some(500),
            syncookies_sent: Some(500),
            ..quiet_ns()
        };
        let v = judge(&facts(vec![l], always));
        assert_eq!(kinds(&v), [Kind::Healthy, Kind::Namespace]);
    }

    #[test]
    fn abort_on_overflow_says_clients_get_resets_not_retransmits() {
        let ns = NetnsFacts {
            tcp_abort_on_overflow: Some(1),
            ..overflowing_ns()
        };
        let v = judge(&facts(vec![listener(80, vec![sock(128, 129, 0.5, 9)])], ns));
        let o = only(&v, Kind::AcceptQueueOverflow);
        assert!(o.text.contains("tcp_abort_on_overflow is 1"), "{}", o.text);
        assert!(o.text.contains("got a reset"), "{}", o.text);
        assert!(o.text.contains("not a retransmission"), "{}", o.text);
        let v = judge(&facts(
            vec![listener(80, vec![sock(128, 129, 0.5, 9)])],
            overflowing_ns(),
        ));
        assert!(!only(&v, Kind::AcceptQueueOverflow).text.contains("reset"));
    }

    #[test]
    fn one_full_reuseport_socket_among_idle_ones_is_uneven_balancing() {
        let mut full = sock(1, 2, 1.0, 14);
        full.pid = Some(77);
        let l = listener(9000, vec![sock(64, 3, 0.0, 0), full, sock(64, 0, 0.0, 0)]);
        let v = judge(&facts(vec![l], overflowing_ns()));
        let o = only(&v, Kind::AcceptQueueOverflow);
        assert!(
            o.text.starts_with(
                "127.0.0.1:9000 (SO_REUSEPORT socket 1 of 3, gunicorn, pid 77): accept queue \
                 full in 100 % of samples, peak 2 of 1"
            ),
            "{}",
            o.text
        );
        assert_eq!(o.listener.as_ref().unwrap().socket, Some(1));
        let u = only(&v, Kind::UnevenReuseport);
        assert_eq!(u.severity, Severity::Warning);
        assert!(
            u.text.contains(
                "socket 1 of 3 full or dropping while sockets 0, 2 had room (peak at most 3)"
            ),
            "{}",
            u.text
        );
        assert!(u.text.contains("gunicorn, pid 77"), "{}", u.text);
        // Every socket full: the group is short of room, not unevenly balanced.
        let l = listener(9000, vec![sock(64, 65, 0.4, 3), sock(64, 65, 0.3, 2)]);
        let v = judge(&facts(vec![l], overflowing_ns()));
        assert!(!v.iter().any(|v| v.kind == Kind::UnevenReuseport), "{v:#?}");
        // The one with room closed during the check: the full one was left alone.
        let mut gone = sock(64, 0, 0.0, 0);
        gone.closed = true;
        let l = listener(9000, vec![gone, sock(1, 2, 1.0, 5)]);
        let v = judge(&facts(vec![l], overflowing_ns()));
        assert!(!v.iter().any(|v| v.kind == Kind::UnevenReuseport), "{v:#?}");
        // A busy but not full socket beside the full one is not idle.
        let l = listener(9000, vec![sock(1, 2, 1.0, 5), sock(64, 40, 0.0, 0)]);
        let v = judge(&facts(vec![l], overflowing_ns()));
        assert!(!v.iter().any(|v| v.kind == Kind::UnevenReuseport), "{v:#?}");
    }

    #[test]
    fn namespace_overflows_with_no_listener_to_blame_point_at_a_closed_one() {
        let quiet = listener(8080, vec![sock(128, 0, 0.0, 0)]);
        let v = judge(&facts(vec![quiet.clone()], overflowing_ns()));
        let o = only(&v, Kind::UnattributedOverflow);
        assert_eq!(o.severity, Severity::Critical);
        assert!(
            o.text
                .contains("412 accept-queue overflows (ListenOverflows)"),
            "{}",
            o.text
        );
        assert!(o.text.contains("closed during the check"), "{}", o.text);
        assert!(o.text.contains("takes its drops with it"), "{}", o.text);
        assert!(!v.iter().any(|v| v.kind == Kind::Healthy));
        // One was seen closing: it is named.
        let mut gone = listener(9090, vec![sock(128, 0, 0.0, 0)]);
        gone.closed = true;
        let v = judge(&facts(vec![quiet.clone(), gone], overflowing_ns()));
        let o = only(&v, Kind::UnattributedOverflow);
        assert!(
            o.text.contains("127.0.0.1:9090 closed during the check"),
            "{}",
            o.text
        );
        // With filters the drops may be another listener's: a note, not a failure.
        let mut f = facts(vec![quiet], overflowing_ns());
        f.filters = Some("--port 8080".into());
        let v = judge(&f);
        let o = only(&v, Kind::UnattributedOverflow);
        assert_eq!(o.severity, Severity::Note);
        assert!(o.text.contains("--port 8080 leaves out"), "{}", o.text);
        assert!(v.iter().any(|v| v.kind == Kind::Healthy));
    }

    #[test]
    fn texts_bracket_ipv6_and_name_the_namespace_when_several_are_watched() {
        assert_eq!(endpoint("::1".parse().unwrap(), 80, None), "[::1]:80");
        assert_eq!(
            endpoint("fe80::1".parse().unwrap(), 7000, Some("v0")),
            "[fe80::1]%v0:7000"
        );
        let mut l = listener(8080, vec![sock(128, 129, 0.5, 9)]);
        l.address = IpAddr::V6(Ipv6Addr::UNSPECIFIED);
        l.netns = Some("blue".into());
        let ns = NetnsFacts {
            netns: Some("blue".into()),
            ..overflowing_ns()
        };
        let other = NetnsFacts {
            netns: Some("default".into()),
            ..quiet_ns()
        };
        let mut f = facts(vec![l], ns);
        f.namespaces.push(other);
        let v = judge(&f);
        let o = only(&v, Kind::AcceptQueueOverflow);
        assert!(
            o.text
                .starts_with("[::]:8080 in netns blue (gunicorn, pid 6451)"),
            "{}",
            o.text
        );
        assert_eq!(o.netns.as_deref(), Some("blue"));
        let summaries: Vec<&Verdict> = v.iter().filter(|v| v.kind == Kind::Namespace).collect();
        assert_eq!(summaries.len(), 2, "one per namespace");
        assert!(summaries[1].text.starts_with("netns default: no overflow"));
        let quiet = vec![listener(80, vec![sock(128, 1, 0.0, 0)])];
        let mut f = facts(quiet, quiet_ns());
        f.namespaces.push(NetnsFacts {
            netns: Some("blue".into()),
            ..quiet_ns()
        });
        assert!(judge(&f)[0]
            .text
            .starts_with("No overflow seen in 10 s on 1 listener in 2 namespaces ("));
        assert!(!v.iter().any(|v| v.kind == Kind::UnattributedOverflow));
    }

    #[test]
    fn durations_read_as_a_person_says_them() {
        assert_eq!(seconds(10.0), "10 s");
        assert_eq!(seconds(2.4), "2.4 s");
        assert_eq!(seconds(0.25), "250 ms");
        assert_eq!(percent(0.004), "under 1 %");
        assert_eq!(percent(0.23), "23 %");
    }
}
