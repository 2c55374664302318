//! The neutral metric model every encoder reads, and the schema: every measurement, tag and
//! field acceptq emits, with its type and unit. The README's Metrics reference is this table.

/// A field value. Everything acceptq measures is non-negative.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value {
    Int(u64),
    Float(f64),
}

/// `Default` is an empty metric for a report to fill in (see `report::build_into`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Metric {
    pub name: &'static str,
    /// Tags in schema order; encoders drop none, so builders leave out unknown tags.
    pub tags: Vec<(&'static str, String)>,
    pub fields: Vec<(&'static str, Value)>,
    /// Nanoseconds since the Unix epoch.
    pub timestamp: i64,
}

impl Metric {
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn field(&self, key: &str) -> Option<Value> {
        self.fields.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }

    /// A field as a whole number (a float one truncated), for readers that compare figures.
    pub fn int(&self, key: &str) -> Option<u64> {
        match self.field(key)? {
            Value::Int(v) => Some(v),
            Value::Float(v) => Some(v as u64),
        }
    }

    /// A field as a float, whichever way it is stored.
    pub fn float(&self, key: &str) -> Option<f64> {
        match self.field(key)? {
            Value::Int(v) => Some(v as f64),
            Value::Float(v) => Some(v),
        }
    }
}

/// A report's metrics in a few flat vectors instead of a vector of tags and one of fields per
/// metric: a report of any size is four allocations (none once the vectors are reused), and a
/// row's tag text sits next to the last row's. [`Metric`] is the same data one by one, for
/// readers that keep or make metrics singly.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Metrics {
    /// Every tag value, one after the other.
    text: String,
    /// Every metric's tags: key and end of its value in `text` (it starts where the last ends).
    tags: Vec<(&'static str, u32)>,
    fields: Vec<(&'static str, Value)>,
    heads: Vec<Head>,
}

/// One metric of [`Metrics`]: its tags and fields end where the next metric's begin.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Head {
    name: &'static str,
    timestamp: i64,
    tags_end: u32,
    fields_end: u32,
}

impl Metrics {
    /// Empties it, keeping its memory; room for `rows` more metrics of about a listener's size.
    pub fn clear_for(&mut self, rows: usize) {
        self.text.clear();
        self.tags.clear();
        self.fields.clear();
        self.heads.clear();
        self.heads.reserve(rows);
        self.tags.reserve(rows * 3);
        self.fields.reserve(rows * 8);
        self.text.reserve(rows * 16);
    }

    /// Starts a metric: the tags and fields pushed next are its.
    pub fn begin(&mut self, name: &'static str, timestamp: i64) {
        self.heads.push(Head {
            name,
            timestamp,
            tags_end: self.tags.len() as u32,
            fields_end: self.fields.len() as u32,
        });
    }

    /// Adds a tag to the last metric begun, its value written by `write`.
    pub fn tag_with(&mut self, key: &'static str, write: impl FnOnce(&mut String)) {
        write(&mut self.text);
        self.tags.push((key, self.text.len() as u32));
        if let Some(h) = self.heads.last_mut() {
            h.tags_end = self.tags.len() as u32;
        }
    }

    pub fn tag(&mut self, key: &'static str, value: &str) {
        self.tag_with(key, |t| t.push_str(value));
    }

    /// Adds a field to the last metric begun.
    pub fn field(&mut self, key: &'static str, value: Value) {
        self.fields.push((key, value));
        if let Some(h) = self.heads.last_mut() {
            h.fields_end = self.fields.len() as u32;
        }
    }

    pub fn len(&self) -> usize {
        self.heads.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heads.is_empty()
    }

    pub fn get(&self, i: usize) -> Option<MetricRef<'_>> {
        let head = self.heads.get(i)?;
        let (tags_start, fields_start) = match i.checked_sub(1) {
            Some(p) => (self.heads[p].tags_end, self.heads[p].fields_end),
            None => (0, 0),
        };
        let text_start = match tags_start.checked_sub(1) {
            Some(t) => self.tags[t as usize].1,
            None => 0,
        };
        Some(MetricRef {
            name: head.name,
            timestamp: head.timestamp,
            fields: &self.fields[fields_start as usize..head.fields_end as usize],
            tags: &self.tags[tags_start as usize..head.tags_end as usize],
            text_start,
            text: &self.text,
        })
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = MetricRef<'_>> + Clone + '_ {
        (0..self.len()).map(|i| self.get(i).unwrap_or_else(|| unreachable!()))
    }

    /// The metrics one by one.
    pub fn to_vec(&self) -> Vec<Metric> {
        self.iter().map(|m| m.to_metric()).collect()
    }
}

impl From<&[Metric]> for Metrics {
    fn from(metrics: &[Metric]) -> Metrics {
        let mut all = Metrics::default();
        for m in metrics {
            all.begin(m.name, m.timestamp);
            for (k, v) in &m.tags {
                all.tag(k, v);
            }
            for (k, v) in &m.fields {
                all.field(k, *v);
            }
        }
        all
    }
}

/// One metric of [`Metrics`], borrowed.
#[derive(Clone, Copy, Debug)]
pub struct MetricRef<'a> {
    pub name: &'static str,
    /// Nanoseconds since the Unix epoch.
    pub timestamp: i64,
    pub fields: &'a [(&'static str, Value)],
    tags: &'a [(&'static str, u32)],
    /// Where the first tag's value starts in `text`.
    text_start: u32,
    text: &'a str,
}

