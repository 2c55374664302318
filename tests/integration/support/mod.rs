//! Helpers shared by the integration tests, written once. Test files take them all with
//! `use crate::support::*;`.

pub mod collectd;
pub mod exposition;
pub mod formats;
pub mod harness;
pub mod host;
pub mod influxd;
pub mod netns;
pub mod process;
pub mod report;
pub mod tempdir;

pub use collectd::{assert_collectd_took_every_line, collectd_gate, collectd_log, start_collectd};
pub use harness::skip_unless;
pub(crate) use harness::{note, tests};
pub use host::*;
pub use netns::*;
pub use process::*;
pub use report::*;
pub use tempdir::TempDir;
