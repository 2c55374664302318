//! `acceptq check`: watch for `--duration`, then answer in plain words which queues overflowed,
//! why, and what to change; exit 0 healthy, 1 when a queue was full or dropped, 2 on error.
//!
//! The window is read once a second after a silent first reading (the baseline), so a wait
//! seen mid-window and a listener that closed before the end still count; peaks, full shares
//! and drops are gathered over those readings. The reasoning itself is `verdict.rs`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{self, Write};
use std::net::IpAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::cli::{show_duration, CheckArgs, CheckFormat, DEFAULT_SAMPLE};
use crate::metric::{Metric, Value, LISTENER, NETNS};
use crate::output::{self, Wake};
use crate::reporter::{Reporter, RunError, SocketOf};
use crate::verdict::{self, Facts, Figure, ListenerFacts, NetnsFacts, SocketFacts, Verdict};
use crate::warn;

/// Time between readings inside the window: often enough to see a wait grow and a listener
/// go, rare enough that the SYN-queue and queue-wait dumps of each reading cost little.
const STEP: Duration = Duration::from_secs(1);

/// Runs `acceptq check` and maps its outcome to the exit status.
pub fn main(args: &CheckArgs) -> ExitCode {
    match run(args) {
        Ok(Some(problem)) => ExitCode::from(u8::from(problem)),
        // Stdout went away: nobody is left to answer.
        Ok(None) => ExitCode::SUCCESS,
        Err(RunError::Usage(msg) | RunError::Fatal(msg)) => {
            warn::error(&msg);
            ExitCode::from(2)
        }
    }
}

/// Watches, judges, prints. `Ok(Some(true))`: a queue was full or dropped; `Ok(None)`: stdout
/// closed, nothing more to say.
pub fn run(args: &CheckArgs) -> Result<Option<bool>, RunError> {
    args.select.validate().map_err(RunError::Usage)?;
    let sample = args.sample.unwrap_or(DEFAULT_SAMPLE);
    if sample > args.duration {
        // Said in terms of the flags given: a --sample the user never typed is the default.
        return Err(RunError::Usage(match args.sample {
            Some(_) => format!(
                "--sample {} is longer than --duration {}: no sample would fall in the window; \
                 give a shorter --sample",
                show_duration(sample),
                show_duration(args.duration)
            ),
            None => format!(
                "--duration {} is shorter than the sampling period ({} by default): no sample \
                 would fall in the window; give a longer --duration, or a --sample of at most {}",
                show_duration(args.duration),
                show_duration(sample),
                show_duration(args.duration)
            ),
        }));
    }
    let mut reporter = Reporter::for_terminal(&args.select, Some(sample), true)?;
    // Ctrl-C (or SIGTERM) ends the window early and answers for what was watched, as `ping`
    // answers with its summary; without the handler it would kill the answer too.
    let early_answer = output::stop_on_signals().is_ok();
    let mut window = Window::default();
    let start = Instant::now();
    let metrics = reporter.read().metrics.to_vec();
    window.add(&metrics, &reporter.socket_inodes(), None);
    let mut last = Instant::now();
    let mut stopped = false;
    loop {
        let left = args.duration.saturating_sub(start.elapsed());
        if left.is_zero() {
            break;
        }
        match output::wait(true, None, Some(left.min(STEP.max(sample)))) {
            Wake::StdoutGone => return Ok(None),
            Wake::Stopped if early_answer => stopped = true,
            _ => {}
        }
        let metrics = reporter.read().metrics.to_vec();
        let now = Instant::now();
        window.add(&metrics, &reporter.socket_inodes(), Some(now - last));
        last = now;
        if stopped {
            break;
        }
    }
    // Cut short by a signal, the answer covers the time watched, not the time asked for.
    let watched = start.elapsed().min(args.duration);
    let facts = window.facts(watched, sample, args.select.filter_flags());
    let verdicts = verdict::judge(&facts);
    let problem = verdicts.iter().any(Verdict::is_problem);
    let text = match args.format {
        CheckFormat::Text => text(&verdicts),
        CheckFormat::Json => json(&facts, &verdicts),
    };
    let mut out = io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(Some(problem)),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(None),
        Err(e) => Err(RunError::Fatal(format!("writing the answer: {e}"))),
    }
}

