//! A real `collectd -f` for a test: its gate, its config in the test's directory, the daemon.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use super::harness::skip_unless;
use super::host::have;
use super::netns::Netns;
use super::process::Daemon;
use super::tempdir::TempDir;

/// Where Debian's collectd-core keeps the types every config here names.
pub const TYPES_DB: &str = "/usr/share/collectd/types.db";

/// Gate for tests that run collectd: the daemon and its types.db. Returns true or ends the
/// test as ignored (see [`skip_unless`]).
#[track_caller]
pub fn collectd_gate(test: &str) -> bool {
    skip_unless(
        have("collectd"),
        test,
        "needs collectd (Debian collectd-core)",
    ) && skip_unless(
        Path::new(TYPES_DB).is_file(),
        test,
        "needs collectd's types.db",
    )
}

/// Writes `dir/collectd.conf` (host `hostname`, a 1 s interval, log at info with time stamps
/// to `dir/collectd.log`, then `plugins`) and starts `collectd -f` on it, its stdout and stderr
/// in files beside it. Inside `ns` when given, so that an acceptq its exec plugin forks watches
/// that namespace.
pub fn start_collectd(dir: &TempDir, ns: Option<&Netns>, hostname: &str, plugins: &str) -> Daemon {
    // collectd's config strings take `\"` and `\\` as escapes.
    let host = hostname.replace('\\', "\\\\").replace('"', "\\\"");
    let d = dir.0.display();
    let config = format!(
        r#"Hostname "{host}"
FQDNLookup false
BaseDir "{d}"
PIDFile "{d}/collectd.pid"
PluginDir "/usr/lib/collectd"
TypesDB "{TYPES_DB}"
Interval 1

LoadPlugin logfile
<Plugin logfile>
  LogLevel info
  File "{d}/collectd.log"
  Timestamp true
</Plugin>

{plugins}"#
    );
    let path = dir.join("collectd.conf");
    fs::write(&path, config).unwrap();
    let args = ["-f", "-C", path.to_str().unwrap()];
    let mut cmd = match ns {
        Some(ns) => ns.cmd("collectd", &args),
        None => {
            let mut c = Command::new("collectd");
            c.args(args);
            c
        }
    };
    Daemon::spawn(
        "collectd",
        cmd.stdin(Stdio::null())
            .stdout(dir.file("collectd.stdout"))
            .stderr(dir.file("collectd.stderr")),
    )
}

/// What collectd has logged so far (empty before it writes its log).
pub fn collectd_log(dir: &TempDir) -> String {
    fs::read_to_string(dir.join("collectd.log")).unwrap_or_default()
}

/// collectd took every line acceptq wrote it: its `log` has no error of the exec plugin (which
/// is what acceptq writing to stderr looks like), and collectd's stdout holds only the answers
/// `handle_putnotif` gives notifications (anything else is a rejected line).
pub fn assert_collectd_took_every_line(dir: &TempDir, log: &str) {
    let errors: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("exec_read_one: error = "))
        .collect();
    assert!(
        errors.is_empty(),
        "acceptq wrote to stderr under collectd: {errors:#?}"
    );
    let stdout = fs::read_to_string(dir.join("collectd.stdout")).unwrap_or_default();
    for line in stdout.lines() {
        assert_eq!(
            line, "0 Success",
            "collectd rejected a line of acceptq's:\n{stdout}"
        );
    }
}
