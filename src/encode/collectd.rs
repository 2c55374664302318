//! collectd `exec` plugin protocol: `PUTVAL "host/acceptq-<instance>/<type>-<instance>"`.
//!
//! collectd's rules, enforced here: plugin and type names have no `-`; no part has `/`; each
//! part is at most 127 bytes; the type exists in the standard types.db; a line of 1199 bytes or
//! more stalls collectd's reader, so every line stays below 1198. Instances keep to
//! `[A-Za-z0-9._-]` because they become file names (csv, rrdtool).
//!
//! acceptq's own warnings go the same way as `PUTNOTIF` lines ([`putnotif`]): collectd logs every
//! stderr line of an exec program at error level, whatever it says.

use std::fmt::Write as _;
use std::time::Duration;

use super::fnv1a64;
use super::Encoder;
use crate::metric::{whole_float, Decimal, Metric, MetricRef, Metrics, Value, LISTENER, SCHEMA};

pub const PLUGIN: &str = "acceptq";
pub const MAX_PART: usize = 127;
pub const MAX_LINE: usize = 1197;
/// collectd keeps a notification's message in 256 bytes, its closing NUL included, and cuts
/// the rest silently.
pub const MAX_MESSAGE: usize = 255;

pub struct Collectd {
    host: String,
    interval: Duration,
    scratch: Scratch,
    pinst: String,
    line: String,
}

impl Collectd {
    pub fn new(host: &str, interval: Duration) -> Self {
        Collectd {
            host: part(host, MAX_PART),
            interval,
            scratch: Scratch::default(),
            pinst: String::new(),
            line: String::new(),
        }
    }

    /// The identifier's host, as written.
    pub fn host(&self) -> &str {
        &self.host
    }
}

/// Appends `PUTNOTIF severity=warning time=<epoch> host=<host> plugin=acceptq message="..."`, the
/// line collectd's exec plugin turns into a notification (utils/cmds/putnotif.c). `host` is an
/// identifier part ([`Collectd::host`]), which needs no quotes. The message is quoted, with `"`
/// and `\` escaped as collectd's parse_string reads them back; control characters (a newline
/// would end the line) become spaces; a message longer than [`MAX_MESSAGE`] bytes is cut at a
/// character boundary and ends in `...`, so collectd's own cut never splits a character.
pub fn putnotif(host: &str, severity: &str, time: Duration, message: &str, out: &mut Vec<u8>) {
    let clean: String = message
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let mut text = clean.as_str();
    let cut = text.len() > MAX_MESSAGE;
    if cut {
        let mut end = MAX_MESSAGE - "...".len();
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text = &text[..end];
    }
    let mut line = format!(
        "PUTNOTIF severity={severity} time={:.3} host={host} plugin={PLUGIN} message=\"",
        time.as_secs_f64()
    );
    for c in text.chars() {
        if matches!(c, '"' | '\\') {
            line.push('\\');
        }
        line.push(c);
    }
    if cut {
        line.push_str("...");
    }
    line.push_str("\"\n");
    out.extend_from_slice(line.as_bytes());
}

/// `_` and 16 hex digits: the hash that marks a part made from altered text.
const HASH_LEN: usize = 17;

