//! SO_REUSEPORT groups: one row per group by default, one per socket with `--per-socket`.

use std::time::Duration;

use crate::support::*;

tests![reuseport_group_sums_its_sockets_and_per_socket_splits_them_by_inode];

/// One LISTEN socket as `ss -tlnme` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SsSocket {
    inode: u64,
    limit: u64,
    drops: u64,
}

/// Every listening socket on `port`, sorted by inode (acceptq's `socket` index order).
fn ss_sockets(ns: &Netns, port: u16) -> Vec<SsSocket> {
    let text = output_ok(&mut ns.cmd("ss", &["-tlnmeH", &format!("sport = :{port}")]));
    let mut out = Vec::new();
    // A record starts with its state; skmem may follow on a continuation line.
    for record in text.split("LISTEN").filter(|r| !r.trim().is_empty()) {
        let words: Vec<&str> = record.split_whitespace().collect();
        let limit = words[1].parse().unwrap();
        let inode = words
            .iter()
            .find_map(|w| w.strip_prefix("ino:"))
            .unwrap_or_else(|| panic!("no inode in {record:?}"))
            .parse()
            .unwrap();
        let drops = record
            .split(|c: char| c == ',' || c == ')' || c == '(' || c.is_whitespace())
            .filter_map(|t| t.strip_prefix('d'))
            .find_map(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no drops in {record:?}"));
        out.push(SsSocket {
            inode,
            limit,
            drops,
        });
    }
    out.sort_by_key(|s| s.inode);
    out
}

/// Three SO_REUSEPORT sockets on one port, one of them full: the default row sums the group
/// (sockets 3, limits and drops added up, as the kernel counts them); `--per-socket` splits it
/// by inode rank and only the full socket has drops.
fn reuseport_group_sums_its_sockets_and_per_socket_splits_them_by_inode() {
    let test = "reuseport::reuseport_group_sums_its_sockets_and_per_socket_splits_them_by_inode";
    if !netns_gate(test) || !skip_unless(have("ss"), test, "needs ss (iproute2)") {
        return;
    }
    let ns = Netns::new("who-rp");
    let mut d = ns.driver();
    // The full one first, alone in its group while its clients connect: capacity 2, 10
    // clients, drops from the first SYNs on.
    let (full, port) = d.listen("127.0.0.1", 0, 1, true);
    d.connect(full, 10);
    assert!(
        wait_for(Duration::from_secs(5), || (ns.ss_drops(port) > 0)
            .then_some(()))
        .is_some(),
        "the backlog-1 socket never dropped"
    );
    // Two idle ones join; retransmitted SYNs that hash to them are accepted, never dropped.
    d.listen("127.0.0.1", port, 64, true);
    d.listen("127.0.0.1", port, 64, true);

    // Drops grow with each SYN retransmission: compare only readings that the kernel's own,
    // taken before and after, agree on.
    let mut checked = false;
    for _ in 0..20 {
        let before = ss_sockets(&ns, port);
        let total = ns.ss_drops(port);
        let grouped = ns.acceptq(&["--once", "--format", "json", "--port", &port.to_string()]);
        let split = ns.acceptq(&[
            "--once",
            "--format",
            "json",
            "--per-socket",
            "--port",
            &port.to_string(),
        ]);
        let after = ss_sockets(&ns, port);
        if before != after {
            std::thread::sleep(Duration::from_millis(150));
            continue;
        }
        assert!(grouped.status.success() && split.status.success());
        assert_eq!(before.len(), 3, "{before:?}");
        let sum: u64 = before.iter().map(|s| s.drops).sum();
        assert_eq!(sum, total, "ss_drops sums the group");

        let report = json_lines(&grouped.stdout);
        let rows = listener_rows(&report);
        assert_eq!(rows.len(), 1, "one row for the group: {rows:?}");
        let row = rows[0];
        assert_eq!(field(row, "sockets"), Some(3), "{row}");
        assert_eq!(field(row, "queue_limit"), Some(1 + 64 + 64), "{row}");
        assert_eq!(
            field(row, "drops"),
            Some(sum),
            "kernel says {before:?}: {row}"
        );
        assert_eq!(
            field(netns_row(&report), "listen_drops"),
            Some(sum),
            "the namespace's ListenDrops is this group's drops"
        );

        let report = json_lines(&split.stdout);
        let rows = listener_rows(&report);
        assert_eq!(rows.len(), 3, "{rows:?}");
        let mut dropping = Vec::new();
        for (i, (row, ss)) in rows.iter().zip(&before).enumerate() {
            assert_eq!(row["tags"]["socket"], i.to_string(), "{row}");
            assert_eq!(field(row, "sockets"), Some(1), "{row}");
            assert_eq!(
                field(row, "queue_limit"),
                Some(ss.limit),
                "rank by inode: {row}"
            );
            assert_eq!(field(row, "drops"), Some(ss.drops), "{row} vs {ss:?}");
            if ss.drops > 0 {
                dropping.push(*row);
            }
        }
        assert_eq!(dropping.len(), 1, "only the full socket drops: {before:?}");
        let row = dropping[0];
        assert_eq!(field(row, "queue_limit"), Some(1), "{row}");
        assert_eq!(
            field(row, "queue_depth"),
            Some(2),
            "full: depth > limit: {row}"
        );
        assert_eq!(field(row, "drops"), Some(sum), "{row}");
        checked = true;
        break;
    }
    assert!(checked, "drops never held still long enough to compare");
}
