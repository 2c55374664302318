//! The namespace counters' text: `/proc/net/netstat` (TcpExt), `/proc/net/dev` and the sysctl files, as any
//! bytes a kernel, a container runtime's fake /proc or a broken mount could hand over.
#![no_main]

use acceptq::source::{netdev, netstat, snmp, sysctl};
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
    // /proc/net/snmp's PassiveOpens, read without allocating: a value given is the one under its
    // name in the first `Tcp:` value line, never invented.
    if let Some(v) = snmp::passive_opens(data) {
        let mut tcp = text.split('\n').filter(|l| l.starts_with("Tcp:"));
        let (names, values) = (tcp.next().unwrap(), tcp.next().unwrap());
        let at = names[4..]
            .split_ascii_whitespace()
            .position(|w| w == "PassiveOpens")
            .unwrap();
        let want = values[4..].split_ascii_whitespace().nth(at).unwrap();
        assert_eq!(want.parse::<u64>().ok(), Some(v));
    }
    // /proc/net/dev's received packets, read without allocating: a sum given is the wrapping
    // sum of the second number after each device's colon, never invented.
    if let Some(sum) = netdev::rx_sum(data) {
        let want = text
            .split('\n')
            .filter(|l| !l.trim().is_empty() && !l.contains('|'))
            .map(|l| {
                let (_, numbers) = l.split_once(':').unwrap();
                numbers.split_ascii_whitespace().nth(1).unwrap().parse::<u64>().unwrap()
            })
            .fold(0u64, u64::wrapping_add);
        assert_eq!(sum.rx_packets, want);
    }
});