fn file_safe(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

/// Makes free text (a namespace name, a host) an identifier part of at most `max` bytes. Text
/// of `[A-Za-z0-9._-]` only that fits is kept as is. Any other text has each other character
/// replaced by `_`, is cut to leave room, and gets `_` and the 16 hex digits of the FNV-1a hash
/// of the whole original text appended: `a:b` and `a_b`, or two long names sharing their first
/// 110 bytes, stay two identifiers, the same ones on every run.
pub fn part(s: &str, max: usize) -> String {
    let mut out = String::new();
    push_part(s, max, &mut out);
    out
}

/// [`part`], appended to `out`.
fn push_part(s: &str, max: usize, out: &mut String) {
    if !s.is_empty() && s.len() <= max && s.chars().all(file_safe) && !looks_hashed(s) {
        out.push_str(s);
        return;
    }
    let start = out.len();
    out.extend(s.chars().map(|c| if file_safe(c) { c } else { '_' }));
    // Only ASCII is left, so any byte count is a character boundary.
    out.truncate(start + (out.len() - start).min(max.saturating_sub(HASH_LEN)));
    let _ = write!(out, "_{:016x}", fnv1a64(s.as_bytes()));
}

/// Whether `s` ends as a hashed part does (`_` and 16 hex digits): such a name is hashed too,
/// or `a:b` and a name spelled like `a:b`'s hashed form would share one identifier.
fn looks_hashed(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= HASH_LEN
        && b[b.len() - HASH_LEN] == b'_'
        && b[b.len() - HASH_LEN + 1..]
            .iter()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
}

/// An address as an identifier part: IPv6 colons become `_` (`::1` is `__1`). Canonical
/// address text has no `_`, so no two addresses meet; anything else goes through [`part`].
fn push_address_part(a: &str, out: &mut String) {
    if a.chars()
        .all(|c| c.is_ascii_hexdigit() || matches!(c, ':' | '.'))
        && !a.is_empty()
    {
        out.extend(a.chars().map(|c| if c == ':' { '_' } else { c }));
    } else {
        push_part(a, MAX_PART, out);
    }
}

/// A device name as an identifier part. Device names may hold `-`, which separates the parts of
/// a listener's instance, so a name with anything but `[A-Za-z0-9._]` goes through the hashed
/// form of [`part`] with `-` replaced too: `eth0` stays `eth0`, `br-lan` becomes
/// `br_lan_<hash>`, and `addr-port-iDEV-sN` reads back one way only.
fn push_interface_part(dev: &str, out: &mut String) {
    if !dev.is_empty() && dev.chars().all(|c| file_safe(c) && c != '-') && !looks_hashed(dev) {
        out.push_str(dev);
        return;
    }
    let start = out.len();
    out.extend(
        dev.chars()
            .map(|c| if file_safe(c) && c != '-' { c } else { '_' }),
    );
    out.truncate(start + (out.len() - start).min(MAX_PART - HASH_LEN));
    let _ = write!(out, "_{:016x}", fnv1a64(dev.as_bytes()));
}

/// The namespace as an instance names it: its `netns` tag, after its pod and container when
/// known (`web-0.3f2a9c1b7d4e.cni-…`), so a file name says which pod it is and a container
/// restarted (a new id) starts a new series, as it does with tags.
/// Written into `out` (cleared first); `false` when the metric has none of those tags.
fn namespace_label(t: &Named, out: &mut String) -> bool {
    out.clear();
    for part in [t.pod, t.container, t.netns].into_iter().flatten() {
        if !out.is_empty() {
            out.push('.');
        }
        out.push_str(part);
    }
    !out.is_empty()
}

/// The plugin instance of a metric: `127.0.0.1-8080`, `__1-8080` for `::1`, prefixed with the
/// namespace ([`namespace_label`]) and suffixed with `-iDEVICE` and the socket rank `-sN` when those tags are present; `netns` or
/// `netns-NAME` for namespace counters. A namespace name that must be shortened gives way to
/// the address, port and rank, which are never cut.
pub fn plugin_instance(m: &Metric) -> String {
    let mut out = String::new();
    let one = Metrics::from(std::slice::from_ref(m));
    if let Some(m) = one.get(0) {
        write_plugin_instance(&m, &mut Scratch::default(), &mut out);
    }
    out
}

/// The tags an identifier is made of, found in one pass over a metric's tags (the first of
/// each key, as [`MetricRef::tag`] finds it).
#[derive(Default)]
struct Named<'a> {
    pod: Option<&'a str>,
    container: Option<&'a str>,
    netns: Option<&'a str>,
    address: Option<&'a str>,
    port: Option<&'a str>,
    interface: Option<&'a str>,
    socket: Option<&'a str>,
}

