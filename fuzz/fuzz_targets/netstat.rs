//! The namespace counters' text: `/proc/net/netstat` (TcpExt) and the sysctl files, as any
//! bytes a kernel, a container runtime's fake /proc or a broken mount could hand over.
#![no_main]

use acceptq::source::{netstat, sysctl};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The product reads these files into a String and gives up on bytes that are not UTF-8.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(tcp_ext) = netstat::parse(text) {
        // A value reported is one the text holds, under a TcpExt line: never invented.
        for (counter, value) in tcp_ext.iter() {
            if let Some(v) = value {
                let named = text
                    .lines()
                    .filter(|l| l.starts_with("TcpExt:"))
                    .any(|l| l.split_whitespace().any(|w| w == counter.kernel));
                assert!(
                    named,
                    "{} = {v} without its name in the text",
                    counter.kernel
                );
            }
        }
    }
    if let Some(v) = sysctl::parse(text) {
        assert_eq!(text.trim().parse::<u64>().ok(), Some(v));
    }
    // The /proc/net/snmp parser (the `Tcp:` and `TcpExt`-style pairs of the SYN-flood
    // counters) goes here once it is on main: `snmp::parse(text)` under the same checks.
});
