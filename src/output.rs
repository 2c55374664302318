//! Where reports go: stdout, a whole report or nothing of it, or a file replaced atomically;
//! and waiting between reports without missing that stdout's reader went away.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const STDOUT: RawFd = 1;
/// A pipe whose reader is gone is POLLERR on the writing end; a hung-up terminal or socket is
/// POLLHUP. poll reports both whatever events were asked for.
const HANGUP: i16 = libc::POLLERR | libc::POLLHUP;

pub enum Sink {
    Stdout {
        /// A write failed after part of a report went out: that line is unfinished.
        unfinished: bool,
    },
    /// Written to a temp file in the same directory, then renamed over the target, so a reader
    /// (node_exporter's textfile collector) never sees half a report.
    File { path: PathBuf, tmp: PathBuf },
}

impl Sink {
    pub fn stdout() -> Sink {
        Sink::Stdout { unfinished: false }
    }

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

    pub fn is_stdout(&self) -> bool {
        matches!(self, Sink::Stdout { .. })
    }

    /// Proves a report can be written where it must go, before anything is collected: a
    /// missing or read-only `--output` directory is the error, not whatever reading `/proc`
    /// warned about first.
    pub fn check(&self) -> io::Result<()> {
        let Sink::File { path, tmp } = self else {
            return Ok(());
        };
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let fail = |e: io::Error| {
            io::Error::new(
                e.kind(),
                format!(
                    "--output {}: cannot write a file in {}: {e}",
                    path.display(),
                    dir.display()
                ),
            )
        };
        if fs::metadata(path).is_ok_and(|m| m.is_dir()) {
            return Err(io::Error::other(format!(
                "--output {}: is a directory; name a file in it",
                path.display()
            )));
        }
        File::create(tmp).map_err(fail)?;
        fs::remove_file(tmp).map_err(fail)
    }

    pub fn write(&mut self, report: &[u8]) -> io::Result<()> {
        match self {
            Sink::Stdout { unfinished } => {
                // A line a failed write cut is ended first, so the next report's first line is
                // whole; the cut line is lost either way.
                let result = if *unfinished {
                    write_whole(b"\n").and_then(|()| write_whole(report))
                } else {
                    write_whole(report)
                };
                *unfinished = result.is_err();
                result.map_err(|e| {
                    io::Error::new(e.kind(), format!("writing the report to stdout: {e}"))
                })
            }
            Sink::File { path, tmp } => {
                let result = (|| {
                    let mut f = File::create(&*tmp)?;
                    f.write_all(report)?;
                    f.sync_data()?;
                    fs::rename(&*tmp, &*path)
                })();
                if result.is_err() {
                    let _ = fs::remove_file(&*tmp);
                }
                result.map_err(|e| {
                    io::Error::new(e.kind(), format!("--output {}: {e}", path.display()))
                })
            }
        }
    }
}

/// Writes all of `buf` to fd 1, itself rather than through `std::io::Stdout`: std's stdout is
/// line-buffered (a report would go out as many writes), and its `write_all` on a non-blocking
/// stdout stops at EAGAIN without saying how much went out, leaving half a line for the next
/// report to continue. Here a started report is finished: on EAGAIN it waits until the pipe
/// has room, as a blocking write would.
fn write_whole(mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        // SAFETY: writes from a live slice to fd 1, which the process keeps open throughout.
        let n = unsafe { libc::write(STDOUT, buf.as_ptr().cast(), buf.len()) };
        if let Ok(n) = usize::try_from(n) {
            buf = &buf[n..];
            continue;
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::Interrupted => {}
            io::ErrorKind::WouldBlock => wait_writable()?,
            _ => return Err(e),
        }
    }
    Ok(())
}

fn wait_writable() -> io::Result<()> {
    loop {
        let mut fd = libc::pollfd {
            fd: STDOUT,
            events: libc::POLLOUT,
            revents: 0,
        };
        // SAFETY: one valid pollfd, for the duration of the call.
        if unsafe { libc::poll(&mut fd, 1, -1) } < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if fd.revents & libc::POLLOUT != 0 {
            return Ok(());
        }
        if fd.revents & HANGUP != 0 {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        if fd.revents & libc::POLLNVAL != 0 {
            return Err(io::Error::from_raw_os_error(libc::EBADF));
        }
    }
}

/// What ended a [`wait`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wake {
    /// The time given passed.
    Elapsed,
    /// The input fd has something to read, or its end.
    Input,
    /// Stdout's reader is gone (`acceptq | head -1` after its line): time to exit quietly.
    StdoutGone,
}

/// Waits until `input` is readable, stdout hangs up (when `watch_stdout`), or `limit` passes
/// (`None`: no limit). Without it, a closed stdout would be noticed only at the next report's
/// write, an interval (or a Telegraf newline) later.
pub fn wait(watch_stdout: bool, input: Option<RawFd>, limit: Option<Duration>) -> Wake {
    let deadline = limit.map(|d| Instant::now() + d);
    let mut watch_stdout = watch_stdout;
    loop {
        let timeout = match deadline {
            None => -1,
            Some(t) => {
                let left = t.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Wake::Elapsed;
                }
                // Rounded up: waking before the deadline would only poll again.
                i32::try_from(left.as_micros().div_ceil(1000)).unwrap_or(i32::MAX)
            }
        };
        let mut fds = [
            libc::pollfd {
                // poll skips a negative fd.
                fd: if watch_stdout { STDOUT } else { -1 },
                events: 0,
                revents: 0,
            },
            libc::pollfd {
                fd: input.unwrap_or(-1),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: a valid array of pollfds, for the duration of the call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
        if n < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            // Cannot happen with valid arguments; fall back to a plain sleep.
            if let Some(t) = deadline {
                std::thread::sleep(t.saturating_duration_since(Instant::now()));
            }
            return Wake::Elapsed;
        }
        if fds[0].revents & HANGUP != 0 {
            return Wake::StdoutGone;
        }
        if fds[0].revents & libc::POLLNVAL != 0 {
            // No fd 1 at all: the report's write says so; do not spin on it here.
            watch_stdout = false;
        }
        if fds[1].revents != 0 {
            return Wake::Input;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_names_the_output_and_its_directory() {
        let e = Sink::file(Path::new("/nonexistent-dir-acceptq/x.prom"))
            .check()
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(
                "--output /nonexistent-dir-acceptq/x.prom: cannot write a file in /nonexistent-dir-acceptq: "
            ),
            "{e}"
        );
        let dir = std::env::temp_dir();
        let e = Sink::file(&dir).check().unwrap_err().to_string();
        assert!(e.ends_with("is a directory; name a file in it"), "{e}");
        let target = dir.join(format!("acceptq-check-{}.prom", std::process::id()));
        Sink::file(&target).check().unwrap();
        let leftovers = fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .contains(&format!("acceptq-check-{}", std::process::id()))
            })
            .count();
        assert_eq!(leftovers, 0, "the check leaves no file behind");
    }
}