impl<'a> MetricRef<'a> {
    /// Tags in the order they were added, with their values.
    pub fn tags(&self) -> impl Iterator<Item = (&'static str, &'a str)> + Clone + 'a {
        let text = self.text;
        let starts = std::iter::once(self.text_start).chain(self.tags.iter().map(|t| t.1));
        self.tags
            .iter()
            .zip(starts)
            .map(move |(&(k, end), start)| (k, &text[start as usize..end as usize]))
    }

    pub fn tag(&self, key: &str) -> Option<&'a str> {
        self.tags().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    pub fn tag_count(&self) -> usize {
        self.tags.len()
    }

    pub fn field(&self, key: &str) -> Option<Value> {
        self.fields.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }

    pub fn to_metric(&self) -> Metric {
        Metric {
            name: self.name,
            tags: self.tags().map(|(k, v)| (k, v.to_string())).collect(),
            fields: self.fields.to_vec(),
            timestamp: self.timestamp,
        }
    }
}

/// A whole number's decimal digits, written without `core::fmt`: a report writes several per
/// row, and `write!` costs several times the digits themselves.
pub struct Decimal {
    digits: [u8; 20],
    start: usize,
}

impl Decimal {
    pub fn new(mut v: u64) -> Decimal {
        let mut d = Decimal {
            digits: [0; 20],
            start: 20,
        };
        loop {
            d.start -= 1;
            d.digits[d.start] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                return d;
            }
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.digits[self.start..]
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII digits were written.
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }
}

/// The digits `Display` writes for a float that is a whole number (a full ratio of 0 or 1,
/// most rows' only float), without `core::fmt`; `None` for any other value, and for -0.
pub fn whole_float(f: f64) -> Option<Decimal> {
    // Below 2^53 every whole float is exact, and `Display` writes it without a fraction.
    let whole = f.is_sign_positive() && f.fract() == 0.0 && f < 9_007_199_254_740_992.0;
    whole.then(|| Decimal::new(f as u64))
}

