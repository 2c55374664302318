//! What `acceptq top` shows, as plain data: each listener's latest row, its peaks since start
//! and its depth over the last minute, the namespaces' counters as rates, and the order and
//! filter the person chose. Fed the report's metrics once per refresh; no terminal, no clock.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use crate::metric::{Metric, LISTENER, NETNS};

/// How far back the depth history reaches.
pub const HISTORY_SPAN: Duration = Duration::from_secs(60);

/// At most this many history entries per listener, whatever the refresh (100 ms: 600).
const MAX_HISTORY: usize = 600;

/// Listeners kept in memory, shown or recently gone. Past it the longest-gone are forgotten
/// first: churning ports must not grow the view without bound.
const MAX_TRACKED: usize = 4096;

/// What identifies a listener from one refresh to the next (the process may change).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    pub netns: Option<String>,
    pub address: String,
    pub port: u16,
    pub interface: Option<String>,
}

impl Key {
    /// `127.0.0.1:8080`, `[::1]:8080`, `0.0.0.0%eth0:80`.
    pub fn endpoint(&self) -> String {
        let address = if self.address.contains(':') {
            format!("[{}]", self.address)
        } else {
            self.address.clone()
        };
        match &self.interface {
            Some(dev) => format!("{address}%{dev}:{}", self.port),
            None => format!("{address}:{}", self.port),
        }
    }
}

/// One listener's figures from the latest refresh.
#[derive(Clone, Debug, PartialEq)]
pub struct Reading {
    pub process: Option<String>,
    pub pid: Option<u64>,
    pub depth: u64,
    pub limit: u64,
    /// Highest depth since the previous refresh (the sampler's peak).
    pub peak: u64,
    /// Dropped since the previous refresh; `None` on a listener's first refresh.
    pub drops_delta: Option<u64>,
    pub syn: Option<u64>,
    /// Seconds the oldest queued connection has waited; `None` with an empty queue.
    pub wait: Option<f64>,
}

impl Reading {
    fn from_metric(m: &Metric) -> Option<(Key, Reading)> {
        let key = Key {
            netns: m.tag("netns").map(str::to_string),
            address: m.tag("address")?.to_string(),
            port: m.tag("port")?.parse().ok()?,
            interface: m.tag("interface").map(str::to_string),
        };
        let reading = Reading {
            process: m.tag("process").map(str::to_string),
            pid: m.int("pid"),
            depth: m.int("queue_depth").unwrap_or(0),
            limit: m.int("queue_limit").unwrap_or(0),
            peak: m
                .int("queue_depth_max")
                .or(m.int("queue_depth"))
                .unwrap_or(0),
            drops_delta: m.int("drops_delta"),
            syn: m.int("syn_queue_depth"),
            wait: m.float("queue_wait_max"),
        };
        Some((key, reading))
    }

    /// Share of the queue's capacity (limit + 1: the kernel holds one more than the limit)
    /// reached by the peak since the previous refresh; 1 or more is full.
    pub fn saturation(&self) -> f64 {
        self.peak as f64 / (self.limit as f64 + 1.0)
    }

    /// The queue is full now or was at its peak.
    pub fn full(&self) -> bool {
        self.peak > self.limit || self.depth > self.limit
    }
}

/// A listener followed across refreshes.
#[derive(Debug)]
pub struct Track {
    pub now: Reading,
    /// Highest depth since `acceptq top` started.
    pub peak_since_start: u64,
    /// Peak of each refresh, oldest first, covering [`HISTORY_SPAN`].
    pub history: VecDeque<u64>,
    /// Drops per second over the latest refresh; `None` until there is a previous one.
    pub drops_per_s: Option<f64>,
    /// The refresh it was last seen in.
    seen: u64,
}

/// A namespace counter shown as a rate in the header: label and `_delta` field.
pub const NS_RATES: [(&str, &str); 4] = [
    ("overflows", "listen_overflows_delta"),
    ("drops", "listen_drops_delta"),
    ("reqq full drop", "reqq_full_drop_delta"),
    ("syncookies sent", "syncookies_sent_delta"),
];

/// The sysctls bounding the queues, shown in the header.
pub const NS_SYSCTLS: [&str; 4] = [
    "somaxconn",
    "tcp_max_syn_backlog",
    "tcp_syncookies",
    "tcp_abort_on_overflow",
];