impl<'a> Named<'a> {
    fn of(m: &MetricRef<'a>) -> Named<'a> {
        let mut t = Named::default();
        for (k, v) in m.tags() {
            let slot = match k {
                "pod" => &mut t.pod,
                "container" => &mut t.container,
                "netns" => &mut t.netns,
                "address" => &mut t.address,
                "port" => &mut t.port,
                "interface" => &mut t.interface,
                "socket" => &mut t.socket,
                _ => continue,
            };
            slot.get_or_insert(v);
        }
        t
    }
}

/// Text buffers kept from one metric to the next, so naming one allocates nothing.
#[derive(Default)]
struct Scratch {
    tail: String,
    ns: String,
}

/// [`plugin_instance`] into `out` (cleared first).
fn write_plugin_instance(m: &MetricRef, scratch: &mut Scratch, out: &mut String) {
    out.clear();
    let Scratch { tail, ns } = scratch;
    let t = Named::of(m);
    let has_ns = namespace_label(&t, ns);
    if m.name != LISTENER {
        out.push_str("netns");
        if has_ns {
            out.push('-');
            push_part(ns, MAX_PART - "netns-".len(), out);
        }
        return;
    }
    tail.clear();
    push_address_part(t.address.unwrap_or("unknown"), tail);
    tail.push('-');
    push_part(t.port.unwrap_or("0"), MAX_PART, tail);
    if let Some(dev) = t.interface {
        tail.push_str("-i");
        push_interface_part(dev, tail);
    }
    if let Some(i) = t.socket {
        tail.push_str("-s");
        push_part(i, MAX_PART, tail);
    }
    match has_ns {
        // Address, port and rank take at most 60 bytes: the name keeps 66 or more.
        true if tail.len() + 1 + HASH_LEN < MAX_PART => {
            push_part(ns, MAX_PART - tail.len() - 1, out);
            out.push('-');
            out.push_str(tail);
        }
        false if tail.len() <= MAX_PART => out.push_str(tail),
        _ => push_part(tail, MAX_PART, out),
    }
}

impl Encoder for Collectd {
    fn encode(&mut self, metrics: &Metrics, out: &mut Vec<u8>) {
        // About what a listener's lines take: the buffer grows once, not line by line.
        out.reserve(metrics.len() * 600);
        let Self {
            host,
            interval,
            scratch,
            pinst,
            line,
        } = self;
        let interval = interval.as_secs_f64();
        // What every line of a metric shares, written once per metric: the identifier up to
        // its type, and from the closing quote to the value (time formatting is dear).
        let mut head = String::new();
        let mut when = String::new();
        let mut when_of = None;
        for m in metrics.iter() {
            let Some(spec) = SCHEMA.iter().find(|s| s.name == m.name) else {
                continue;
            };
            write_plugin_instance(&m, scratch, pinst);
            head.clear();
            for part in ["PUTVAL \"", host, "/", PLUGIN, "-", pinst, "/"] {
                head.push_str(part);
            }
            if when_of != Some(m.timestamp) {
                when_of = Some(m.timestamp);
                when.clear();
                let secs = m.timestamp as f64 / 1e9;
                let _ = write!(when, "\" interval={interval:.3} {secs:.3}:");
            }
            // Fields come in schema order: each one's entry is looked for from the last one's.
            let mut from = 0;
            for (name, value) in m.fields {
                let found = (from..spec.fields.len())
                    .chain(0..from)
                    .find(|&i| spec.fields[i].name == *name);
                let Some(i) = found else { continue };
                from = i;
                let Some((kind, tinst)) = spec.fields[i].collectd else {
                    continue;
                };
                // Written straight into `out`, and taken back if it cannot go.
                let start = out.len();
                for part in [&head, kind, "-", tinst, &when] {
                    out.extend_from_slice(part.as_bytes());
                }
                match value {
                    Value::Int(i) => out.extend_from_slice(Decimal::new(*i).as_bytes()),
                    Value::Float(f) if f.is_finite() => match whole_float(*f) {
                        Some(d) => out.extend_from_slice(d.as_bytes()),
                        None => {
                            line.clear();
                            let _ = write!(line, "{f}");
                            out.extend_from_slice(line.as_bytes());
                        }
                    },
                    Value::Float(_) => {
                        out.truncate(start);
                        continue;
                    }
                }
                out.push(b'\n');
                // Parts are capped, so this holds; a line that did not would stall collectd.
                if out.len() - start > MAX_LINE + 1 {
                    out.truncate(start);
                }
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::metric::Kind;

    /// Types of collectd 5.12's types.db that acceptq may use, with their data source type.
    const TYPES_DB: [(&str, &str); 6] = [
        ("queue_length", "GAUGE"),
        ("duration", "GAUGE"),
        ("gauge", "GAUGE"),
        ("count", "GAUGE"),
        ("derive", "DERIVE"),
        ("percent", "GAUGE"),
    ];

    #[derive(Debug)]
    pub struct PutVal {
        pub host: String,
        pub plugin: String,
        pub plugin_instance: String,
        pub type_: String,
        pub type_instance: String,
        pub value: String,
    }

    /// Parses a PUTVAL line as collectd's exec plugin does (cmd_putval + parse_identifier),
    /// rejecting what collectd would reject.
    pub fn parse_putval(line: &str) -> Result<PutVal, String> {
        if line.len() >= 1198 {
            return Err(format!("line of {} bytes", line.len()));
        }
        let rest = line.strip_prefix("PUTVAL ").ok_or("not PUTVAL")?;
        let (ident, rest) = if let Some(r) = rest.strip_prefix('"') {
            let end = r.find('"').ok_or("unterminated quote")?;
            (&r[..end], r[end + 1..].trim_start())
        } else {
            rest.split_once(' ').ok_or("no value")?
        };
        let mut parts = ident.splitn(3, '/');
        let (host, plugin, type_) = match (parts.next(), parts.next(), parts.next()) {
            (Some(h), Some(p), Some(t)) => (h, p, t),
            _ => return Err(format!("identifier {ident:?} is not host/plugin/type")),
        };
        if type_.contains('/') {
            return Err("type contains /".into());
        }
        let (plugin, pinst) = plugin.split_once('-').unwrap_or((plugin, ""));
        let (type_, tinst) = type_.split_once('-').unwrap_or((type_, ""));
        for p in [host, plugin, pinst, type_, tinst] {
            if p.len() > MAX_PART {
                return Err(format!("part {p:?} longer than {MAX_PART}"));
            }
            if !p
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
            {
                return Err(format!("part {p:?} has characters unsafe in file names"));
            }
        }
        let dstype = TYPES_DB
            .iter()
            .find(|(t, _)| *t == type_)
            .map(|(_, d)| *d)
            .ok_or(format!("type {type_} not in types.db"))?;
        let mut value = None;
        for opt in rest.split_whitespace() {
            if let Some(i) = opt.strip_prefix("interval=") {
                i.parse::<f64>().map_err(|_| format!("interval {i:?}"))?;
            } else {
                let (time, v) = opt.split_once(':').ok_or(format!("value {opt:?}"))?;
                if time != "N" {
                    time.parse::<f64>().map_err(|_| format!("time {time:?}"))?;
                }
                let ok = if dstype == "DERIVE" {
                    v.parse::<i64>().is_ok()
                } else {
                    v.parse::<f64>().is_ok()
                };
                if !ok {
                    return Err(format!("{v:?} is no {dstype}"));
                }
                value = Some(v.to_string());
            }
        }
        Ok(PutVal {
            host: host.into(),
            plugin: plugin.into(),
            plugin_instance: pinst.into(),
            type_: type_.into(),
            type_instance: tinst.into(),
            value: value.ok_or("no value")?,
        })
    }

    /// The options of a PUTNOTIF line as collectd reads them (parse_option, parse_string):
    /// `key=value` or `key="quoted value"` with backslash escapes, in any order.
    pub fn parse_putnotif(line: &str) -> Result<Vec<(String, String)>, String> {
        if line.len() > MAX_LINE {
            return Err(format!("line of {} bytes", line.len()));
        }
        let mut rest = line.strip_prefix("PUTNOTIF ").ok_or("not PUTNOTIF")?;
        let mut options = Vec::new();
        while !rest.is_empty() {
            let (key, after) = rest.split_once('=').ok_or("option without =")?;
            if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("bad key {key:?}"));
            }
            let mut value = String::new();
            let mut chars = after.chars();
            if after.starts_with('"') {
                chars.next();
                loop {
                    match chars.next().ok_or("unterminated quote")? {
                        '"' => break,
                        '\\' => value.push(chars.next().ok_or("backslash at the end")?),
                        c => value.push(c),
                    }
                }
                let tail = chars.as_str();
                if !tail.is_empty() && !tail.starts_with(' ') {
                    return Err("text after a closing quote".into());
                }
                rest = tail.trim_start();
            } else {
                let end = after.find(' ').unwrap_or(after.len());
                value.push_str(&after[..end]);
                rest = after[end..].trim_start();
            }
            if value.is_empty() {
                return Err(format!("{key} is empty"));
            }
            options.push((key.to_string(), value));
        }
        Ok(options)
    }

    fn notification(message: &str) -> (String, Vec<(String, String)>) {
        let mut out = Vec::new();
        putnotif(
            "web1",
            "warning",
            Duration::from_millis(1_700_000_000_250),
            message,
            &mut out,
        );
        let line = String::from_utf8(out).unwrap();
        assert!(
            line.ends_with('\n') && line.matches('\n').count() == 1,
            "{line:?}"
        );
        let parsed = parse_putnotif(line.trim_end()).unwrap_or_else(|e| panic!("{e}: {line}"));
        (line, parsed)
    }

    #[test]
    fn warnings_become_notifications_collectd_parses_back_whole() {
        let msg = r#"cannot read /proc/<pid>/fd of 3 processes: "process" left out; C:\tmp"#;
        let (line, options) = notification(msg);
        let get = |k: &str| {
            options
                .iter()
                .find(|(o, _)| o == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("severity"), Some("warning"), "{line}");
        assert_eq!(get("time"), Some("1700000000.250"));
        assert_eq!(get("host"), Some("web1"));
        assert_eq!(get("plugin"), Some("acceptq"));
        assert_eq!(get("message"), Some(msg), "{line}");

        // A newline would end the line: the rest would be an unparsable command.
        let (_, options) = notification("two\nlines\tand a tab");
        assert_eq!(options.last().unwrap().1, "two lines and a tab");
    }

    #[test]
    fn long_messages_are_cut_within_collectds_buffer_on_a_character() {
        for filler in ["x", "é", "\"", "日本"] {
            let msg = filler.repeat(400);
            let (line, options) = notification(&msg);
            let got = &options.last().unwrap().1;
            assert!(got.len() <= MAX_MESSAGE, "{} bytes: {line}", got.len());
            assert!(
                got.len() >= MAX_MESSAGE - 6,
                "cut short: {} bytes",
                got.len()
            );
            assert!(got.ends_with("..."), "{got}");
            assert!(msg.starts_with(got.trim_end_matches("...")), "{got}");
            assert!(line.len() <= MAX_LINE, "{} bytes", line.len());
        }
        let exact = "y".repeat(MAX_MESSAGE);
        assert_eq!(
            notification(&exact).1.last().unwrap().1,
            exact,
            "fits: kept whole"
        );
    }

    fn listener(tags: Vec<(&'static str, String)>) -> Metric {
        let fields = SCHEMA[0]
            .fields
            .iter()
            .map(|f| {
                (
                    f.name,
                    if f.float {
                        Value::Float(0.5)
                    } else {
                        Value::Int(7)
                    },
                )
            })
            .collect();
        Metric {
            name: LISTENER,
            tags,
            fields,
            timestamp: 1_700_000_000_500_000_000,
        }
    }

    fn encode(m: &Metric, host: &str) -> Vec<String> {
        let mut out = Vec::new();
        Collectd::new(host, Duration::from_secs(10)).encode_all(std::slice::from_ref(m), &mut out);
        String::from_utf8(out)
            .unwrap()
            .lines()
            .map(String::from)
            .collect()
    }

    #[test]
    fn every_line_parses_as_collectd_would() {
        let m = listener(vec![
            ("address", "::1".into()),
            ("port", "8080".into()),
            ("process", "nginx".into()),
        ]);
        let lines = encode(&m, "web-1.example");
        let collectd_fields = SCHEMA[0]
            .fields
            .iter()
            .filter(|f| f.collectd.is_some())
            .count();
        assert_eq!(lines.len(), collectd_fields);
        for l in &lines {
            let p = parse_putval(l).unwrap_or_else(|e| panic!("{l}: {e}"));
            assert_eq!(
                (p.host.as_str(), p.plugin.as_str()),
                ("web-1.example", "acceptq")
            );
            assert_eq!(p.plugin_instance, "__1-8080");
            assert!(
                ["queue_length", "gauge", "count", "derive", "duration"]
                    .contains(&p.type_.as_str()),
                "{}",
                p.type_
            );
            assert!(
                !p.type_instance.is_empty() && p.value == "7" || p.value == "0.5",
                "{l}"
            );
        }
        assert_eq!(lines[0], "PUTVAL \"web-1.example/acceptq-__1-8080/queue_length-depth\" interval=10.000 1700000000.500:7");
    }

    #[test]
    fn deltas_are_left_to_collectds_derive() {
        for m in &SCHEMA {
            for f in m.fields {
                assert_eq!(
                    f.kind == Kind::Delta,
                    f.collectd.is_none() && f.name != "pid",
                    "{}",
                    f.name
                );
                if f.kind == Kind::Counter {
                    assert_eq!(f.collectd.map(|c| c.0), Some("derive"), "{}", f.name);
                }
            }
        }
    }

    #[test]
    fn hostile_tags_and_hosts_stay_within_collectds_limits() {
        let long = "x/y\"z-".repeat(100);
        let m = listener(vec![
            ("address", "0.0.0.0".into()),
            ("port", "1".into()),
            ("netns", long.clone()),
            ("socket", "3".into()),
        ]);
        for l in encode(&m, &long) {
            let p = parse_putval(&l).unwrap_or_else(|e| panic!("{l}: {e}"));
            assert!(p.plugin_instance.len() <= MAX_PART && p.host.len() <= MAX_PART);
            assert!(l.len() < 1198);
        }
        assert_eq!(part("", MAX_PART), format!("_{:016x}", fnv1a64(b"")));
    }

    #[test]
    fn pods_and_containers_name_the_instance_within_collectds_limits() {
        let netns = "cni-0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0";
        let m = listener(vec![
            ("address", "fe80::1234:5678:9abc:def0".into()),
            ("port", "65535".into()),
            ("interface", "eth0".into()),
            ("socket", "15".into()),
            ("netns", netns.into()),
            ("container", "3f2a9c1b7d4e".into()),
            ("pod", "web-0".into()),
        ]);
        let lines = encode(&m, "node-1");
        let p = parse_putval(&lines[0]).unwrap();
        assert_eq!(
            p.plugin_instance,
            format!("web-0.3f2a9c1b7d4e.{netns}-fe80__1234_5678_9abc_def0-65535-ieth0-s15")
        );
        // A pod name of 63 characters (the longest a host name label may be) does not fit
        // beside the rest: the instance is cut and hashed, and stays within every limit.
        let pod = "p".repeat(63);
        let mut long = m.clone();
        long.tags.retain(|(k, _)| *k != "pod");
        long.tags.push(("pod", pod.clone()));
        for l in encode(&long, &"h".repeat(127)) {
            let p = parse_putval(&l).unwrap_or_else(|e| panic!("{l}: {e}"));
            assert!(p.plugin_instance.len() <= MAX_PART, "{l}");
            assert!(p.plugin_instance.starts_with(&pod[..40]), "{l}");
            assert!(l.len() < 1198);
        }
        // Another container in the same pod: another instance.
        let mut other = m.clone();
        other.tags.retain(|(k, _)| *k != "container");
        other.tags.push(("container", "0123456789ab".into()));
        assert_ne!(plugin_instance(&other), plugin_instance(&m));
        let ns = Metric {
            name: crate::metric::NETNS,
            tags: vec![
                ("netns", netns.into()),
                ("container", "3f2a9c1b7d4e".into()),
                ("pod", pod.clone()),
            ],
            fields: vec![],
            timestamp: 0,
        };
        let pinst = plugin_instance(&ns);
        assert!(
            pinst.len() <= MAX_PART && pinst.starts_with("netns-ppp"),
            "{pinst}"
        );
    }

    fn instance(tags: &[(&'static str, &str)]) -> String {
        plugin_instance(&listener(
            tags.iter().map(|(k, v)| (*k, v.to_string())).collect(),
        ))
    }

    #[test]
    fn listeners_that_a_cut_would_merge_keep_distinct_instances() {
        let ns = "n".repeat(100);
        let addr = "fe80:1234:5678:9abc:def0:1234:5678:9abc";
        let mut seen = std::collections::HashSet::new();
        for (port, socket) in [("8080", "0"), ("8080", "1"), ("8081", "0"), ("8081", "1")] {
            let i = instance(&[
                ("address", addr),
                ("port", port),
                ("socket", socket),
                ("netns", &ns),
            ]);
            assert!(i.len() <= MAX_PART, "{i}");
            assert!(
                i.ends_with(&format!(
                    "-fe80_1234_5678_9abc_def0_1234_5678_9abc-{port}-s{socket}"
                )),
                "{i}"
            );
            assert!(seen.insert(i.clone()), "{i} twice");
            let line = &encode(
                &listener(vec![
                    ("address", addr.into()),
                    ("port", port.into()),
                    ("socket", socket.into()),
                    ("netns", ns.clone()),
                ]),
                "h",
            )[0];
            parse_putval(line).unwrap_or_else(|e| panic!("{line}: {e}"));
        }
        // Two long names alike in their first 110 bytes stay apart.
        let a = instance(&[
            ("address", "::"),
            ("port", "1"),
            ("netns", &format!("{ns}a")),
        ]);
        let b = instance(&[
            ("address", "::"),
            ("port", "1"),
            ("netns", &format!("{ns}b")),
        ]);
        assert_ne!(a, b);
    }

    #[test]
    fn names_that_sanitising_would_merge_stay_distinct_and_stable() {
        let i = |ns: &str| instance(&[("address", "10.0.0.1"), ("port", "80"), ("netns", ns)]);
        assert_eq!(i("a_b"), "a_b-10.0.0.1-80", "a clean name is kept as is");
        assert_ne!(i("a:b"), i("a_b"));
        assert_ne!(i("a:b"), i("a/b"));
        assert_ne!(i("/run/netns/default"), i("_run_netns_default"));
        // The hash is FNV-1a of the name: the same on every run and in every version.
        assert_eq!(i("a:b"), "a_b_e661911904a01160-10.0.0.1-80");
        assert_eq!(
            plugin_instance(&Metric {
                name: crate::metric::NETNS,
                tags: vec![("netns", "a:b".into())],
                fields: vec![],
                timestamp: 0,
            }),
            "netns-a_b_e661911904a01160"
        );
        assert_eq!(part("web-1.example", MAX_PART), "web-1.example");
        // A clean name spelled like another's hashed form is hashed in turn.
        let spelled_like = i("a_b_e661911904a01160");
        assert_ne!(spelled_like, i("a:b"));
        assert!(
            spelled_like.starts_with("a_b_e661911904a01160_"),
            "{spelled_like}"
        );
        let dev = instance(&[
            ("address", "::"),
            ("port", "1"),
            ("interface", "x_0123456789abcdef"),
        ]);
        assert!(dev.starts_with("__-1-ix_0123456789abcdef_"), "{dev}");
    }

    #[test]
    fn device_bound_listeners_get_distinct_instances() {
        let i = |addr: &str, dev: Option<&str>, socket: Option<&str>| {
            let mut tags = vec![("address", addr), ("port", "7000")];
            if let Some(d) = dev {
                tags.push(("interface", d));
            }
            if let Some(s) = socket {
                tags.push(("socket", s));
            }
            instance(&tags)
        };
        assert_eq!(i("fe80::1", Some("v0"), None), "fe80__1-7000-iv0");
        assert_eq!(
            i("0.0.0.0", Some("eth0"), Some("1")),
            "0.0.0.0-7000-ieth0-s1"
        );
        let all = [
            i("fe80::1", Some("v0"), None),
            i("fe80::1", Some("v2"), None),
            i("fe80::1", None, None),
            // Text that a plain `%` join would have merged with the first.
            i("fe80::1:a0", None, None),
            i("fe80::1", Some("a0"), None),
            // A device named like a socket rank, and one holding the separator.
            i("fe80::1", None, Some("0")),
            i("fe80::1", Some("s0"), None),
            i("fe80::1", Some("x-s1"), None),
            i("fe80::1", Some("x"), Some("1")),
            i("fe80::1", Some("x_s1"), None),
        ];
        let distinct: std::collections::HashSet<_> = all.iter().collect();
        assert_eq!(distinct.len(), all.len(), "{all:?}");
        for inst in &all {
            assert!(
                inst.len() <= MAX_PART && inst.chars().all(file_safe),
                "{inst}"
            );
        }
    }

    #[test]
    fn the_parser_rejects_what_collectd_rejects() {
        assert!(parse_putval("PUTVAL h/p/nosuchtype-x N:1").is_err());
        assert!(parse_putval("PUTVAL h/p-a/derive-x N:1.5").is_err());
        assert!(parse_putval("PUTVAL h/p N:1").is_err());
        assert!(parse_putval(&format!("PUTVAL h/p-{}/gauge N:1", "a".repeat(128))).is_err());
        assert!(parse_putval(&format!("PUTVAL \"h/p/gauge-{}\" N:1", "a".repeat(1200))).is_err());
        assert!(parse_putval("PUTVAL \"h/p-a:b/gauge\" N:1").is_err());
        assert!(parse_putval("PUTVAL h/p-a/gauge interval=10 N:1").is_ok());
    }
}

#[cfg(test)]
mod prop {
    use proptest::prelude::*;

    use super::tests::{parse_putnotif, parse_putval};
    use super::*;

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a.:_\\-/\" \n\\\\é0-9]{0,12}",
            any::<String>(),
            "[a-z]{60,140}"
        ]
    }

    fn listener(tags: Vec<(&'static str, String)>, depth: u64, ratio: f64) -> Metric {
        Metric {
            name: LISTENER,
            tags,
            fields: vec![
                ("queue_depth", Value::Int(depth)),
                ("queue_full_ratio", Value::Float(ratio)),
            ],
            timestamp: 1_700_000_000_500_000_000,
        }
    }

    proptest! {
        #![proptest_config(crate::prop_config(384))]

        /// Any tag and host text gives lines collectd's exec plugin takes, with the values as
        /// written.
        #[test]
        fn any_tags_give_lines_collectd_parses_with_their_values(
            tags in (text(), text(), text(), text(), text(), text(), text()),
            host in text(),
            depth in any::<u64>(),
            ratio in any::<f64>().prop_filter("finite", |f| f.is_finite()),
        ) {
            let (address, port, netns, pod, container, interface, socket) = tags;
            let m = listener(vec![
                ("address", address),
                ("port", port),
                ("netns", netns),
                ("pod", pod),
                ("container", container),
                ("interface", interface),
                ("socket", socket),
            ], depth, ratio);
            let mut out = Vec::new();
            Collectd::new(&host, Duration::from_secs(10)).encode_all(&[m], &mut out);
            let text = String::from_utf8(out).unwrap();
            let lines: Vec<&str> = text.lines().collect();
            prop_assert_eq!(lines.len(), 2, "{}", text);
            let mut values = Vec::new();
            for l in lines {
                let p = parse_putval(l).map_err(|e| TestCaseError::fail(format!("{e}: {l}")))?;
                prop_assert_eq!(&p.plugin, PLUGIN);
                values.push(p.value);
            }
            prop_assert_eq!(&values[0], &depth.to_string());
            prop_assert_eq!(values[1].parse::<f64>().ok(), Some(ratio));
        }

        /// Two listeners that differ in one tag never share an identifier.
        #[test]
        fn listeners_differing_in_one_tag_keep_distinct_instances(
            key in proptest::sample::select(vec!["address", "port", "netns", "pod", "container", "interface", "socket"]),
            a in text(),
            b in text(),
        ) {
            prop_assume!(a != b);
            let with = |v: &str| {
                let mut tags: Vec<(&'static str, String)> = vec![
                    ("address", "10.0.0.1".into()),
                    ("port", "80".into()),
                    ("netns", "n".into()),
                    ("pod", "p".into()),
                ];
                tags.retain(|(k, _)| *k != key);
                tags.push((key, v.to_string()));
                plugin_instance(&listener(tags, 0, 0.0))
            };
            prop_assert_ne!(with(&a), with(&b));
        }

        /// A notification's message comes back as written, control characters as spaces, or
        /// cut on a character boundary with `...` when longer than collectd keeps. (collectd
        /// refuses an empty message; acceptq's warnings always say something.)
        #[test]
        fn any_message_comes_back_from_putnotif(message in any::<String>().prop_filter("empty", |m| !m.is_empty()), long in "[a\"\\\\é日]{200,300}") {
            for message in [message, long] {
                let mut out = Vec::new();
                putnotif("h", "warning", Duration::from_secs(1), &message, &mut out);
                let line = String::from_utf8(out).unwrap();
                prop_assert!(line.ends_with('\n') && line.matches('\n').count() == 1);
                let options = parse_putnotif(line.trim_end()).map_err(|e| TestCaseError::fail(format!("{e}: {line}")))?;
                let got = &options.last().unwrap().1;
                prop_assert_eq!(&options.last().unwrap().0, "message");
                let clean: String = message.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
                if clean.len() <= MAX_MESSAGE {
                    prop_assert_eq!(got, &clean);
                } else {
                    prop_assert!(got.len() <= MAX_MESSAGE && got.ends_with("..."));
                    prop_assert!(clean.starts_with(got.strip_suffix("...").unwrap()));
                }
            }
        }
    }
}