/// Appends an address's canonical text (as `Display` writes it); IPv4, the common case,
/// without `core::fmt`.
pub fn push_address(addr: &std::net::IpAddr, out: &mut String) {
    match addr {
        std::net::IpAddr::V4(v4) => {
            // Written whole first: one UTF-8 check for the address, not one per octet.
            let mut text = [0u8; 15];
            let mut len = 0;
            for (i, octet) in v4.octets().iter().enumerate() {
                if i > 0 {
                    text[len] = b'.';
                    len += 1;
                }
                for &d in Decimal::new(u64::from(*octet)).as_bytes() {
                    text[len] = d;
                    len += 1;
                }
            }
            out.push_str(std::str::from_utf8(&text[..len]).unwrap_or_default());
        }
        std::net::IpAddr::V6(v6) => {
            use std::fmt::Write as _;
            let _ = write!(out, "{v6}");
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A level now (or a peak over the interval).
    Gauge,
    /// Cumulative since the kernel started counting; never reset by acceptq.
    Counter,
    /// The increase of a counter since the previous report; absent without a valid previous value.
    Delta,
}

pub struct FieldSpec {
    pub name: &'static str,
    pub kind: Kind,
    pub float: bool,
    pub unit: &'static str,
    pub help: &'static str,
    /// collectd `type` and `type_instance`; `None`: not sent to collectd (deltas: collectd's
    /// DERIVE types compute rates from the counter itself).
    pub collectd: Option<(&'static str, &'static str)>,
}

pub struct TagSpec {
    pub name: &'static str,
    pub help: &'static str,
}

pub struct MeasurementSpec {
    pub name: &'static str,
    pub help: &'static str,
    pub tags: &'static [TagSpec],
    pub fields: &'static [FieldSpec],
}

pub const LISTENER: &str = "acceptq_listener";
pub const NETNS: &str = "acceptq_netns";

const fn f(
    name: &'static str,
    kind: Kind,
    unit: &'static str,
    help: &'static str,
    collectd: Option<(&'static str, &'static str)>,
) -> FieldSpec {
    FieldSpec {
        name,
        kind,
        float: false,
        unit,
        help,
        collectd,
    }
}

pub const SCHEMA: [MeasurementSpec; 2] = [
    MeasurementSpec {
        name: LISTENER,
        help: "one per listener (netns, address, port, bound device); SO_REUSEPORT sockets summed unless --per-socket",
        tags: &[
            TagSpec { name: "address", help: "local address, canonical text: 0.0.0.0, ::, 127.0.0.1, ::1" },
            TagSpec { name: "port", help: "local TCP port" },
            TagSpec { name: "interface", help: "device the listener is bound to (SO_BINDTODEVICE, or a link-local address's scope), if<index> when it has no name; absent when unbound" },
            TagSpec { name: "process", help: "comm of the lowest pid holding the socket; absent when unknown" },
            TagSpec { name: "unit", help: "with --unit: systemd unit or scope of that process (from its cgroup); absent outside any unit" },
            TagSpec { name: "socket", help: "with --per-socket: rank 0..n-1 of the socket by inode within its SO_REUSEPORT group" },
            TagSpec { name: "netns", help: "namespace name: `default` for the host's, the `ip netns` name, a Docker sandbox id, `ino-<inode>` for one held only by processes, or a path (unique by construction, see the README); only when more than one is watched" },
            TagSpec { name: "container", help: "12 hex digits of the container id (as `docker ps` shows it) of the namespace's application process, from its cgroup (Docker, containerd, CRI-O, podman); absent outside a container" },
            TagSpec { name: "pod", help: "on Kubernetes (a kubepods cgroup): the pod, the host name of the namespace's UTS namespace; absent elsewhere" },
        ],
        fields: &[
            f("queue_depth", Kind::Gauge, "connections", "connections waiting in the accept queue now (idiag_rqueue)", Some(("queue_length", "depth"))),
            f("queue_depth_max", Kind::Gauge, "connections", "peak accept-queue depth since the previous report, over every sample", Some(("queue_length", "depth_max"))),
            f("queue_limit", Kind::Gauge, "connections", "accept-queue limit: min(listen backlog, net.core.somaxconn) (idiag_wqueue); the queue holds limit + 1", Some(("queue_length", "limit"))),
            FieldSpec {
                name: "queue_full_ratio",
                kind: Kind::Gauge,
                float: true,
                unit: "ratio 0..1",
                help: "share of samples since the previous report with the queue full (depth > limit); the fullest socket's with SO_REUSEPORT",
                collectd: Some(("gauge", "full_ratio")),
            },
            f("drops", Kind::Counter, "packets", "sk_drops of the socket(s): SYNs and ACKs dropped by the listener (tracks ListenDrops)", Some(("derive", "drops"))),
            f("drops_delta", Kind::Delta, "packets", "drops since the previous report", None),
            f("syn_queue_depth", Kind::Gauge, "requests", "half-open requests (TCP_NEW_SYN_RECV) for this address and port", Some(("queue_length", "syn_depth"))),
            FieldSpec {
                name: "queue_wait_max",
                kind: Kind::Gauge,
                float: true,
                unit: "seconds",
                help: "how long the oldest connection now in the accept queue has waited (tcpi_last_data_sent of queued children, jiffy resolution); absent when the queue is empty; an SO_REUSEPORT group's oldest",
                collectd: Some(("duration", "queue_wait_max")),
            },
            f("sockets", Kind::Gauge, "sockets", "sockets behind this row (SO_REUSEPORT group size)", Some(("count", "sockets"))),
            f("pid", Kind::Gauge, "", "pid of the process named in `process`", None),
        ],
    },
    MeasurementSpec {
        name: NETNS,
        help: "one per watched network namespace: TcpExt counters of /proc/net/netstat and the sysctls bounding the queues",
        tags: &[
            TagSpec { name: "netns", help: "as on acceptq_listener; only when more than one namespace is watched" },
            TagSpec { name: "container", help: "as on acceptq_listener" },
            TagSpec { name: "pod", help: "as on acceptq_listener" },
        ],
        fields: &[
            f("listen_overflows", Kind::Counter, "events", "TcpExt ListenOverflows: connections dropped because an accept queue was full", Some(("derive", "listen_overflows"))),
            f("listen_overflows_delta", Kind::Delta, "events", "ListenOverflows since the previous report", None),
            f("listen_drops", Kind::Counter, "events", "TcpExt ListenDrops: every drop by a listener, overflows included", Some(("derive", "listen_drops"))),
            f("listen_drops_delta", Kind::Delta, "events", "ListenDrops since the previous report", None),
            f("reqq_full_drop", Kind::Counter, "events", "TcpExt TCPReqQFullDrop: SYNs dropped, SYN queue full and no syncookies", Some(("derive", "reqq_full_drop"))),
            f("reqq_full_drop_delta", Kind::Delta, "events", "TCPReqQFullDrop since the previous report", None),
            f("reqq_full_do_cookies", Kind::Counter, "events", "TcpExt TCPReqQFullDoCookies: SYN queue full, answered with a syncookie", Some(("derive", "reqq_full_do_cookies"))),
            f("reqq_full_do_cookies_delta", Kind::Delta, "events", "TCPReqQFullDoCookies since the previous report", None),
            f("syncookies_sent", Kind::Counter, "events", "TcpExt SyncookiesSent", Some(("derive", "syncookies_sent"))),
            f("syncookies_sent_delta", Kind::Delta, "events", "SyncookiesSent since the previous report", None),
            f("syncookies_recv", Kind::Counter, "events", "TcpExt SyncookiesRecv", Some(("derive", "syncookies_recv"))),
            f("syncookies_recv_delta", Kind::Delta, "events", "SyncookiesRecv since the previous report", None),
            f("syncookies_failed", Kind::Counter, "events", "TcpExt SyncookiesFailed", Some(("derive", "syncookies_failed"))),
            f("syncookies_failed_delta", Kind::Delta, "events", "SyncookiesFailed since the previous report", None),
            f("migrate_req_success", Kind::Counter, "events", "TcpExt TCPMigrateReqSuccess (5.14+): requests moved to another SO_REUSEPORT socket", Some(("derive", "migrate_req_success"))),
            f("migrate_req_success_delta", Kind::Delta, "events", "TCPMigrateReqSuccess since the previous report", None),
            f("migrate_req_failure", Kind::Counter, "events", "TcpExt TCPMigrateReqFailure (5.14+)", Some(("derive", "migrate_req_failure"))),
            f("migrate_req_failure_delta", Kind::Delta, "events", "TCPMigrateReqFailure since the previous report", None),
            f("somaxconn", Kind::Gauge, "connections", "net.core.somaxconn: ceiling of every accept-queue limit", Some(("gauge", "somaxconn"))),
            f("tcp_max_syn_backlog", Kind::Gauge, "requests", "net.ipv4.tcp_max_syn_backlog", Some(("gauge", "tcp_max_syn_backlog"))),
            f("tcp_syncookies", Kind::Gauge, "", "net.ipv4.tcp_syncookies (0 off, 1 when the SYN queue overflows, 2 always)", Some(("gauge", "tcp_syncookies"))),
            f("tcp_abort_on_overflow", Kind::Gauge, "", "net.ipv4.tcp_abort_on_overflow (1: reset instead of dropping)", Some(("gauge", "tcp_abort_on_overflow"))),
            f("listeners", Kind::Gauge, "rows", "acceptq_listener rows in this namespace after filters, before --max-listeners", Some(("count", "listeners"))),
            f("listeners_omitted", Kind::Gauge, "rows", "rows left out by --max-listeners in this report", Some(("count", "listeners_omitted"))),
        ],
    },
];

/// The schema entry of a field, for the encoders' type mapping.
pub fn field_spec(measurement: &str, field: &str) -> Option<&'static FieldSpec> {
    SCHEMA
        .iter()
        .find(|m| m.name == measurement)?
        .fields
        .iter()
        .find(|f| f.name == field)
}

/// Parses `--tag KEY=VALUE`. The key must be a name every format takes as is (a Prometheus label
/// name: `[A-Za-z_][A-Za-z0-9_]*`, not `__`-prefixed) and none of acceptq's own tags; the value
/// must be non-empty and carried exactly by every format, so it has no control character, does
/// not start or end with `\` and has no `\` before `=` or `"` (what line protocol cannot carry).
pub fn parse_user_tag(s: &str) -> Result<(String, String), String> {
    let (key, value) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))?;
    let mut chars = key.chars();
    let name_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !name_ok || key.starts_with("__") {
        return Err(format!(
            "tag key {key:?}: use letters, digits and _ (not first a digit, not __ first)"
        ));
    }
    if SCHEMA.iter().any(|m| m.tags.iter().any(|t| t.name == key)) {
        return Err(format!("tag key {key:?} is one of acceptq's own tags"));
    }
    // InfluxDB 1.x refuses a `time` tag (`invalid tag key`); 2.x keeps the other two for itself.
    if ["time", "_field", "_measurement"].contains(&key) {
        return Err(format!("tag key {key:?} is reserved by InfluxDB"));
    }
    if value.is_empty() {
        return Err(format!("tag {key}: the value is empty"));
    }
    if !crate::encode::influx::carried_exactly(value) {
        return Err(format!(
            "tag {key}={value:?}: line protocol cannot carry it exactly (a control character, a \\ first or last, or \\ before = or \")"
        ));
    }
    Ok((key.to_string(), value.to_string()))
}