#[derive(Clone, Debug, PartialEq)]
pub struct Namespace {
    pub name: Option<String>,
    /// Per second over the latest refresh, in [`NS_RATES`] order; `None` without a previous
    /// reading (or a counter this kernel lacks).
    pub rates: [Option<f64>; 4],
    /// In [`NS_SYSCTLS`] order; `None` when unreadable.
    pub sysctls: [Option<u64>; 4],
    /// Rows `--max-listeners` left out.
    pub omitted: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sort {
    /// Fullest first (peak over capacity), then most drops.
    Saturation,
    /// Most drops per second first.
    Drops,
    Port,
    Process,
}

impl Sort {
    pub fn next(self) -> Sort {
        match self {
            Sort::Saturation => Sort::Drops,
            Sort::Drops => Sort::Port,
            Sort::Port => Sort::Process,
            Sort::Process => Sort::Saturation,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Sort::Saturation => "saturation",
            Sort::Drops => "drops",
            Sort::Port => "port",
            Sort::Process => "process",
        }
    }
}

/// What the person typed after `/`: digits are a port, anything else part of a process name or
/// address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Filter {
    Port(u16),
    Text(String),
}

impl Filter {
    /// `None` for blank text (no filter).
    pub fn parse(text: &str) -> Option<Filter> {
        let t = text.trim();
        if t.is_empty() {
            return None;
        }
        let digits = t.strip_prefix(':').unwrap_or(t);
        if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(port) = digits.parse() {
                return Some(Filter::Port(port));
            }
        }
        Some(Filter::Text(t.to_lowercase()))
    }

    fn matches(&self, key: &Key, r: &Reading) -> bool {
        match self {
            Filter::Port(p) => key.port == *p,
            Filter::Text(t) => {
                r.process
                    .as_deref()
                    .is_some_and(|p| p.to_lowercase().contains(t.as_str()))
                    || key.endpoint().to_lowercase().contains(t.as_str())
            }
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Filter::Port(p) => format!("port {p}"),
            Filter::Text(t) => format!("\"{t}\""),
        }
    }
}

pub struct Model {
    tracks: HashMap<Key, Track>,
    pub namespaces: Vec<Namespace>,
    /// Refreshes so far.
    refreshes: u64,
    history_len: usize,
    pub sort: Sort,
    pub filter: Option<Filter>,
}

impl Model {
    pub fn new(refresh: Duration) -> Model {
        let per_span = HISTORY_SPAN.as_secs_f64() / refresh.as_secs_f64().max(1e-3);
        Model {
            tracks: HashMap::new(),
            namespaces: Vec::new(),
            refreshes: 0,
            history_len: (per_span.ceil() as usize).clamp(1, MAX_HISTORY),
            sort: Sort::Saturation,
            filter: None,
        }
    }

    /// Entries of depth history kept per listener: one per refresh over [`HISTORY_SPAN`].
    pub fn history_len(&self) -> usize {
        self.history_len
    }

    /// Takes one refresh's metrics; `elapsed`: the time since the previous refresh's reading,
    /// over which the deltas were counted (`None` on the first).
    pub fn update(&mut self, metrics: &[Metric], elapsed: Option<Duration>) {
        self.refreshes += 1;
        let secs = elapsed.map(|e| e.as_secs_f64()).filter(|s| *s > 0.0);
        let rate = |delta: Option<u64>| Some(delta? as f64 / secs?);
        self.namespaces.clear();
        for m in metrics {
            if m.name == NETNS {
                self.namespaces.push(Namespace {
                    name: m.tag("netns").map(str::to_string),
                    rates: NS_RATES.map(|(_, field)| rate(m.int(field))),
                    sysctls: NS_SYSCTLS.map(|field| m.int(field)),
                    omitted: m.int("listeners_omitted").unwrap_or(0),
                });
                continue;
            }
            if m.name != LISTENER {
                continue;
            }
            let Some((key, now)) = Reading::from_metric(m) else {
                continue;
            };
            let refreshes = self.refreshes;
            let track = self.tracks.entry(key).or_insert_with(|| Track {
                now: now.clone(),
                peak_since_start: 0,
                history: VecDeque::new(),
                drops_per_s: None,
                seen: refreshes,
            });
            track.peak_since_start = track.peak_since_start.max(now.peak).max(now.depth);
            if track.history.len() == self.history_len {
                track.history.pop_front();
            }
            track.history.push_back(now.peak);
            track.drops_per_s = rate(now.drops_delta);
            track.now = now;
            track.seen = refreshes;
        }
        self.forget_gone();
    }

    /// Drops listeners gone for longer than the history reaches, and the longest-gone past
    /// [`MAX_TRACKED`].
    fn forget_gone(&mut self) {
        let keep_after = self.refreshes.saturating_sub(self.history_len as u64);
        self.tracks.retain(|_, t| t.seen > keep_after);
        if self.tracks.len() > MAX_TRACKED {
            let mut seen: Vec<u64> = self.tracks.values().map(|t| t.seen).collect();
            seen.sort_unstable_by(|a, b| b.cmp(a));
            let cutoff = seen[MAX_TRACKED - 1];
            let current = self.refreshes;
            self.tracks
                .retain(|_, t| t.seen > cutoff || t.seen == current);
        }
    }

