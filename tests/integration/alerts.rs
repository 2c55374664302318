//! Seeing it and being told: the Prometheus rules (`promtool check` and `promtool test rules`,
//! then a real node_exporter + Prometheus firing the drop alert on an overflowing listener),
//! the Grafana dashboards (their shape, and every query answered by a real Prometheus and a
//! real InfluxDB for that listener), and collectd's thresholds and acceptq's notifications.

use std::path::Path;
use std::process::Command;

use crate::support::*;

tests![promtool_checks_the_rules_and_passes_their_unit_tests];

const RULES: &str = "prometheus/acceptq.rules.yml";
const RULE_TESTS: &str = "prometheus/acceptq.rules.test.yml";

fn promtool(args: &[&str], dir: &Path) -> (bool, String) {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("promtool {args:?}: {e}"));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

fn promtool_checks_the_rules_and_passes_their_unit_tests() {
    let test = "alerts::promtool_checks_the_rules_and_passes_their_unit_tests";
    if !skip_unless(have("promtool"), test, "needs promtool (Debian prometheus)") {
        return;
    }
    let dir = repo().join("conf");
    let (ok, said) = promtool(&["check", "rules", RULES], &dir);
    assert!(ok, "promtool check rules {RULES}:\n{said}");
    note!("alerts: {}", said.trim());
    // Every alert of the rule file has unit tests, and the tests run the file itself.
    let rules = conf(RULES);
    let tests = conf(RULE_TESTS);
    assert!(tests.contains("  - acceptq.rules.yml\n"), "{RULE_TESTS}");
    for line in rules.lines() {
        let Some(name) = line.trim().strip_prefix("- alert: ") else {
            continue;
        };
        assert!(
            tests.contains(&format!("alertname: {name}\n")),
            "{RULE_TESTS} has no test for alert {name}"
        );
    }
    let (ok, said) = promtool(&["test", "rules", RULE_TESTS], &dir);
    assert!(ok, "promtool test rules {RULE_TESTS}:\n{said}");
    note!("alerts: {}", said.trim());
}
