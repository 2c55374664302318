//! Where reports go: stdout in one write per report, or a file replaced atomically.

use std::fs::{self, File};
use std::io::{self, Write};
use std::mem::ManuallyDrop;
use std::os::fd::FromRawFd;
use std::path::{Path, PathBuf};

pub enum Sink {
    Stdout,
    /// Written to a temp file in the same directory, then renamed over the target, so a reader
    /// (node_exporter's textfile collector) never sees half a report.
    File {
        path: PathBuf,
        tmp: PathBuf,
    },
}

impl Sink {
    pub fn file(path: &Path) -> Sink {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = path.with_file_name(format!(".{name}.tmp.{}", std::process::id()));
        Sink::File {
            path: path.to_path_buf(),
            tmp,
        }
    }

    pub fn write(&self, report: &[u8]) -> io::Result<()> {
        match self {
            Sink::Stdout => {
                // Straight to fd 1: std's line buffering would split a report into many writes.
                // SAFETY: fd 1 stays open for the process; ManuallyDrop keeps it from being closed.
                let mut out = ManuallyDrop::new(unsafe { File::from_raw_fd(1) });
                out.write_all(report).map_err(|e| {
                    io::Error::new(e.kind(), format!("writing the report to stdout: {e}"))
                })
            }
            Sink::File { path, tmp } => {
                let result = (|| {
                    let mut f = File::create(tmp)?;
                    f.write_all(report)?;
                    f.sync_data()?;
                    fs::rename(tmp, path)
                })();
                if result.is_err() {
                    let _ = fs::remove_file(tmp);
                }
                result.map_err(|e| {
                    io::Error::new(e.kind(), format!("--output {}: {e}", path.display()))
                })
            }
        }
    }
}
