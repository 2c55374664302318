//! `/proc/net/netstat`, section `TcpExt`: the namespace-wide listen-queue counters.
//!
//! Counters are matched by name, never by column: kernels add, move and drop columns (procfs
//! issue #310 broke on one missing section). A counter the kernel does not have is `None`.

use std::fs::File;
use std::io;

use super::read_file_at_start;

/// One TcpExt counter: its kernel name and the `acceptq_netns` fields it becomes. The single
/// source every layer iterates (parser, schema check, report), so no two lists are joined by
/// position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counter {
    /// The name in the `TcpExt:` header line.
    pub kernel: &'static str,
    /// The cumulative field.
    pub field: &'static str,
    /// The field carrying its increase since the previous report.
    pub delta: &'static str,
}

const fn counter(kernel: &'static str, field: &'static str, delta: &'static str) -> Counter {
    Counter {
        kernel,
        field,
        delta,
    }
}

/// The TcpExt counters acceptq reports, in the order of the schema.
pub const COUNTERS: [Counter; 9] = [
    counter(
        "ListenOverflows",
        "listen_overflows",
        "listen_overflows_delta",
    ),
    counter("ListenDrops", "listen_drops", "listen_drops_delta"),
    counter("TCPReqQFullDrop", "reqq_full_drop", "reqq_full_drop_delta"),
    counter(
        "TCPReqQFullDoCookies",
        "reqq_full_do_cookies",
        "reqq_full_do_cookies_delta",
    ),
    counter("SyncookiesSent", "syncookies_sent", "syncookies_sent_delta"),
    counter("SyncookiesRecv", "syncookies_recv", "syncookies_recv_delta"),
    counter(
        "SyncookiesFailed",
        "syncookies_failed",
        "syncookies_failed_delta",
    ),
    counter(
        "TCPMigrateReqSuccess",
        "migrate_req_success",
        "migrate_req_success_delta",
    ),
    counter(
        "TCPMigrateReqFailure",
        "migrate_req_failure",
        "migrate_req_failure_delta",
    ),
];

/// Values of [`COUNTERS`], index for index; only [`parse`] and [`TcpExt::with`] fill it, by name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpExt([Option<u64>; COUNTERS.len()]);

impl TcpExt {
    /// The value of the counter named `kernel` (`ListenOverflows`), if the kernel has it.
    pub fn get(&self, kernel: &str) -> Option<u64> {
        COUNTERS
            .iter()
            .position(|c| c.kernel == kernel)
            .and_then(|i| self.0[i])
    }

    /// Each counter with its value, absent ones included.
    pub fn iter(&self) -> impl Iterator<Item = (&'static Counter, Option<u64>)> + '_ {
        COUNTERS.iter().zip(self.0.iter().copied())
    }

    /// Sets the counter named `kernel`; unknown names are ignored. For building readings by name.
    pub fn with(mut self, kernel: &str, value: u64) -> Self {
        if let Some(i) = COUNTERS.iter().position(|c| c.kernel == kernel) {
            self.0[i] = Some(value);
        }
        self
    }

    /// Every counter set to `value`.
    pub fn all(value: u64) -> Self {
        TcpExt([Some(value); COUNTERS.len()])
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum ParseError {
    /// No `TcpExt:` header and value line pair.
    NoTcpExt,
    /// The header and value lines have different lengths.
    ColumnMismatch { names: usize, values: usize },
    /// A value that is not an unsigned integer.
    BadValue { name: String, value: String },
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParseError::NoTcpExt => write!(f, "no TcpExt section"),
            ParseError::ColumnMismatch { names, values } => {
                write!(f, "TcpExt has {names} names but {values} values")
            }
            ParseError::BadValue { name, value } => {
                write!(f, "TcpExt {name}: {value:?} is not a counter")
            }
        }
    }
}

impl std::error::Error for ParseError {}

/// Parses the text of `/proc/net/netstat` (or `/proc/net/snmp`-style pairs) for TcpExt.
pub fn parse(text: &str) -> Result<TcpExt, ParseError> {
    let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
        return Err(ParseError::NoTcpExt);
    };
    let names: Vec<&str> = names.split_whitespace().skip(1).collect();
    let values: Vec<&str> = values.split_whitespace().skip(1).collect();
    if names.len() != values.len() {
        return Err(ParseError::ColumnMismatch {
            names: names.len(),
            values: values.len(),
        });
    }
    let mut out = TcpExt::default();
    for (name, value) in names.iter().zip(&values) {
        let Some(i) = COUNTERS.iter().position(|c| c.kernel == *name) else {
            continue;
        };
        let v = value.parse::<u64>().map_err(|_| ParseError::BadValue {
            name: name.to_string(),
            value: value.to_string(),
        })?;
        out.0[i] = Some(v);
    }
    Ok(out)
}

