//! Text from /proc that names owners and namespaces: `/proc/<pid>/comm` and `cgroup`,
//! `/proc/self/mountinfo`, and `/proc/net/tcp{,6}` of the fallback source. Any bytes: a
//! process chooses its own name and cgroup path, and mount points are any bytes.
#![no_main]

use std::io::Cursor;

use acceptq::source::{cgroup, netns, owners};
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use procfs::net::TcpNetEntries;
use procfs::{ExplicitSystemInfo, FromBufReadSI};

#[derive(Debug, Arbitrary)]
enum Input<'a> {
    Comm(&'a [u8]),
    Cgroup(&'a str),
    Mountinfo(&'a [u8]),
    ProcNetTcp(&'a [u8]),
}

/// `comm_text` read back: `\xHH` is the byte HH, anything else is itself.
fn unescape(text: &str) -> Vec<u8> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 2..i + 4)
            .and_then(|h| std::str::from_utf8(h).ok());
        match hex.filter(|_| b[i] == b'\\' && b[i + 1] == b'x') {
            Some(h) if h.bytes().all(|c| c.is_ascii_hexdigit()) => {
                out.push(u8::from_str_radix(h, 16).unwrap());
                i += 4;
            }
            _ => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    out
}

fuzz_target!(|input: Input| match input {
    Input::Comm(bytes) => {
        // Lossless: the name read back is the bytes the process set.
        assert_eq!(unescape(&owners::comm_text(bytes)), bytes);
    }
    Input::Cgroup(text) => {
        if let Some(unit) = owners::unit_from_cgroup(text) {
            assert!(unit.ends_with(".service") || unit.ends_with(".scope"));
            assert!(!unit.contains('/') && text.contains(unit.as_str()));
        }
        let placement = cgroup::placement(text);
        if let Some(id) = placement.container {
            assert_eq!(id.len(), cgroup::SHORT_ID);
            assert!(id.bytes().all(|b| b.is_ascii_hexdigit()) && text.contains(id.as_str()));
        }
    }
    Input::Mountinfo(bytes) => {
        let mounts = netns::nsfs_net_mounts(bytes);
        // Each path once; never more paths than lines.
        for (i, m) in mounts.iter().enumerate() {
            assert!(!mounts[..i].contains(m));
        }
        assert!(mounts.len() <= bytes.split(|b| *b == b'\n').count());
    }
    Input::ProcNetTcp(bytes) => {
        let info = ExplicitSystemInfo {
            boot_time_secs: 0,
            ticks_per_second: 100,
            page_size: 4096,
            is_little_endian: cfg!(target_endian = "little"),
        };
        let _ = TcpNetEntries::from_buf_read(Cursor::new(bytes), &info);
    }
});
