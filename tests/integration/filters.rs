//! The listener filters: `--port`, `--exclude-port`, `--address`, `--process`, and how they
//! combine.

use std::collections::BTreeSet;

use crate::support::*;

tests![port_address_and_process_filters_select_listeners];

/// Ports `acceptq --once --format json ARGS` reports; the namespace row's `listeners` agrees.
fn reported_ports(ns: &Netns, args: &[&str]) -> BTreeSet<u16> {
    let mut all = vec!["--once", "--format", "json"];
    all.extend_from_slice(args);
    let out = ns.acceptq(&all);
    assert!(out.status.success(), "{args:?}: {out:?}");
    let report = json_lines(&out.stdout);
    let rows = listener_rows(&report);
    assert_eq!(
        field(netns_row(&report), "listeners"),
        Some(rows.len() as u64),
        "{args:?}"
    );
    rows.iter().map(|r| port_of(r).expect("port tag")).collect()
}

fn port_address_and_process_filters_select_listeners() {
    if !netns_gate("filters::port_address_and_process_filters_select_listeners") {
        return;
    }
    let ns = Netns::new("who-filter");
    let mut d = ns.driver();
    let (_, p1) = d.listen("127.0.0.1", 0, 8, false);
    let (_, p2) = d.listen("127.0.0.2", 0, 8, false);
    let (_, p3) = d.listen("::1", 0, 8, false);
    let (_h, p4, _) = hold(&ns, "aqwho-filter", "0.0.0.0", 0, false);
    let comm = comm_of(d.pid());
    let set = |ps: &[u16]| ps.iter().copied().collect::<BTreeSet<u16>>();
    let (s1, s2, s3, s4) = (
        p1.to_string(),
        p2.to_string(),
        p3.to_string(),
        p4.to_string(),
    );

    assert_eq!(reported_ports(&ns, &[]), set(&[p1, p2, p3, p4]));
    assert_eq!(reported_ports(&ns, &["--port", &s1]), set(&[p1]));
    assert_eq!(
        reported_ports(&ns, &["--port", &s1, "--port", &s3]),
        set(&[p1, p3])
    );
    assert_eq!(
        reported_ports(&ns, &["--exclude-port", &s1]),
        set(&[p2, p3, p4])
    );
    assert_eq!(
        reported_ports(&ns, &["--port", &s1, "--port", &s2, "--exclude-port", &s2]),
        set(&[p1])
    );
    assert_eq!(
        reported_ports(&ns, &["--address", "127.0.0.*"]),
        set(&[p1, p2])
    );
    assert_eq!(reported_ports(&ns, &["--address", "::1"]), set(&[p3]));
    assert_eq!(reported_ports(&ns, &["--address", "::*"]), set(&[p3]));
    assert_eq!(
        reported_ports(&ns, &["--address", "0.0.0.0", "--address", "127.0.0.?"]),
        set(&[p1, p2, p4])
    );
    assert_eq!(reported_ports(&ns, &["--address", "10.*"]), set(&[]));
    assert_eq!(reported_ports(&ns, &["--process", "aqwho-*"]), set(&[p4]));
    assert_eq!(
        reported_ports(&ns, &["--process", &comm]),
        set(&[p1, p2, p3])
    );
    assert_eq!(
        reported_ports(&ns, &["--process", "py*", "--process", "aqwho-filter"]),
        set(&[p1, p2, p3, p4])
    );
    assert_eq!(
        reported_ports(&ns, &["--process", "py*", "--port", &s4]),
        set(&[])
    );
    assert_eq!(
        reported_ports(&ns, &["--process", "aqwho", "--address", "*"]),
        set(&[]),
        "a glob without * matches the whole name only"
    );
    assert_eq!(
        reported_ports(
            &ns,
            &[
                "--address",
                "127.*",
                "--exclude-port",
                &s2,
                "--process",
                "py*"
            ]
        ),
        set(&[p1])
    );
}
