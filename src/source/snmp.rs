//! `/proc/net/snmp`, section `Tcp`: `PassiveOpens`, the sampler's proof that no accept queue
//! of a namespace can have grown.
//!
//! The kernel counts every child a listener creates in `tcp_create_openreq_child` (a handshake
//! completed, a SYN cookie's ACK accepted, a Fast Open SYN: all three reach it through
//! `syn_recv_sock`), before the child is put in the accept queue; a full queue refuses before
//! the child exists. Read every sample, so parsed from a reused buffer with no allocation, and
//! by name: columns come and go between kernels.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// The open `/proc/net/snmp` of one namespace and the buffer it is read into.
pub struct PassiveOpens {
    file: File,
    buf: Vec<u8>,
}

impl PassiveOpens {
    /// Opens `/proc/net/snmp` of the calling thread's namespace: the file answers for that
    /// namespace for as long as it is open (run it inside the namespace, once).
    pub fn open() -> io::Result<Self> {
        File::open("/proc/thread-self/net/snmp").map(Self::from_file)
    }

    /// Reads counters from an already open file (a test's captured copy).
    pub fn from_file(file: File) -> Self {
        PassiveOpens {
            file,
            buf: Vec::with_capacity(4096),
        }
    }

    /// The counter now. Allocates nothing once the buffer has held the whole file.
    pub fn read(&mut self) -> io::Result<u64> {
        read_whole(&self.file, &mut self.buf)?;
        passive_opens(&self.buf).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidData, "no Tcp PassiveOpens counter")
        })
    }
}

