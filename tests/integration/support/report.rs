//! acceptq's JSON report, read back.

use std::io::Write;
use std::process::{ChildStdin, Command};
use std::time::Duration;

use super::process::{Lines, STEP};

/// One JSON report line, parsed.
pub type Json = serde_json::Value;

pub fn json_lines(stdout: &[u8]) -> Vec<Json> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect()
}

/// Runs acceptq (`cmd`), requires success, and returns its JSON report.
pub fn json_report(cmd: &mut Command) -> Vec<Json> {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    json_lines(&out.stdout)
}

/// Asks a `--signal stdin --format json` acceptq for a report (a newline) and reads it back.
/// With several namespaces a report ends with the acceptq_netns row of the last one; a report
/// leaves in one write, so a netns row followed by a pause ends it.
pub fn ask_report(stdin: &mut ChildStdin, stdout: &Lines) -> Vec<Json> {
    stdin.write_all(b"\n").unwrap();
    stdin.flush().unwrap();
    let mut rows: Vec<Json> = vec![serde_json::from_str(&stdout.expect(STEP, "a report")).unwrap()];
    loop {
        let last_is_netns = rows.last().unwrap()["name"] == "acceptq_netns";
        match stdout.next(Duration::from_millis(300)) {
            Some(line) => rows.push(serde_json::from_str(&line).unwrap()),
            None if last_is_netns => return rows,
            None => panic!("report stopped mid-way: {rows:?}"),
        }
    }
}

/// The `acceptq_listener` row for `port` in a JSON report.
pub fn listener(report: &[Json], port: u16) -> &Json {
    report
        .iter()
        .find(|m| m["name"] == "acceptq_listener" && port_of(m) == Some(port))
        .unwrap_or_else(|| panic!("no listener on port {port} in {report:?}"))
}

/// Every `acceptq_listener` row, in report order.
pub fn listener_rows(report: &[Json]) -> Vec<&Json> {
    report
        .iter()
        .filter(|m| m["name"] == "acceptq_listener")
        .collect()
}

pub fn netns_row(report: &[Json]) -> &Json {
    report
        .iter()
        .find(|m| m["name"] == "acceptq_netns")
        .expect("acceptq_netns row")
}

pub fn int(v: &Json) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("not an unsigned integer: {v}"))
}

/// A field of a metric, None when absent; present, it must be an unsigned integer.
pub fn field(m: &Json, name: &str) -> Option<u64> {
    m["fields"].get(name).map(|v| {
        v.as_u64()
            .unwrap_or_else(|| panic!("{name} is not a u64 in {m}"))
    })
}

/// The `port` tag of a metric (a string in every format), as a number.
pub fn port_of(m: &Json) -> Option<u16> {
    m["tags"]["port"].as_str().and_then(|p| p.parse().ok())
}
