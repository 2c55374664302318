//! The sysctls that bound the queues, read per namespace from `/proc/sys/net`.

use std::fs::File;

use super::read_file_at_start;

/// Relative to `/proc/sys/net/`, in the order of [`Sysctls`]' fields.
pub const PATHS: [&str; 4] = [
    "core/somaxconn",
    "ipv4/tcp_max_syn_backlog",
    "ipv4/tcp_syncookies",
    "ipv4/tcp_abort_on_overflow",
];

/// `None` where the file is missing or unreadable in that namespace.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sysctls {
    pub somaxconn: Option<u64>,
    pub tcp_max_syn_backlog: Option<u64>,
    pub tcp_syncookies: Option<u64>,
    pub tcp_abort_on_overflow: Option<u64>,
}

/// Parses one sysctl file's text: a single unsigned integer and a newline.
pub fn parse(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

pub fn read(files: &[Option<File>; 4], buf: &mut String) -> Sysctls {
    let mut one = |i: usize| -> Option<u64> {
        let file = files[i].as_ref()?;
        read_file_at_start(file, buf).ok()?;
        parse(buf)
    };
    Sysctls {
        somaxconn: one(0),
        tcp_max_syn_backlog: one(1),
        tcp_syncookies: one(2),
        tcp_abort_on_overflow: one(3),
    }
}

/// Opens the sysctl files in the calling thread's namespace.
pub fn open() -> [Option<File>; 4] {
    PATHS.map(|p| File::open(format!("/proc/sys/net/{p}")).ok())
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
}