    /// Listeners tracked, shown or recently gone.
    pub fn tracked(&self) -> usize {
        self.tracks.len()
    }

    /// Listeners in the latest refresh.
    pub fn listeners(&self) -> usize {
        self.tracks
            .values()
            .filter(|t| t.seen == self.refreshes)
            .count()
    }

    /// The rows to show: listeners of the latest refresh that pass the filter, in the chosen
    /// order.
    pub fn rows(&self) -> Vec<(&Key, &Track)> {
        let mut rows: Vec<(&Key, &Track)> = self
            .tracks
            .iter()
            .filter(|(_, t)| t.seen == self.refreshes)
            .filter(|(k, t)| self.filter.as_ref().map_or(true, |f| f.matches(k, &t.now)))
            .collect();
        let drops = |t: &Track| t.drops_per_s.unwrap_or(0.0);
        let desc = |a: f64, b: f64| b.total_cmp(&a);
        rows.sort_by(|(ka, a), (kb, b)| {
            let by = match self.sort {
                Sort::Saturation => desc(a.now.saturation(), b.now.saturation())
                    .then(desc(drops(a), drops(b)))
                    .then(b.now.depth.cmp(&a.now.depth)),
                Sort::Drops => {
                    desc(drops(a), drops(b)).then(desc(a.now.saturation(), b.now.saturation()))
                }
                Sort::Port => ka.port.cmp(&kb.port),
                Sort::Process => match (&a.now.process, &b.now.process) {
                    (Some(x), Some(y)) => x.cmp(y),
                    (Some(_), None) => std::cmp::Ordering::Less,
                    (None, Some(_)) => std::cmp::Ordering::Greater,
                    (None, None) => std::cmp::Ordering::Equal,
                }
                .then(ka.port.cmp(&kb.port)),
            };
            by.then_with(|| ka.cmp(kb))
        });
        rows
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::metric::Value;

    /// A listener row as the report builds it.
    pub fn listener(port: u16, process: Option<&str>, fields: &[(&'static str, u64)]) -> Metric {
        let mut tags = vec![
            ("address", "127.0.0.1".to_string()),
            ("port", port.to_string()),
        ];
        if let Some(p) = process {
            tags.push(("process", p.to_string()));
        }
        Metric {
            name: LISTENER,
            tags,
            fields: fields.iter().map(|(k, v)| (*k, Value::Int(*v))).collect(),
            timestamp: 0,
        }
    }

    pub fn netns(fields: &[(&'static str, u64)]) -> Metric {
        Metric {
            name: NETNS,
            tags: vec![],
            fields: fields.iter().map(|(k, v)| (*k, Value::Int(*v))).collect(),
            timestamp: 0,
        }
    }

    fn order(m: &Model) -> Vec<u16> {
        m.rows().iter().map(|(k, _)| k.port).collect()
    }

    const SEC: Option<Duration> = Some(Duration::from_secs(1));

    #[test]
    fn rows_are_sorted_by_saturation_then_drops_and_the_sort_cycles() {
        let mut m = Model::new(Duration::from_secs(1));
        let metrics = [
            // 3 of capacity 129: barely used, but dropping.
            listener(
                80,
                Some("nginx"),
                &[
                    ("queue_depth_max", 3),
                    ("queue_limit", 128),
                    ("drops_delta", 50),
                ],
            ),
            // Full: peak 3 of capacity 3.
            listener(
                8080,
                Some("gunicorn"),
                &[
                    ("queue_depth_max", 3),
                    ("queue_limit", 2),
                    ("drops_delta", 7),
                ],
            ),
            // As full, fewer drops.
            listener(
                9000,
                None,
                &[
                    ("queue_depth_max", 3),
                    ("queue_limit", 2),
                    ("drops_delta", 1),
                ],
            ),
            listener(
                22,
                Some("sshd"),
                &[("queue_depth_max", 0), ("queue_limit", 128)],
            ),
        ];
        m.update(&metrics, SEC);
        assert_eq!(order(&m), [8080, 9000, 80, 22]);
        m.sort = m.sort.next();
        assert_eq!(m.sort, Sort::Drops);
        assert_eq!(order(&m), [80, 8080, 9000, 22]);
        m.sort = m.sort.next();
        assert_eq!(order(&m), [22, 80, 8080, 9000]);
        m.sort = m.sort.next();
        assert_eq!(m.sort, Sort::Process);
        assert_eq!(order(&m), [8080, 80, 22, 9000], "no process last");
        assert_eq!(m.sort.next(), Sort::Saturation);
    }

    #[test]
    fn drops_per_second_come_from_the_delta_over_the_time_between_refreshes() {
        let mut m = Model::new(Duration::from_secs(1));
        m.update(&[listener(80, None, &[("drops", 10)])], None);
        assert_eq!(
            m.rows()[0].1.drops_per_s,
            None,
            "no previous reading: no rate"
        );
        m.update(
            &[listener(80, None, &[("drops", 40), ("drops_delta", 30)])],
            Some(Duration::from_millis(1500)),
        );
        assert_eq!(m.rows()[0].1.drops_per_s, Some(20.0));
        m.update(
            &[listener(80, None, &[("drops", 40), ("drops_delta", 0)])],
            SEC,
        );
        assert_eq!(m.rows()[0].1.drops_per_s, Some(0.0));
        m.update(
            &[netns(&[
                ("listen_overflows_delta", 10),
                ("listen_drops_delta", 12),
                ("somaxconn", 4096),
                ("tcp_syncookies", 1),
            ])],
            Some(Duration::from_secs(2)),
        );
        let ns = &m.namespaces[0];
        assert_eq!(ns.rates, [Some(5.0), Some(6.0), None, None]);
        assert_eq!(ns.sysctls, [Some(4096), None, Some(1), None]);
    }

    #[test]
    fn peaks_since_start_outlive_the_refresh_and_history_stays_bounded() {
        let mut m = Model::new(Duration::from_secs(1));
        assert_eq!(m.history_len(), 60);
        m.update(
            &[listener(
                80,
                None,
                &[("queue_depth_max", 9), ("queue_limit", 16)],
            )],
            SEC,
        );
        for i in 0..200u64 {
            m.update(
                &[listener(
                    80,
                    None,
                    &[("queue_depth_max", i % 3), ("queue_limit", 16)],
                )],
                SEC,
            );
        }
        let t = m.rows()[0].1;
        assert_eq!(t.peak_since_start, 9);
        assert_eq!(t.now.peak, 199 % 3);
        assert_eq!(t.history.len(), 60, "one minute at 1 s");
        assert_eq!(*t.history.back().unwrap(), 199 % 3, "newest last");
        assert_eq!(Model::new(Duration::from_millis(100)).history_len(), 600);
        assert_eq!(Model::new(Duration::from_secs(10)).history_len(), 6);
    }

    #[test]
    fn gone_listeners_leave_the_rows_at_once_and_memory_after_the_history_span() {
        let mut m = Model::new(Duration::from_secs(10));
        m.update(&[listener(80, None, &[]), listener(81, None, &[])], SEC);
        m.update(&[listener(80, None, &[])], SEC);
        assert_eq!(order(&m), [80]);
        assert_eq!(m.tracked(), 2, "81 kept a while: it may come back");
        for _ in 0..6 {
            m.update(&[listener(80, None, &[])], SEC);
        }
        assert_eq!(m.tracked(), 1);
        // Churn: thousands of listeners appearing once each.
        let mut m = Model::new(Duration::from_secs(1));
        for round in 0..10u16 {
            let metrics: Vec<Metric> = (0..1000)
                .map(|i| listener(round * 1000 + i + 1, None, &[]))
                .collect();
            m.update(&metrics, SEC);
            assert!(m.tracked() <= MAX_TRACKED, "{}", m.tracked());
            assert_eq!(m.listeners(), 1000);
        }
    }

    #[test]
    fn a_filter_of_digits_is_a_port_and_text_matches_process_or_address() {
        assert_eq!(Filter::parse(" 8080 "), Some(Filter::Port(8080)));
        assert_eq!(Filter::parse(":80"), Some(Filter::Port(80)));
        assert_eq!(Filter::parse("99999"), Some(Filter::Text("99999".into())));
        assert_eq!(Filter::parse("  "), None);
        let mut m = Model::new(Duration::from_secs(1));
        m.update(
            &[
                listener(80, Some("nginx"), &[]),
                listener(8080, Some("Gunicorn"), &[]),
                listener(9000, None, &[]),
            ],
            SEC,
        );
        m.filter = Filter::parse("80");
        assert_eq!(order(&m), [80], "exactly the port, not 8080");
        m.filter = Filter::parse("guni");
        assert_eq!(order(&m), [8080], "case-insensitive");
        m.filter = Filter::parse("127.0.0.1:9000");
        assert_eq!(order(&m), [9000]);
        m.filter = None;
        assert_eq!(m.rows().len(), 3);
    }

    #[test]
    fn endpoints_bracket_ipv6_and_name_the_device() {
        let key = |address: &str, interface: Option<&str>| Key {
            netns: None,
            address: address.into(),
            port: 80,
            interface: interface.map(str::to_string),
        };
        assert_eq!(key("0.0.0.0", None).endpoint(), "0.0.0.0:80");
        assert_eq!(key("::", None).endpoint(), "[::]:80");
        assert_eq!(key("fe80::1", Some("v0")).endpoint(), "[fe80::1]%v0:80");
    }
}