/// Whether `v` can be a collectd identifier's host as it is: it becomes a folder name there,
/// and collectd's csv and rrdtool plugins refuse one that begins with `.` (`.`, `..` included).
pub fn is_collectd_host(v: &str) -> bool {
    let file_safe = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    !v.is_empty() && v.len() <= 127 && v.chars().all(file_safe) && !v.starts_with('.')
}

/// What [`is_collectd_host`] asks, for messages.
pub const COLLECTD_HOST_RULE: &str =
    "a collectd host is 1 to 127 bytes of letters, digits, `.`, `_` and `-`, not first a `.` (it becomes a folder name)";

/// Checks the `--tag` pairs as a whole: no key twice; for collectd, whose identifier has a host
/// and no free tags, only `host`.
pub fn check_user_tags(tags: &[(String, String)], collectd: bool) -> Result<(), String> {
    for (i, (k, _)) in tags.iter().enumerate() {
        if tags[..i].iter().any(|(o, _)| o == k) {
            return Err(format!("--tag {k}=... given twice"));
        }
        if collectd && k != "host" {
            return Err(format!(
                "--tag {k}=...: collectd identifiers have no room for tags; only --tag host=NAME (the identifier's host) works with --format collectd"
            ));
        }
        let v = &tags[i].1;
        if collectd && !is_collectd_host(v) {
            return Err(format!("--tag host={v:?}: {COLLECTD_HOST_RULE}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_float_writes_what_display_writes() {
        for f in [0.0, 1.0, 2.0, 1e15, 9_007_199_254_740_991.0] {
            assert_eq!(whole_float(f).unwrap().as_str(), f.to_string(), "{f}");
        }
        for f in [
            -0.0,
            0.5,
            1e-9,
            -1.0,
            9_007_199_254_740_992.0,
            1e300,
            f64::NAN,
            f64::INFINITY,
        ] {
            assert!(whole_float(f).is_none(), "{f}");
        }
    }

    #[test]
    fn user_tags_are_validated() {
        assert_eq!(
            parse_user_tag("host=web 1,\"x\"=\\y"),
            Ok(("host".into(), "web 1,\"x\"=\\y".into()))
        );
        assert_eq!(parse_user_tag("dc=a=b"), Ok(("dc".into(), "a=b".into())));
        for bad in [
            "novalue",
            "=v",
            "k=",
            "1k=v",
            "k-x=v",
            "__k=v",
            "k y=v",
            "port=80",
            "netns=x",
            "address=x",
            "process=x",
            "k=a\nb",
            "k=trail\\",
            "k=\\lead",
            "k=a\\=b",
            "k=a\\\"b",
        ] {
            assert!(parse_user_tag(bad).is_err(), "{bad:?} accepted");
        }
        let t = |k: &str| (k.to_string(), "v".to_string());
        assert!(check_user_tags(&[t("host"), t("dc")], false).is_ok());
        assert!(check_user_tags(&[t("dc"), t("dc")], false).is_err());
        assert!(check_user_tags(&[t("host")], true).is_ok());
        assert!(check_user_tags(&[t("host"), t("dc")], true).is_err());
        let host = |v: &str| vec![("host".to_string(), v.to_string())];
        assert!(check_user_tags(&host("web-1.example"), true).is_ok());
        assert!(check_user_tags(&host("web 1"), true).is_err());
        assert!(check_user_tags(&host("web 1"), false).is_ok());
        assert!(check_user_tags(&host(&"h".repeat(128)), true).is_err());
        // collectd's csv plugin refuses a folder that begins with a dot: so do we, up front.
        for dotted in [".", "..", ".x"] {
            assert!(check_user_tags(&host(dotted), true).is_err(), "{dotted}");
        }
        assert!(check_user_tags(&host("x.y."), true).is_ok());
    }

    #[test]
    fn every_netns_counter_field_is_in_the_schema_with_its_delta() {
        use crate::source::netstat::COUNTERS;
        use crate::source::sysctl::SYSCTLS;
        for c in COUNTERS {
            assert_eq!(
                field_spec(NETNS, c.field).map(|f| f.kind),
                Some(Kind::Counter),
                "{}",
                c.field
            );
            assert_eq!(
                field_spec(NETNS, c.delta).map(|f| f.kind),
                Some(Kind::Delta),
                "{}",
                c.delta
            );
            assert!(
                field_spec(NETNS, c.field).is_some_and(|f| f.help.contains(c.kernel)),
                "the help of {} names its kernel counter {}",
                c.field,
                c.kernel
            );
        }
        for s in SYSCTLS {
            assert_eq!(
                field_spec(NETNS, s.field).map(|f| f.kind),
                Some(Kind::Gauge),
                "{}",
                s.field
            );
        }
    }

    #[test]
    fn metrics_laid_flat_read_back_as_they_were_made() {
        let one =
            |name, tags: &[(&'static str, &str)], fields: &[(&'static str, Value)], t| Metric {
                name,
                tags: tags.iter().map(|(k, v)| (*k, v.to_string())).collect(),
                fields: fields.to_vec(),
                timestamp: t,
            };
        let made = vec![
            one(NETNS, &[], &[], 1),
            one(
                LISTENER,
                &[("address", "::1"), ("port", ""), ("process", "a b")],
                &[
                    ("queue_depth", Value::Int(3)),
                    ("queue_full_ratio", Value::Float(0.5)),
                ],
                2,
            ),
            one(LISTENER, &[("port", "80")], &[], 3),
            one(NETNS, &[], &[("listeners", Value::Int(2))], 4),
            one(NETNS, &[("netns", "x"), ("netns", "y")], &[], -5),
        ];
        let flat = Metrics::from(&made[..]);
        assert_eq!(flat.len(), made.len());
        assert_eq!(flat.to_vec(), made);
        let second = flat.get(1).unwrap();
        assert_eq!(second.tag("process"), Some("a b"));
        assert_eq!(second.tag("port"), Some(""));
        assert_eq!(second.tag("pod"), None);
        assert_eq!(second.field("queue_depth"), Some(Value::Int(3)));
        // The first of a key twice, as `Metric::tag` finds it.
        assert_eq!(flat.get(4).unwrap().tag("netns"), Some("x"));
        assert!(flat.get(5).is_none());
        // Emptied and filled again, it holds the new metrics only.
        let mut reused = flat.clone();
        reused.clear_for(1);
        assert!(reused.is_empty());
        reused.begin(LISTENER, 9);
        reused.tag("address", "10.0.0.1");
        reused.field("sockets", Value::Int(1));
        let want = one(
            LISTENER,
            &[("address", "10.0.0.1")],
            &[("sockets", Value::Int(1))],
            9,
        );
        assert_eq!(reused.to_vec(), vec![want]);
    }

    #[test]
    fn decimals_and_addresses_read_as_display_writes_them() {
        for v in [
            0,
            7,
            10,
            99,
            100,
            65535,
            1_795_590_619_535_865_398,
            u64::MAX,
        ] {
            assert_eq!(Decimal::new(v).as_str(), v.to_string());
        }
        for a in [
            "0.0.0.0",
            "127.0.0.1",
            "10.200.3.255",
            "::",
            "::1",
            "fe80::1",
            "::ffff:1.2.3.4",
        ] {
            let addr: std::net::IpAddr = a.parse().unwrap();
            let mut text = String::new();
            push_address(&addr, &mut text);
            assert_eq!(text, addr.to_string());
        }
    }

    #[test]
    fn names_are_snake_case_and_unique() {
        for m in &SCHEMA {
            let mut seen = std::collections::HashSet::new();
            for name in m
                .fields
                .iter()
                .map(|f| f.name)
                .chain(m.tags.iter().map(|t| t.name))
            {
                assert!(
                    name.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                    "{name}"
                );
                assert!(seen.insert(name), "{name} twice in {}", m.name);
            }
        }
    }

    /// One listener row waiting 2.5 s, as every encoder gets it.
    fn waiting() -> Vec<Metric> {
        vec![Metric {
            name: LISTENER,
            tags: vec![("address", "127.0.0.1".into()), ("port", "8080".into())],
            fields: vec![
                ("queue_depth", Value::Int(2)),
                ("queue_wait_max", Value::Float(2.5)),
            ],
            timestamp: 1_700_000_000_000_000_000,
        }]
    }

    fn encoded(e: &mut dyn crate::encode::Encoder) -> String {
        let mut out = Vec::new();
        e.encode_all(&waiting(), &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn queue_wait_max_is_a_float_of_seconds_in_influx() {
        use influxdb_line_protocol::{parse_lines, FieldValue};
        let text = encoded(&mut crate::encode::influx::Influx::default());
        let line = parse_lines(&text).next().unwrap().unwrap();
        let field = line
            .field_set
            .iter()
            .find(|(k, _)| *k == "queue_wait_max")
            .map(|(_, v)| v.clone());
        assert_eq!(field, Some(FieldValue::F64(2.5)), "{text}");
    }

    #[test]
    fn queue_wait_max_is_a_float_of_seconds_in_json() {
        let text = encoded(&mut crate::encode::json::JsonLines::default());
        let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(v["fields"]["queue_wait_max"].as_f64(), Some(2.5), "{text}");
        assert!(v["fields"]["queue_wait_max"].is_f64());
    }

    #[test]
    fn queue_wait_max_is_a_seconds_gauge_in_prometheus() {
        let text = encoded(&mut crate::encode::prometheus::Prometheus::default());
        assert!(
            text.contains("# TYPE acceptq_listener_queue_wait_max_seconds gauge\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "acceptq_listener_queue_wait_max_seconds{address=\"127.0.0.1\",port=\"8080\"} 2.5\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn queue_wait_max_is_a_duration_in_collectd() {
        use crate::encode::collectd::{tests::parse_putval, Collectd};
        let text = encoded(&mut Collectd::new("h", std::time::Duration::from_secs(10)));
        let wait: Vec<_> = text
            .lines()
            .map(|l| parse_putval(l).unwrap())
            .filter(|p| p.type_instance == "queue_wait_max")
            .collect();
        assert_eq!(wait.len(), 1, "{text}");
        assert_eq!(wait[0].type_, "duration");
        assert_eq!(wait[0].value.parse::<f64>(), Ok(2.5));
    }

    #[test]
    fn prometheus_names_a_seconds_field_by_its_unit() {
        let spec = field_spec(LISTENER, "queue_wait_max").unwrap();
        assert_eq!(
            crate::encode::prometheus::family(LISTENER, spec),
            "acceptq_listener_queue_wait_max_seconds"
        );
        let drops = field_spec(LISTENER, "drops").unwrap();
        assert_eq!(
            crate::encode::prometheus::family(LISTENER, drops),
            "acceptq_listener_drops_total"
        );
    }
}
