//! The sysctls that bound the queues, read per namespace from `/proc/sys/net`.

use std::fs::File;

use super::read_file_at_start;

/// One sysctl: its file under `/proc/sys/net/` and the `acceptq_netns` field it becomes. The
/// single source the reader and the report iterate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sysctl {
    pub path: &'static str,
    pub field: &'static str,
}

pub const SYSCTLS: [Sysctl; 4] = [
    Sysctl {
        path: "core/somaxconn",
        field: "somaxconn",
    },
    Sysctl {
        path: "ipv4/tcp_max_syn_backlog",
        field: "tcp_max_syn_backlog",
    },
    Sysctl {
        path: "ipv4/tcp_syncookies",
        field: "tcp_syncookies",
    },
    Sysctl {
        path: "ipv4/tcp_abort_on_overflow",
        field: "tcp_abort_on_overflow",
    },
];

/// Values of [`SYSCTLS`], index for index; `None` where the file is missing or unreadable in
/// that namespace.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sysctls([Option<u64>; SYSCTLS.len()]);

impl Sysctls {
    /// The value of the sysctl reported as `field` (`somaxconn`).
    pub fn get(&self, field: &str) -> Option<u64> {
        SYSCTLS
            .iter()
            .position(|s| s.field == field)
            .and_then(|i| self.0[i])
    }

    /// Sets the sysctl reported as `field`; unknown names are ignored.
    pub fn with(mut self, field: &str, value: u64) -> Self {
        if let Some(i) = SYSCTLS.iter().position(|s| s.field == field) {
            self.0[i] = Some(value);
        }
        self
    }

    /// Each sysctl with its value, absent ones included.
    pub fn iter(&self) -> impl Iterator<Item = (&'static Sysctl, Option<u64>)> + '_ {
        SYSCTLS.iter().zip(self.0.iter().copied())
    }
}

/// Parses one sysctl file's text: a single unsigned integer and a newline.
pub fn parse(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// Reads the files [`open`] returned, reusing `buf`.
pub fn read(files: &[Option<File>; SYSCTLS.len()], buf: &mut String) -> Sysctls {
    let mut out = Sysctls::default();
    for (value, file) in out.0.iter_mut().zip(files) {
        *value = file.as_ref().and_then(|f| {
            read_file_at_start(f, buf).ok()?;
            parse(buf)
        });
    }
    out
}

/// Opens the sysctl files in the calling thread's namespace, in [`SYSCTLS`] order.
pub fn open() -> [Option<File>; SYSCTLS.len()] {
    SYSCTLS.map(|s| File::open(format!("/proc/sys/net/{}", s.path)).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_values_and_rejects_junk() {
        assert_eq!(parse("4096\n"), Some(4096));
        assert_eq!(parse("0"), Some(0));
        assert_eq!(parse(""), None);
        assert_eq!(parse("-1\n"), None);
        assert_eq!(parse("4096 1\n"), None);
    }

    #[test]
    fn each_field_reads_its_own_file() {
        // Stated independently of the table, so a swapped row fails here.
        let want = [
            ("somaxconn", "core/somaxconn"),
            ("tcp_max_syn_backlog", "ipv4/tcp_max_syn_backlog"),
            ("tcp_syncookies", "ipv4/tcp_syncookies"),
            ("tcp_abort_on_overflow", "ipv4/tcp_abort_on_overflow"),
        ];
        for (field, path) in want {
            let s = SYSCTLS.iter().find(|s| s.field == field).unwrap();
            assert_eq!(s.path, path, "{field}");
        }
        assert_eq!(SYSCTLS.len(), want.len());
        // And `read` fills each value from its own file.
        let dir = std::env::temp_dir().join(format!("acceptq-sysctl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let files = SYSCTLS.map(|s| {
            let p = dir.join(s.field);
            std::fs::write(&p, format!("{}\n", s.field.len() * 1000 + s.path.len())).unwrap();
            Some(File::open(p).unwrap())
        });
        let got = read(&files, &mut String::new());
        std::fs::remove_dir_all(&dir).unwrap();
        for (field, path) in want {
            assert_eq!(
                got.get(field),
                Some((field.len() * 1000 + path.len()) as u64)
            );
        }
    }
}

#[cfg(test)]
mod prop {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(crate::prop_config(256))]

        #[test]
        fn a_value_as_the_kernel_writes_it_is_read_exactly(v in any::<u64>()) {
            prop_assert_eq!(parse(&format!("{v}\n")), Some(v));
        }

        #[test]
        fn any_text_is_none_or_the_number_it_holds(text in any::<String>()) {
            if let Some(v) = parse(&text) {
                prop_assert_eq!(text.trim().parse::<u64>().ok(), Some(v));
            }
        }

        #[test]
        fn junk_around_a_value_is_refused(v in any::<u64>(), junk in "[!-/:-~]{1,4}") {
            prop_assert_eq!(parse(&format!("{v}{junk}\n")), None);
            let before = format!("{junk}{v}\n");
            // `+` is the one prefix a u64 parse accepts: the same value.
            prop_assert!(parse(&before).is_none() || junk == "+");
        }
    }
}