/// Reads and parses an open `/proc/<...>/net/netstat`, reusing `buf`.
pub fn read(file: &File, buf: &mut String) -> io::Result<TcpExt> {
    read_file_at_start(file, buf)?;
    parse(buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINUX_6_18: &str = include_str!("../../tests/fixtures/linux-6.18/proc/net/netstat");
    // The TcpExt column set of a 3.10-era kernel (before TCPMigrateReq*, 5.14): the header is the
    // 3.10 list of names in the kernel's order, the values are made up.
    const LINUX_3_10: &str = include_str!("../../tests/fixtures/linux-3.10/proc/net/netstat");

    #[test]
    fn new_kernel_has_every_counter() {
        let t = parse(LINUX_6_18).unwrap();
        for (c, v) in t.iter() {
            assert!(v.is_some(), "{} missing", c.kernel);
        }
    }

    #[test]
    fn old_kernel_lacks_migrate_counters_as_absent_not_zero() {
        let t = parse(LINUX_3_10).unwrap();
        assert_eq!(t.get("ListenOverflows"), Some(17));
        assert_eq!(t.get("ListenDrops"), Some(19));
        assert_eq!(t.get("TCPReqQFullDrop"), Some(3));
        assert_eq!(t.get("TCPReqQFullDoCookies"), Some(2));
        assert_eq!(t.get("SyncookiesFailed"), Some(5));
        assert_eq!(t.get("TCPMigrateReqSuccess"), None);
        assert_eq!(t.get("TCPMigrateReqFailure"), None);
    }

    #[test]
    fn matches_by_name_whatever_the_column_order() {
        let text =
            "IpExt: InNoRoutes\nIpExt: 0\nTcpExt: ListenDrops Foo ListenOverflows\nTcpExt: 9 1 7\n";
        let t = parse(text).unwrap();
        assert_eq!(
            (t.get("ListenOverflows"), t.get("ListenDrops")),
            (Some(7), Some(9))
        );
        assert_eq!(t.get("SyncookiesSent"), None);
    }

    #[test]
    fn malformed_input_is_an_error() {
        assert_eq!(parse(""), Err(ParseError::NoTcpExt));
        assert_eq!(parse("TcpExt: A B\n"), Err(ParseError::NoTcpExt));
        assert_eq!(
            parse("TcpExt: A B\nTcpExt: 1\n"),
            Err(ParseError::ColumnMismatch {
                names: 2,
                values: 1
            })
        );
        assert!(matches!(
            parse("TcpExt: ListenDrops\nTcpExt: -1\n"),
            Err(ParseError::BadValue { .. })
        ));
        // A column we do not read may hold anything.
        assert!(parse("TcpExt: Other ListenDrops\nTcpExt: x 1\n").is_ok());
    }

    #[test]
    fn full_u64_range() {
        let t = parse("TcpExt: ListenOverflows\nTcpExt: 18446744073709551615\n").unwrap();
        assert_eq!(t.get("ListenOverflows"), Some(u64::MAX));
    }
}

#[cfg(test)]
mod prop {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    /// A TcpExt header and value line pair from `(name, value)` columns, between other sections
    /// as /proc/net/netstat has them.
    fn netstat_text(columns: &[(String, u64)]) -> String {
        let names: String = columns.iter().map(|(n, _)| format!(" {n}")).collect();
        let values: String = columns.iter().map(|(_, v)| format!(" {v}")).collect();
        format!("TcpExt:{names}\nTcpExt:{values}\nIpExt: InNoRoutes\nIpExt: 0\n")
    }

    /// Column names: ours, and others in the kernel's shape.
    fn name() -> impl Strategy<Value = String> {
        prop_oneof![
            proptest::sample::select(COUNTERS.map(|c| c.kernel).to_vec()).prop_map(String::from),
            "[A-Z][A-Za-z0-9]{0,20}",
        ]
    }

    /// What the parser must give: the value of each of our counters, the last column of a name
    /// given twice winning as it does in the parser's walk.
    fn model(columns: &[(String, u64)]) -> HashMap<&'static str, u64> {
        let mut want = HashMap::new();
        for (n, v) in columns {
            if let Some(c) = COUNTERS.iter().find(|c| c.kernel == n) {
                want.insert(c.kernel, *v);
            }
        }
        want
    }

    proptest! {
        #![proptest_config(crate::prop_config(256))]

        #[test]
        fn any_text_gives_an_error_or_values_named_in_it(text in "(TcpExt:|IpExt:| |[A-Za-z0-9]{1,12}|-|\n){0,40}") {
            if let Ok(t) = parse(&text) {
                for (c, v) in t.iter() {
                    if let Some(v) = v {
                        prop_assert!(text.contains(c.kernel) && text.contains(&v.to_string()));
                    }
                }
            }
        }

        #[test]
        fn any_bytes_never_panic(text in any::<String>()) {
            let _ = parse(&text);
        }

        #[test]
        fn parses_as_the_model_says(columns in proptest::collection::vec((name(), any::<u64>()), 0..30)) {
            let t = parse(&netstat_text(&columns)).unwrap();
            let want = model(&columns);
            for c in COUNTERS {
                prop_assert_eq!(t.get(c.kernel), want.get(c.kernel).copied(), "{}", c.kernel);
            }
        }

        /// Cut at any byte: an error, or our counters as written. The one cut that cannot be
        /// told from a whole file is inside the last value of an unterminated value line, where
        /// a shorter number stands (the kernel writes whole lines, and the file is read to its
        /// end); whole lines are never misread.
        #[test]
        fn a_cut_file_is_an_error_or_its_values(columns in proptest::collection::vec((name(), any::<u64>()), 1..12)) {
            let text = netstat_text(&columns);
            let want = model(&columns);
            let last_name = &columns.last().unwrap().0;
            for cut in (0..text.len()).filter(|i| text.is_char_boundary(*i)) {
                let Ok(t) = parse(&text[..cut]) else { continue };
                let whole_lines = text[..cut].ends_with('\n');
                for c in COUNTERS {
                    let (got, want) = (t.get(c.kernel), want.get(c.kernel).copied());
                    if got == want {
                        continue;
                    }
                    let shortened = !whole_lines
                        && c.kernel == last_name
                        && got.zip(want).is_some_and(|(g, w)| w.to_string().starts_with(&g.to_string()));
                    prop_assert!(shortened, "cut at {} gave {} = {:?}, not {:?}", cut, c.kernel, got, want);
                }
            }
        }
    }
}