/// Reads a whole `/proc` file from offset 0 into `buf`. A proc file's read hands over all it
/// generated that fits, so a read that leaves room is the end: no second read, which would make
/// the kernel generate the whole text again only to find nothing after it.
pub(crate) fn read_whole(file: &File, buf: &mut Vec<u8>) -> io::Result<()> {
    buf.clear();
    loop {
        if buf.len() == buf.capacity() {
            buf.reserve(buf.capacity().max(4096));
        }
        let at = buf.len();
        let spare = buf.capacity() - at;
        buf.resize(at + spare, 0);
        let n = loop {
            match file.read_at(&mut buf[at..], at as u64) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        let n = match n {
            Ok(n) => n,
            Err(e) => {
                buf.truncate(at);
                return Err(e);
            }
        };
        buf.truncate(at + n);
        if n < spare {
            return Ok(());
        }
    }
}

/// `PassiveOpens` of the `Tcp:` header and value line pair, matched by name; `None` when the
/// section or the column is missing or its value is no counter.
pub fn passive_opens(text: &[u8]) -> Option<u64> {
    counter(text, b"Tcp:", b"PassiveOpens")
}

/// The value named `name` in the first two lines that start with `section` (names, then
/// values), without allocating.
pub fn counter(text: &[u8], section: &[u8], name: &[u8]) -> Option<u64> {
    let mut lines = text
        .split(|&b| b == b'\n')
        .filter(|l| l.starts_with(section));
    let (names, values) = (lines.next()?, lines.next()?);
    let mut names = names[section.len()..]
        .split(u8::is_ascii_whitespace)
        .filter(|w| !w.is_empty());
    let mut values = values[section.len()..]
        .split(u8::is_ascii_whitespace)
        .filter(|w| !w.is_empty());
    loop {
        match (names.next(), values.next()) {
            (Some(n), Some(v)) if n == name => return parse_u64(v),
            (Some(_), Some(_)) => {}
            _ => return None,
        }
    }
}

/// A counter's decimal digits; `None` for anything else, an empty field, or a value past
/// `u64` (also for `/proc/net/dev`'s columns).
pub(super) fn parse_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &d| {
        if !d.is_ascii_digit() {
            return None;
        }
        acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINUX_6_18: &[u8] = include_bytes!("../../tests/fixtures/linux-6.18/proc/net/snmp");

    #[test]
    fn finds_passive_opens_by_name_in_a_real_file() {
        // The fixture's Tcp values: RtoAlgorithm RtoMin RtoMax MaxConn(-1) ActiveOpens PassiveOpens.
        let text = std::str::from_utf8(LINUX_6_18).unwrap();
        let values = text
            .lines()
            .filter(|l| l.starts_with("Tcp:"))
            .nth(1)
            .unwrap();
        let want: u64 = values.split_whitespace().nth(6).unwrap().parse().unwrap();
        assert_eq!(passive_opens(LINUX_6_18), Some(want));
    }

    #[test]
    fn matches_by_name_whatever_the_column_order_and_never_another_section() {
        let text = b"Udp: PassiveOpens\nUdp: 5\nTcp: MaxConn PassiveOpens Other\nTcp: -1 42 x\n";
        assert_eq!(passive_opens(text), Some(42));
        assert_eq!(
            passive_opens(b"Tcp: PassiveOpens\nTcp: 18446744073709551615\n"),
            Some(u64::MAX)
        );
    }

    #[test]
    fn missing_or_malformed_is_none() {
        assert_eq!(passive_opens(b""), None);
        assert_eq!(passive_opens(b"Tcp: PassiveOpens\n"), None, "no value line");
        assert_eq!(
            passive_opens(b"Tcp: ActiveOpens\nTcp: 3\n"),
            None,
            "no column"
        );
        assert_eq!(
            passive_opens(b"Tcp: A PassiveOpens\nTcp: 1\n"),
            None,
            "short value line"
        );
        assert_eq!(passive_opens(b"Tcp: PassiveOpens\nTcp: -1\n"), None);
        assert_eq!(
            passive_opens(b"Tcp: PassiveOpens\nTcp: 18446744073709551616\n"),
            None
        );
    }

    #[test]
    fn reads_a_file_longer_than_the_buffer_whole_and_again_from_the_start() {
        let dir = std::env::temp_dir().join(format!("acceptq-snmp-{}", std::process::id()));
        let mut text = "Pad: x\n".repeat(2000).into_bytes();
        text.extend_from_slice(b"Tcp: PassiveOpens\nTcp: 7\n");
        std::fs::write(&dir, &text).unwrap();
        let mut p = PassiveOpens::from_file(File::open(&dir).unwrap());
        assert_eq!(p.read().unwrap(), 7);
        assert_eq!(p.read().unwrap(), 7);
        assert_eq!(p.buf.len(), text.len());
        std::fs::write(&dir, b"Tcp: PassiveOpens\nTcp: 8\n").unwrap();
        assert_eq!(
            p.read().unwrap(),
            8,
            "shorter now: nothing of the old text is left"
        );
        std::fs::remove_file(&dir).unwrap();
    }
}

#[cfg(test)]
mod prop {
    use proptest::prelude::*;

    use super::*;

    /// The `Tcp:` names and values of `(name, value)` columns, between the sections that
    /// /proc/net/snmp has around it.
    fn snmp_text(columns: &[(String, u64)]) -> String {
        let names: String = columns.iter().map(|(n, _)| format!(" {n}")).collect();
        let values: String = columns.iter().map(|(_, v)| format!(" {v}")).collect();
        format!("Ip: Forwarding\nIp: 1\nTcp:{names}\nTcp:{values}\nUdp: InDatagrams\nUdp: 0\n")
    }

    fn name() -> impl Strategy<Value = String> {
        prop_oneof![Just("PassiveOpens".to_string()), "[A-Z][A-Za-z]{0,12}"]
    }

    proptest! {
        #![proptest_config(crate::prop_config(256))]

        #[test]
        fn passive_opens_is_the_first_column_so_named(
            columns in proptest::collection::vec((name(), any::<u64>()), 0..20)
        ) {
            let want = columns.iter().find(|(n, _)| n == "PassiveOpens").map(|(_, v)| *v);
            prop_assert_eq!(passive_opens(snmp_text(&columns).as_bytes()), want);
        }

        #[test]
        fn any_bytes_give_a_value_or_none_never_a_panic(text in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = passive_opens(&text);
        }

        #[test]
        fn a_file_cut_anywhere_gives_the_whole_value_or_none_or_a_prefix_of_it(
            columns in proptest::collection::vec((name(), any::<u64>()), 1..12),
            cut in any::<proptest::sample::Index>(),
        ) {
            let text = snmp_text(&columns);
            let whole = passive_opens(text.as_bytes());
            let cut = &text.as_bytes()[..cut.index(text.len() + 1)];
            // The kernel writes whole lines and one read takes the file, so a cut only happens
            // on a broken source; a cut inside the value gives its leading digits.
            if let Some(got) = passive_opens(cut) {
                let whole = whole.expect("a cut file cannot name a column the whole does not");
                prop_assert!(whole.to_string().starts_with(&got.to_string()), "{} from {}", got, whole);
            }
        }
    }
}
