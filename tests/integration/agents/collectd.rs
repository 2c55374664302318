//! collectd: a real `collectd -f` runs acceptq through the exec plugin snippet of
//! `conf/collectd.conf`, as `nobody`, and its csv plugin writes what it understood.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{overflowing, INSTALLED};
use crate::support::*;

tests![exec_plugin_writes_accept_queue_values_as_nobody];

/// The values collectd's csv plugin wrote for one identifier, across its dated files.
fn csv_values(dir: &Path, prefix: &str) -> Vec<f64> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix(prefix))
                .is_some_and(|date| date.starts_with(|c: char| c.is_ascii_digit()))
        })
        .collect();
    files.sort();
    files
        .iter()
        .filter_map(|f| fs::read_to_string(f).ok())
        .flat_map(|text| {
            text.lines()
                .filter(|l| !l.starts_with("epoch"))
                .filter_map(|l| l.split(',').nth(1)?.parse::<f64>().ok())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The acceptq processes in `ns`, with their real uid.
fn acceptq_pids(ns: &Netns) -> Vec<(u32, u32)> {
    ns.pids()
        .into_iter()
        .filter(|p| {
            fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "acceptq")
        })
        .filter_map(|p| {
            let status = fs::read_to_string(format!("/proc/{p}/status")).ok()?;
            let uid = status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))?
                .split_whitespace()
                .next()?
                .parse()
                .ok()?;
            Some((p, uid))
        })
        .collect()
}

/// `conf/collectd.conf`'s exec block, running the binary under test (as nobody, who must be
/// able to reach it: see [`binary_for_nobody`]).
pub fn exec_block(dir: &TempDir) -> String {
    let snippet = conf("collectd.conf");
    assert!(snippet.contains(&format!("\"{INSTALLED}\"")), "{snippet}");
    snippet.replace(INSTALLED, binary_for_nobody(dir).to_str().unwrap())
}

