//! The sampler's first tier (received packets of lo and veth) against paths by which a
//! connection reaches an accept queue without any device counting the packet: a tc `mirred`
//! action that turns lo's transmit into its own receive skips `loopback_xmit`, where lo counts.

use std::process::Command;
use std::time::Duration;

use crate::gate_attack::{accept_all, sampler_line};
use crate::support::*;

tests![
    a_burst_redirected_by_tc_mirred_past_lo_s_counters_is_caught_as_the_peak,
    a_tc_redirect_added_to_a_settled_namespace_turns_the_device_tier_off_before_its_burst
];

const DEBUG: (&str, &str) = ("ACCEPTQ_DEBUG_SAMPLER", "1");

/// Every packet lo sends goes to its own ingress through tc (clsact, u32 match-all, mirred
/// ingress redirect), never through `loopback_xmit`: `/proc/net/dev` stays at 0. 127/8 then
/// comes in by a route lookup, which wants route_localnet and accept_local (kube-proxy sets
/// the first). Whether the kernel took it.
fn redirect_lo_through_tc(ns: &Netns) -> bool {
    ns.sysctl("net.ipv6.conf.all.disable_ipv6", "1");
    ns.sysctl("net.ipv6.conf.default.disable_ipv6", "1");
    for key in ["route_localnet", "accept_local"] {
        ns.sysctl(&format!("net.ipv4.conf.all.{key}"), "1");
        ns.sysctl(&format!("net.ipv4.conf.lo.{key}"), "1");
    }
    let tc = |args: &[&str]| {
        Command::new("tc")
            .args(["-n", &ns.name])
            .args(args)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    tc(&["qdisc", "add", "dev", "lo", "clsact"])
        && tc(&[
            "filter", "add", "dev", "lo", "egress", "u32", "match", "u32", "0", "0", "action",
            "mirred", "ingress", "redirect", "dev", "lo",
        ])
}

/// lo's received packets, from `/proc/net/dev` of `ns`.
fn lo_rx_packets(ns: &Netns) -> u64 {
    let out = ns.cmd("cat", &["/proc/net/dev"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("lo:"))
        .unwrap_or_else(|| panic!("no lo in {text}"));
    line.split(':')
        .nth(1)
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap()
}

/// 40 connections to listener `id` on `port`, queued for three periods (the promise is one),
/// then accepted, none of their packets counted by lo (its received packets stay at `rx`).
/// The burst must show as the peak in `live`'s report; the sampler's line at exit.
fn burst_past_lo(
    mut live: Live,
    ns: &Netns,
    d: &mut Driver,
    (id, port): (usize, u16),
    rx: u64,
) -> String {
    d.connect(id, 40);
    assert!(
        wait_for(Duration::from_secs(5), || (queued(ns, port) == 40)
            .then_some(()))
        .is_some(),
        "40 connections queued"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(accept_all(d, id, 40), 40);
    assert_eq!(
        lo_rx_packets(ns),
        rx,
        "the handshakes passed lo's counters by"
    );
    let f = listener(&live.report(), port)["fields"].clone();
    let (status, stderr) = live.finish();
    assert!(status.success(), "{stderr}");
    let line = sampler_line(&stderr).to_string();
    note!("{line}");
    assert!(
        int(&f["queue_depth_max"]) >= 36,
        "the burst must show: {f}; {line}"
    );
    line
}

fn a_burst_redirected_by_tc_mirred_past_lo_s_counters_is_caught_as_the_peak() {
    const NAME: &str =
        "device_gate_attack::a_burst_redirected_by_tc_mirred_past_lo_s_counters_is_caught_as_the_peak";
    if !netns_gate(NAME) {
        return;
    }
    let ns = Netns::new("devmir");
    if !skip_unless(
        redirect_lo_through_tc(&ns),
        NAME,
        "needs tc clsact, u32 and mirred",
    ) {
        return;
    }
    let mut d = ns.driver();
    let (id, port) = d.listen("127.0.0.1", 0, 64, false);
    let mut live = Live::start_env(&ns, &["--sample", "100ms"], &[DEBUG]);
    live.report();
    std::thread::sleep(Duration::from_millis(1000));
    burst_past_lo(live, &ns, &mut d, (id, port), 0);
}

fn a_tc_redirect_added_to_a_settled_namespace_turns_the_device_tier_off_before_its_burst() {
    const NAME: &str = "device_gate_attack::a_tc_redirect_added_to_a_settled_namespace_turns_the_device_tier_off_before_its_burst";
    if !netns_gate(NAME) {
        return;
    }
    let ns = Netns::new("devmir2");
    // The sysctls alone: lo still counts everything.
    for key in ["route_localnet", "accept_local"] {
        ns.sysctl(&format!("net.ipv4.conf.all.{key}"), "1");
        ns.sysctl(&format!("net.ipv4.conf.lo.{key}"), "1");
    }
    let mut d = ns.driver();
    let (id, port) = d.listen("127.0.0.1", 0, 64, false);
    let mut live = Live::start_env(&ns, &["--sample", "100ms"], &[DEBUG]);
    live.report();
    // Settled on lo's packets, then the filter comes: no device changes, only a qdisc.
    std::thread::sleep(Duration::from_millis(1000));
    if !skip_unless(
        redirect_lo_through_tc(&ns),
        NAME,
        "needs tc clsact, u32 and mirred",
    ) {
        return;
    }
    std::thread::sleep(Duration::from_millis(500));
    let rx = lo_rx_packets(&ns);
    let line = burst_past_lo(live, &ns, &mut d, (id, port), rx);
    assert!(line.contains("not verified"), "{line}");
}