/// One verdict a line.
pub fn text(verdicts: &[Verdict]) -> String {
    let mut out = String::new();
    for v in verdicts {
        out.push_str(&v.text);
        out.push('\n');
    }
    out
}

/// One JSON document: the outcome, what was watched, and every verdict as an object.
pub fn json(facts: &Facts, verdicts: &[Verdict]) -> String {
    use serde_json::{json, Map, Value as J};
    let items: Vec<J> = verdicts
        .iter()
        .map(|v| {
            let mut o = Map::new();
            o.insert("severity".into(), v.severity.name().into());
            o.insert("kind".into(), v.kind.name().into());
            if let Some(ns) = &v.netns {
                o.insert("netns".into(), ns.clone().into());
            }
            if let Some(s) = &v.listener {
                o.insert("address".into(), s.address.to_string().into());
                o.insert("port".into(), s.port.into());
                if let Some(i) = &s.interface {
                    o.insert("interface".into(), i.clone().into());
                }
                if let Some(p) = &s.process {
                    o.insert("process".into(), p.clone().into());
                }
                if let Some(p) = s.pid {
                    o.insert("pid".into(), p.into());
                }
                if let Some(r) = s.socket {
                    o.insert("socket".into(), r.into());
                }
            }
            o.insert("text".into(), v.text.clone().into());
            let figures: Map<String, J> = v
                .figures
                .iter()
                .map(|(k, f)| {
                    let value = match f {
                        Figure::Int(i) => J::from(*i),
                        Figure::Float(x) => J::from(*x),
                        Figure::Text(t) => J::from(*t),
                    };
                    (k.to_string(), value)
                })
                .collect();
            o.insert("figures".into(), J::Object(figures));
            J::Object(o)
        })
        .collect();
    let doc = json!({
        "status": if verdicts.iter().any(Verdict::is_problem) { "overflow" } else { "healthy" },
        "duration_seconds": facts.window.as_secs_f64(),
        "sample_seconds": facts.sample.as_secs_f64(),
        "listeners": facts.listeners.len(),
        "namespaces": facts.namespaces.len(),
        "verdicts": items,
    });
    format!("{doc}\n")
}

/// A listener as the rows name it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct ListenerKey {
    netns: Option<String>,
    address: IpAddr,
    port: u16,
    interface: Option<String>,
}

/// One socket over the readings so far.
#[derive(Default)]
struct SocketSeen {
    /// The reading it was last seen in.
    last_seen: usize,
    /// Its `drops` (the kernel's count since it was created) at that reading.
    last_drops: Option<u64>,
    process: Option<String>,
    pid: Option<u64>,
    limit: Option<u64>,
    peak: u64,
    /// Seconds full (the full share of each reading times its length), and seconds measured.
    full_secs: f64,
    measured_secs: f64,
    drops: Option<u64>,
}

/// A socket followed across readings. By inode, not by its rank in the SO_REUSEPORT group:
/// when a socket of the group closes, the next one moves into its rank, and would be given the
/// closed one's peak, limit and drops (and its process the blame).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum SocketId {
    Inode(u32),
    /// The reading had no inode for the row (never expected): its rank, as the best there is.
    Rank(u16),
}

#[derive(Default)]
struct ListenerSeen {
    sockets: BTreeMap<SocketId, SocketSeen>,
    syn_peak: Option<u64>,
    wait_max: Option<f64>,
    /// The reading it was last seen in.
    last_seen: usize,
}

#[derive(Default)]
struct NetnsSeen {
    deltas: BTreeMap<&'static str, u64>,
    sysctls: BTreeMap<&'static str, u64>,
}

/// What the readings of the window add up to.
#[derive(Default)]
struct Window {
    listeners: BTreeMap<ListenerKey, ListenerSeen>,
    namespaces: BTreeMap<Option<String>, NetnsSeen>,
    /// Readings taken, the baseline included.
    readings: usize,
    /// Every listening socket of the latest reading, shown or filtered out: a socket not among
    /// them was created since, and all its drops fell in the window.
    inodes: HashSet<u32>,
    /// The namespaces (their `netns` tag) the latest reading had counters from: a namespace
    /// read for the first time has old sockets that only look new.
    read_namespaces: HashSet<Option<String>>,
}

