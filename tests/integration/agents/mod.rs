//! The `conf/` snippets, run as the agents run them. Each snippet is the single source: a test
//! reads it and substitutes only paths.
//!
//! - collectd: a real `collectd -f` runs acceptq through the exec plugin snippet.
//! - InfluxDB 1.x: a real `influxd` takes acceptq's line protocol and keeps its field types.
//! - Telegraf: not installable here, so a harness does what `inputs.execd` and `inputs.exec` do
//!   with the commands of the snippets.
//! - Prometheus: `promtool check metrics`, and a reader that must never see half a `.prom` file.

pub mod collectd;
pub mod influxdb;
pub mod prometheus;
pub mod telegraf;

use std::time::Duration;

use crate::support::*;

/// Where the snippets name the binary; tests put the one cargo built in its place.
pub const INSTALLED: &str = "/usr/bin/acceptq";

/// A namespace with one `listen(2)` listener that never accepts and 10 clients: depth 3,
/// limit 2, drops rising.
pub fn overflowing(tag: &str) -> (Netns, Driver, u16) {
    let (ns, d, _, port) = queued_listener(tag, 2, 10, true);
    let full = wait_for(Duration::from_secs(5), || {
        (queued(&ns, port) == 3).then_some(())
    });
    assert!(full.is_some(), "listen(2) on {port} never held 3");
    (ns, d, port)
}
