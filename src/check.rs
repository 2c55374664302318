//! `acceptq check`: watch for `--duration`, then answer in plain words which queues overflowed,
//! why, and what to change; exit 0 healthy, 1 when a queue was full or dropped, 2 on error.
//!
//! The window is read once a second after a silent first reading (the baseline), so a wait
//! seen mid-window and a listener that closed before the end still count; peaks, full shares
//! and drops are gathered over those readings. The reasoning itself is `verdict.rs`.

use std::collections::{BTreeMap, HashSet};
use std::io::{self, Write};
use std::net::IpAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::cli::{CheckArgs, CheckFormat, DEFAULT_SAMPLE};
use crate::metric::{Metric, Value, LISTENER, NETNS};
use crate::output::{self, Wake};
use crate::reporter::{Reporter, RunError};
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
        return Err(RunError::Usage(format!(
            "--sample {} is longer than --duration {}: no sample would fall in the window; \
             give a shorter --sample",
            show(sample),
            show(args.duration)
        )));
    }
    let mut reporter = Reporter::for_terminal(&args.select, Some(sample), true)?;
    // Ctrl-C (or SIGTERM) ends the window early and answers for what was watched, as `ping`
    // answers with its summary; without the handler it would kill the answer too.
    let early_answer = output::stop_on_signals().is_ok();
    let mut window = Window::default();
    let start = Instant::now();
    window.add(&reporter.read().metrics, None);
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
        let metrics = reporter.read().metrics;
        let now = Instant::now();
        window.add(&metrics, Some(now - last));
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

/// How a duration is written back in a message: as the user would type it.
fn show(d: Duration) -> String {
    let ms = d.as_millis();
    if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
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
    process: Option<String>,
    pid: Option<u64>,
    limit: Option<u64>,
    peak: u64,
    /// Seconds full (the full share of each reading times its length), and seconds measured.
    full_secs: f64,
    measured_secs: f64,
    drops: Option<u64>,
}

#[derive(Default)]
struct ListenerSeen {
    sockets: BTreeMap<u16, SocketSeen>,
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
    /// Listeners in the latest reading.
    present: HashSet<ListenerKey>,
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

fn int(m: &Metric, field: &str) -> Option<u64> {
    match m.field(field)? {
        Value::Int(v) => Some(v),
        Value::Float(v) => Some(v as u64),
    }
}

fn float(m: &Metric, field: &str) -> Option<f64> {
    match m.field(field)? {
        Value::Int(v) => Some(v as f64),
        Value::Float(v) => Some(v),
    }
}

fn max_opt(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

impl Window {
    /// Adds one reading. `since`: its distance from the previous one; `None` for the baseline,
    /// whose peaks and deltas cover the time before the window and are left out (its depth and
    /// waits now are inside it).
    fn add(&mut self, metrics: &[Metric], since: Option<Duration>) {
        let reading = self.readings;
        self.readings += 1;
        let mut present = HashSet::new();
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
            // A listener missing from the previous reading opened since: all its drops fell in
            // the window (none of the baseline's are).
            let opened = since.is_some() && !self.present.contains(&key);
            present.insert(key.clone());
            let l = self.listeners.entry(key).or_default();
            l.last_seen = reading;
            l.syn_peak = max_opt(l.syn_peak, int(m, "syn_queue_depth"));
            if let Some(w) = float(m, "queue_wait_max") {
                l.wait_max = Some(l.wait_max.map_or(w, |x| x.max(w)));
            }
            let rank = m.tag("socket").and_then(|r| r.parse().ok()).unwrap_or(0);
            let s = l.sockets.entry(rank).or_default();
            // An owner not found in one reading (a /proc race) keeps the name found before.
            if let Some(p) = m.tag("process") {
                s.process = Some(printable(p));
                s.pid = int(m, "pid");
            }
            s.limit = int(m, "queue_limit").or(s.limit);
            let Some(since) = since else {
                s.peak = s.peak.max(int(m, "queue_depth").unwrap_or(0));
                continue;
            };
            s.peak = s.peak.max(int(m, "queue_depth_max").unwrap_or(0));
            if let Some(r) = float(m, "queue_full_ratio") {
                s.full_secs += r * since.as_secs_f64();
                s.measured_secs += since.as_secs_f64();
            }
            let drops = match int(m, "drops_delta") {
                Some(d) => Some(d),
                None if opened => int(m, "drops"),
                None => None,
            };
            if let Some(d) = drops {
                s.drops = Some(s.drops.unwrap_or(0) + d);
            }
        }
        self.present = present;
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
                sockets: l
                    .sockets
                    .iter()
                    .map(|(rank, s)| SocketFacts {
                        rank: *rank,
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
                        ("drops_delta", Int(4)),
                        ("queue_wait_max", Float(0.5)),
                    ],
                ),
                // Opened since the previous reading: its drops all fell in the window.
                row("81", "0", &[("queue_limit", Int(8)), ("drops", Int(6))]),
                ns(&[("listen_overflows_delta", Int(4))]),
            ],
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
                        ("drops_delta", Int(1)),
                        ("queue_wait_max", Float(1.5)),
                    ],
                ),
                ns(&[("listen_overflows_delta", Int(6))]),
            ],
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
        w.add(&[m], None);
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