fn exec_plugin_writes_accept_queue_values_as_nobody() {
    let test = "agents::collectd::exec_plugin_writes_accept_queue_values_as_nobody";
    if !(netns_gate(test) && collectd_gate(test)) {
        return;
    }
    let dir = TempDir::new("collectd");
    // The snippet runs acceptq with the group the packages create; where none made it, a
    // throwaway one stands in for the test.
    let group = Group::ensure("acceptq");
    let d = dir.0.display();
    let plugins = format!(
        r#"LoadPlugin csv
<Plugin csv>
  DataDir "{d}/csv"
  StoreRates false
</Plugin>

{}"#,
        exec_block(&dir)
    );

    let (ns, _driver, port) = overflowing("cd");
    // collectd runs inside the namespace, so the acceptq it forks watches it too.
    let mut collectd = start_collectd(&dir, Some(&ns), "aqtest", &plugins);

    let host = dir.join("csv/aqtest");
    let listener_dir = host.join(format!("acceptq-127.0.0.1-{port}"));
    let netns_dir = host.join("acceptq-netns");
    let log = || collectd_log(&dir);
    let written = wait_for(Duration::from_secs(20), || {
        if let Some(status) = collectd.exited() {
            panic!("collectd exited early ({status}); log:\n{}", log());
        }
        let depth = csv_values(&listener_dir, "queue_length-depth-");
        let limit = csv_values(&listener_dir, "queue_length-limit-");
        let drops = csv_values(&listener_dir, "derive-drops-");
        let overflows = csv_values(&netns_dir, "derive-listen_overflows-");
        (!depth.is_empty() && !limit.is_empty() && !drops.is_empty() && !overflows.is_empty())
            .then_some((depth, limit, drops, overflows))
    });
    let Some(first) = written else {
        panic!(
            "collectd wrote no acceptq values in 20 s; csv files: {:?}\nlog:\n{}",
            walk(&dir.join("csv")),
            log()
        );
    };

    // collectd closed acceptq's stdin at start: acceptq must keep running (one process, as
    // nobody) and keep reporting, not exit and be restarted every interval.
    let pids = acceptq_pids(&ns);
    assert_eq!(pids.len(), 1, "one acceptq under collectd: {pids:?}");
    assert_eq!(
        pids[0].1, 65534,
        "collectd runs acceptq as nobody: {pids:?}"
    );
    let status = fs::read_to_string(format!("/proc/{}/status", pids[0].0)).unwrap();
    let egid = status
        .lines()
        .find_map(|l| l.strip_prefix("Gid:"))
        .and_then(|ids| ids.split_whitespace().nth(1)?.parse::<u32>().ok());
    assert_eq!(
        egid,
        Some(group.gid),
        "collectd runs acceptq with the group acceptq, which may run a binary locked to it"
    );
    let more = wait_for(Duration::from_secs(6), || {
        let n = csv_values(&listener_dir, "queue_length-depth-").len();
        (n >= first.0.len() + 2).then_some(n)
    });
    assert!(
        more.is_some(),
        "no new values after the first {}",
        first.0.len()
    );
    assert_eq!(acceptq_pids(&ns), pids, "acceptq was restarted");

    // What collectd understood, every value it wrote.
    let depth = csv_values(&listener_dir, "queue_length-depth-");
    let limit = csv_values(&listener_dir, "queue_length-limit-");
    let drops = csv_values(&listener_dir, "derive-drops-");
    let overflows = csv_values(&netns_dir, "derive-listen_overflows-");
    assert!(
        depth.iter().all(|v| *v == 3.0),
        "queue_length-depth: {depth:?}"
    );
    assert!(
        limit.iter().all(|v| *v == 2.0),
        "queue_length-limit: {limit:?}"
    );
    assert!(drops.iter().all(|v| *v > 0.0), "derive-drops: {drops:?}");
    assert!(
        drops.windows(2).all(|w| w[0] <= w[1]),
        "derive-drops: {drops:?}"
    );
    assert!(
        overflows.iter().all(|v| *v > 0.0),
        "listen_overflows: {overflows:?}"
    );
    for file in [
        "derive-listen_drops-",
        "gauge-somaxconn-",
        "count-listeners-",
    ] {
        assert!(!csv_values(&netns_dir, file).is_empty(), "no {file}");
    }

    assert!(collectd.stop(), "collectd did not stop on SIGTERM");
    let log = log();
    let stdout = fs::read_to_string(dir.join("collectd.stdout")).unwrap_or_default();
    // cmd_handle_putval reports a bad identifier or type on collectd's stdout ("-1 ..."), and
    // handle_putnotif answers each accepted notification with "0 Success"; the exec plugin
    // logs lines it cannot parse.
    assert!(
        stdout.lines().all(|l| l == "0 Success"),
        "collectd rejected PUTVALs:\n{stdout}"
    );
    for bad in [
        "Unable to parse",
        "parse_value",
        "Cannot parse",
        "isn't defined",
        "Cowardly",
        "exec plugin: Failed",
        "exec plugin: No such",
    ] {
        assert!(!log.contains(bad), "collectd log has {bad:?}:\n{log}");
    }
    // acceptq's stderr, as collectd logs it: warnings are fine, errors are not.
    for line in log
        .lines()
        .filter(|l| l.contains("exec_read_one: error = "))
    {
        note!("agents: collectd logged: {line}");
        let msg = line.split("error = ").nth(1).unwrap_or("");
        assert!(
            msg.starts_with("W! ") || msg.starts_with("I! "),
            "acceptq said under collectd: {line}"
        );
    }
    note!(
        "agents: collectd suite ran ({} depth values, drops {:?}..{:?})",
        depth.len(),
        drops.first(),
        drops.last()
    );
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.filter_map(Result::ok) {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p.display().to_string());
            }
        }
    }
    out
}

/// A system group that exists while this lives: the host's own, or one created for the test
/// and deleted after it.
struct Group {
    gid: u32,
    created: Option<&'static str>,
}

impl Group {
    fn ensure(name: &'static str) -> Group {
        let gid = || {
            let out = std::process::Command::new("getent")
                .args(["group", name])
                .output()
                .ok()?;
            String::from_utf8(out.stdout)
                .ok()?
                .split(':')
                .nth(2)?
                .parse()
                .ok()
        };
        if let Some(gid) = gid() {
            return Group { gid, created: None };
        }
        let made = std::process::Command::new("groupadd")
            .args(["--system", name])
            .status()
            .is_ok_and(|s| s.success());
        assert!(made, "groupadd --system {name} failed");
        Group {
            gid: gid().expect("the group just created"),
            created: Some(name),
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        if let Some(name) = self.created {
            let _ = std::process::Command::new("groupdel").arg(name).status();
        }
    }
}