/// A name from the host (a process's comm, a namespace's file name) as it may appear in one
/// line of the answer: `prctl(PR_SET_NAME)` takes any bytes, so a comm can hold a newline that
/// would start a fake verdict line, or an escape sequence the terminal would obey. Control
/// characters, and the Unicode line separators and bidi overrides that reorder or break what
/// is shown, are written `\xHH` per UTF-8 byte, as the process names already write bytes that
/// are not UTF-8 (a `\` before `xHH` in a name arrives written `\x5c`, so nothing is ambiguous).
fn printable(name: &str) -> String {
    let hostile = |c: char| {
        c.is_control()
            || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if hostile(c) {
            let mut buf = [0; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("\\x{b:02x}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn max_opt(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

impl Window {
    /// Adds one reading. `inodes`: the reading's sockets by listener, sorted (ranks index
    /// them). `since`: its distance from the previous one; `None` for the baseline, whose
    /// peaks and deltas cover the time before the window and are left out (its depth and
    /// waits now are inside it).
    fn add(&mut self, metrics: &[Metric], inodes: &[(SocketOf, u32)], since: Option<Duration>) {
        let reading = self.readings;
        self.readings += 1;
        let mut groups: HashMap<&SocketOf, Vec<u32>> = HashMap::new();
        for (of, inode) in inodes {
            groups.entry(of).or_default().push(*inode);
        }
        for m in metrics.iter().filter(|m| m.name == LISTENER) {
            let (Some(address), Some(port)) = (
                m.tag("address").and_then(|a| a.parse().ok()),
                m.tag("port").and_then(|p| p.parse().ok()),
            ) else {
                continue;
            };
            let key = ListenerKey {
                netns: m.tag("netns").map(printable),
                address,
                port,
                interface: m.tag("interface").map(printable),
            };
            let of: SocketOf = (
                m.tag("netns").map(String::from),
                address,
                port,
                m.tag("interface").map(String::from),
            );
            let rank: u16 = m.tag("socket").and_then(|r| r.parse().ok()).unwrap_or(0);
            let id = groups
                .get(&of)
                .and_then(|g| g.get(usize::from(rank)))
                .map_or(SocketId::Rank(rank), |i| SocketId::Inode(*i));
            // A socket the previous reading of its namespace did not have was created since:
            // all its drops fell in the window (none of the baseline's are).
            let created = since.is_some()
                && self.read_namespaces.contains(&of.0)
                && matches!(id, SocketId::Inode(i) if !self.inodes.contains(&i));
            let l = self.listeners.entry(key).or_default();
            l.last_seen = reading;
            l.syn_peak = max_opt(l.syn_peak, m.int("syn_queue_depth"));
            if let Some(w) = m.float("queue_wait_max") {
                l.wait_max = Some(l.wait_max.map_or(w, |x| x.max(w)));
            }
            let s = l.sockets.entry(id).or_default();
            s.last_seen = reading;
            let drops = m.int("drops");
            let before = s.last_drops;
            if drops.is_some() {
                s.last_drops = drops;
            }
            // An owner not found in one reading (a /proc race) keeps the name found before.
            if let Some(p) = m.tag("process") {
                s.process = Some(printable(p));
                s.pid = m.int("pid");
            }
            s.limit = m.int("queue_limit").or(s.limit);
            let Some(since) = since else {
                s.peak = s.peak.max(m.int("queue_depth").unwrap_or(0));
                continue;
            };
            s.peak = s.peak.max(m.int("queue_depth_max").unwrap_or(0));
            if let Some(r) = m.float("queue_full_ratio") {
                s.full_secs += r * since.as_secs_f64();
                s.measured_secs += since.as_secs_f64();
            }
            let gained = match (before, drops) {
                (_, None) => None,
                (_, Some(d)) if created => Some(d),
                // The kernel's count is 32 bits: of one socket, a smaller value wrapped.
                (Some(b), Some(d)) if d >= b => Some(d - b),
                (Some(b), Some(d)) => Some((d + (1 << 32)).saturating_sub(b)),
                // Not followed before (filtered out, or its namespace just read): the report's
                // own delta, kept only for the same socket as in its previous reading.
                (None, Some(_)) => m.int("drops_delta"),
            };
            if let Some(d) = gained {
                s.drops = Some(s.drops.unwrap_or(0) + d);
            }
        }
        self.inodes = inodes.iter().map(|(_, i)| *i).collect();
        self.read_namespaces = metrics
            .iter()
            .filter(|m| m.name == NETNS)
            .map(|m| m.tag("netns").map(String::from))
            .collect();
        for m in metrics.iter().filter(|m| m.name == NETNS) {
            let ns = self
                .namespaces
                .entry(m.tag("netns").map(printable))
                .or_default();
            for (name, value) in &m.fields {
                let Value::Int(v) = *value else { continue };
                if name.ends_with("_delta") {
                    if since.is_some() {
                        *ns.deltas.entry(name).or_default() += v;
                    }
                } else {
                    ns.sysctls.insert(name, v);
                }
            }
        }
    }

    fn facts(&self, window: Duration, sample: Duration, filters: Option<String>) -> Facts {
        let last = self.readings.saturating_sub(1);
        let listeners = self
            .listeners
            .iter()
            .map(|(key, l)| ListenerFacts {
                netns: key.netns.clone(),
                address: key.address,
                port: key.port,
                interface: key.interface.clone(),
                // Ranked by inode among every socket the window saw, as the group ranks them.
                sockets: l
                    .sockets
                    .values()
                    .enumerate()
                    .map(|(rank, s)| SocketFacts {
                        rank: u16::try_from(rank).unwrap_or(u16::MAX),
                        closed: s.last_seen != last,
                        process: s.process.clone(),
                        pid: s.pid,
                        limit: s.limit,
                        peak: s.peak,
                        full_ratio: (s.measured_secs > 0.0)
                            .then(|| (s.full_secs / s.measured_secs).clamp(0.0, 1.0)),
                        drops: s.drops,
                    })
                    .collect(),
                syn_peak: l.syn_peak,
                wait_max: l.wait_max,
                closed: l.last_seen != last,
            })
            .collect();
        let namespaces = self
            .namespaces
            .iter()
            .map(|(name, ns)| {
                let delta = |f: &str| ns.deltas.get(f).copied();
                let value = |f: &str| ns.sysctls.get(f).copied();
                NetnsFacts {
                    netns: name.clone(),
                    listen_overflows: delta("listen_overflows_delta"),
                    listen_drops: delta("listen_drops_delta"),
                    reqq_full_drop: delta("reqq_full_drop_delta"),
                    reqq_full_do_cookies: delta("reqq_full_do_cookies_delta"),
                    syncookies_sent: delta("syncookies_sent_delta"),
                    somaxconn: value("somaxconn"),
                    tcp_max_syn_backlog: value("tcp_max_syn_backlog"),
                    tcp_syncookies: value("tcp_syncookies"),
                    tcp_abort_on_overflow: value("tcp_abort_on_overflow"),
                }
            })
            .collect();
        Facts {
            window,
            sample,
            listeners,
            namespaces,
            filters,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::Kind;

    fn row(port: &str, socket: &str, fields: &[(&'static str, Value)]) -> Metric {
        Metric {
            name: LISTENER,
            tags: vec![
                ("address", "127.0.0.1".into()),
                ("port", port.into()),
                ("process", "python3".into()),
                ("socket", socket.into()),
            ],
            fields: fields.to_vec(),
            timestamp: 0,
        }
    }

    fn ns(fields: &[(&'static str, Value)]) -> Metric {
        Metric {
            name: NETNS,
            tags: vec![],
            fields: fields.to_vec(),
            timestamp: 0,
        }
    }

    const SEC: Option<Duration> = Some(Duration::from_secs(1));

    /// The reading's sockets on 127.0.0.1 in the default namespace: (port, inode).
    fn on_lo(sockets: &[(u16, u32)]) -> Vec<(SocketOf, u32)> {
        let mut v: Vec<(SocketOf, u32)> = sockets
            .iter()
            .map(|(p, i)| ((None, "127.0.0.1".parse().unwrap(), *p, None), *i))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn readings_add_up_over_the_window() {
        use Value::{Float, Int};
        let mut w = Window::default();
        // Baseline: its drops and peaks predate the window; its depth now does not.
        w.add(
            &[
                row(
                    "80",
                    "0",
                    &[
                        ("queue_depth", Int(1)),
                        ("queue_depth_max", Int(50)),
                        ("queue_limit", Int(2)),
                        ("drops", Int(1000)),
                    ],
                ),
                ns(&[("somaxconn", Int(4096)), ("listen_overflows", Int(9))]),
            ],
            &on_lo(&[(80, 100)]),
            None,
        );
        w.add(
            &[
                row(
                    "80",
                    "0",
                    &[
                        ("queue_depth_max", Int(3)),
                        ("queue_limit", Int(2)),
                        ("queue_full_ratio", Float(1.0)),
                        ("drops", Int(1004)),
                        ("drops_delta", Int(4)),
                        ("queue_wait_max", Float(0.5)),
                    ],
                ),
                // Opened since the previous reading: its drops all fell in the window.
                row("81", "0", &[("queue_limit", Int(8)), ("drops", Int(6))]),
                ns(&[("listen_overflows_delta", Int(4))]),
            ],
            &on_lo(&[(80, 100), (81, 200)]),
            SEC,
        );
        w.add(
            &[
                row(
                    "80",
                    "0",
                    &[
                        ("queue_depth_max", Int(2)),
                        ("queue_limit", Int(2)),
                        ("queue_full_ratio", Float(0.0)),
                        ("drops", Int(1005)),
                        ("drops_delta", Int(1)),
                        ("queue_wait_max", Float(1.5)),
                    ],
                ),
                ns(&[("listen_overflows_delta", Int(6))]),
            ],
            &on_lo(&[(80, 100)]),
            SEC,
        );
        let f = w.facts(Duration::from_secs(2), Duration::from_millis(100), None);
        assert_eq!(f.listeners.len(), 2);
        let l = &f.listeners[0];
        let s = &l.sockets[0];
        assert_eq!((s.peak, s.drops, s.full_ratio), (3, Some(5), Some(0.5)));
        assert_eq!(
            l.wait_max,
            Some(1.5),
            "the oldest seen in the window, not at its end"
        );
        assert!(!l.closed);
        let opened = &f.listeners[1];
        assert_eq!(opened.sockets[0].drops, Some(6));
        assert!(opened.closed, "gone from the last reading");
        assert_eq!(f.namespaces[0].listen_overflows, Some(10));
        assert_eq!(f.namespaces[0].somaxconn, Some(4096));
        let v = verdict::judge(&f);
        assert!(v.iter().any(|v| v.kind == Kind::AcceptQueueOverflow));
    }

    /// One row of an SO_REUSEPORT group of port 9000: `socket` rank, limit, depth, drops.
    fn member(socket: &str, process: &str, limit: i64, depth: i64, drops: i64) -> Metric {
        use Value::{Float, Int};
        let mut m = row(
            "9000",
            socket,
            &[
                ("queue_depth", Int(depth as u64)),
                ("queue_depth_max", Int(depth as u64)),
                ("queue_limit", Int(limit as u64)),
                (
                    "queue_full_ratio",
                    Float(if depth > limit { 1.0 } else { 0.0 }),
                ),
                ("drops", Int(drops as u64)),
            ],
        );
        m.tags[2].1 = process.into();
        m
    }

    #[test]
    fn a_group_socket_that_closes_keeps_its_figures_when_the_next_takes_its_rank() {
        let mut w = Window::default();
        // Inode 10 ("stuck", listen(1), full and dropping) is socket 0; inode 20 has room.
        let both = on_lo(&[(9000, 10), (9000, 20)]);
        w.add(
            &[
                member("0", "stuck", 1, 2, 100),
                member("1", "roomy", 64, 0, 0),
            ],
            &both,
            None,
        );
        w.add(
            &[
                member("0", "stuck", 1, 2, 103),
                member("1", "roomy", 64, 1, 0),
            ],
            &both,
            SEC,
        );
        // Inode 10 closed: inode 20 is socket 0 now.
        w.add(
            &[member("0", "roomy", 64, 3, 0)],
            &on_lo(&[(9000, 20)]),
            SEC,
        );
        let f = w.facts(Duration::from_secs(2), Duration::from_millis(100), None);
        let s = &f.listeners[0].sockets;
        assert_eq!(s.len(), 2, "both sockets seen in the window");
        assert_eq!(
            (
                s[0].process.as_deref(),
                s[0].limit,
                s[0].peak,
                s[0].drops,
                s[0].closed
            ),
            (Some("stuck"), Some(1), 2, Some(3), true)
        );
        assert_eq!(
            (
                s[1].process.as_deref(),
                s[1].limit,
                s[1].peak,
                s[1].drops,
                s[1].closed
            ),
            (Some("roomy"), Some(64), 3, Some(0), false)
        );
        assert!(!f.listeners[0].closed, "the group lives on");
        let v = verdict::judge(&f);
        let full = v
            .iter()
            .find(|v| v.kind == Kind::AcceptQueueOverflow)
            .expect("stuck's overflow");
        assert!(
            full.text
                .starts_with("127.0.0.1:9000 (SO_REUSEPORT socket 0 of 2, stuck, pid")
                || full
                    .text
                    .starts_with("127.0.0.1:9000 (SO_REUSEPORT socket 0 of 2, stuck, closed"),
            "{}",
            full.text
        );
        assert!(
            full.text.contains("closed during the check"),
            "{}",
            full.text
        );
        assert!(full.text.contains("peak 2 of 1 "), "{}", full.text);
    }

    #[test]
    fn a_socket_replaced_mid_window_gains_only_its_own_drops() {
        let mut w = Window::default();
        w.add(
            &[member("0", "old", 1, 2, 500), ns(&[])],
            &on_lo(&[(9000, 10)]),
            None,
        );
        // Closed and re-opened on the same port: a new inode whose count starts at 0.
        w.add(
            &[member("0", "new", 1, 0, 2), ns(&[])],
            &on_lo(&[(9000, 11)]),
            SEC,
        );
        w.add(
            &[member("0", "new", 1, 0, 5), ns(&[])],
            &on_lo(&[(9000, 11)]),
            SEC,
        );
        let f = w.facts(Duration::from_secs(2), Duration::from_millis(100), None);
        let s = &f.listeners[0].sockets;
        assert_eq!(
            s[0].drops, None,
            "the old socket dropped nothing seen in the window"
        );
        assert_eq!(s[1].drops, Some(5), "the new one: all of its own, no more");
        // A 32-bit count that wrapped is growth, not a negative delta.
        let mut w = Window::default();
        w.add(
            &[member("0", "p", 1, 0, 0xffff_fffe), ns(&[])],
            &on_lo(&[(9000, 10)]),
            None,
        );
        w.add(
            &[member("0", "p", 1, 0, 3), ns(&[])],
            &on_lo(&[(9000, 10)]),
            SEC,
        );
        let f = w.facts(Duration::from_secs(1), Duration::from_millis(100), None);
        assert_eq!(f.listeners[0].sockets[0].drops, Some(5));
    }

    #[test]
    fn names_from_the_host_cannot_break_or_forge_a_line() {
        assert_eq!(printable("nginx: worker"), "nginx: worker");
        assert_eq!(printable("a\nNo overflow"), "a\\x0aNo overflow");
        assert_eq!(printable("x\r\x1b[2J\t"), "x\\x0d\\x1b[2J\\x09");
        assert_eq!(
            printable("\u{85}\u{2028}\u{202e}gpj"),
            "\\xc2\\x85\\xe2\\x80\\xa8\\xe2\\x80\\xaegpj"
        );
        assert_eq!(
            printable("caf\u{e9} \\x5c"),
            "caf\u{e9} \\x5c",
            "printable text is kept"
        );
        let mut w = Window::default();
        let mut m = row("80", "0", &[("queue_limit", Value::Int(2))]);
        m.tags[2].1 = "a\nNo overflow".into();
        m.tags.push(("netns", "blue\nred".into()));
        w.add(&[m], &[], None);
        let f = w.facts(Duration::from_secs(1), Duration::from_millis(100), None);
        assert_eq!(
            f.listeners[0].sockets[0].process.as_deref(),
            Some("a\\x0aNo overflow")
        );
        assert_eq!(f.listeners[0].netns.as_deref(), Some("blue\\x0ared"));
        assert!(!text(&verdict::judge(&f)).contains("\nNo overflow"));
    }

    #[test]
    fn json_is_one_document_with_every_verdict() {
        let f = Facts {
            window: Duration::from_secs(2),
            sample: Duration::from_millis(100),
            namespaces: vec![NetnsFacts::default()],
            ..Facts::default()
        };
        let v = verdict::judge(&f);
        let doc: serde_json::Value = serde_json::from_str(&json(&f, &v)).unwrap();
        assert_eq!(doc["status"], "healthy");
        assert_eq!(doc["verdicts"][0]["kind"], "healthy");
        assert_eq!(doc["verdicts"][0]["severity"], "ok");
        assert_eq!(doc["verdicts"].as_array().unwrap().len(), v.len());
        assert_eq!(text(&v).lines().count(), v.len());
    }
}
