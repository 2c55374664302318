//! The run modes: the interval loop, one report per stdin line (Telegraf execd), collectd's
//! exec mode, `--once` and `--once --window`.

use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use crate::cli::{Args, Signal};
use crate::output;
use crate::reporter::Reporter;
pub use crate::reporter::RunError;

pub fn run(args: Args) -> Result<(), RunError> {
    // First: a stop asked while the namespaces are being opened ends the run with status 0
    // too, not by the signal's default action.
    let signals = output::stop_on_signals_while_starting();
    let mut reporter = Reporter::new(&args)?;
    if let Err(e) = signals {
        // Without it SIGTERM still ends us, only not between reports.
        reporter.warn_once(
            "signals",
            format!("SIGTERM and SIGINT keep their default action: {e}"),
        );
    }
    if output::started() {
        return Ok(());
    }
    if args.once {
        if let Some(window) = args.window {
            // A silent first reading sets the baseline; the report then covers the window.
            reporter.collect();
            if reporter.wait(window).ends_run() {
                return Ok(());
            }
        }
        reporter.report()?;
        reporter.end_one_shot();
        return Ok(());
    }
    if args.signal == Signal::Stdin {
        return stdin_loop(&mut reporter);
    }
    // collectd closes our stdin at once: EOF there means nothing, so it is never read.
    let interval = reporter.interval;
    interval_loop(&mut reporter, interval)
}

/// Telegraf execd: a report per line on stdin; EOF is Telegraf stopping us. A line is counted
/// by its newline whatever its bytes, and never kept, so a long or binary line costs no memory.
fn stdin_loop(reporter: &mut Reporter) -> Result<(), RunError> {
    let stdin = io::stdin();
    let fd = stdin.as_raw_fd();
    let mut stdin = stdin.lock();
    // At least as large as std's own stdin buffer (8 KiB), so a read takes all it holds and
    // never leaves bytes there that poll cannot see.
    let mut chunk = vec![0u8; 64 * 1024];
    // Bytes of a line whose newline has not come yet.
    let mut open_line = false;
    loop {
        if output::wait(reporter.to_stdout(), Some(fd), None).ends_run() {
            return Ok(());
        }
        let n = match stdin.read(&mut chunk) {
            Ok(n) => n,
            Err(e)
                if e.kind() == io::ErrorKind::Interrupted
                    || e.kind() == io::ErrorKind::WouldBlock =>
            {
                continue
            }
            Err(e) => return Err(RunError::Fatal(format!("reading stdin: {e}"))),
        };
        if n == 0 {
            // A last line without its newline still asked for a report.
            if open_line {
                reporter.report()?;
            }
            return Ok(());
        }
        for _ in 0..lines_ended(&chunk[..n], &mut open_line) {
            if !reporter.report()? {
                return Ok(());
            }
        }
    }
}

/// The lines `chunk` of stdin ends (its newlines); `open` says whether bytes of a line not yet
/// ended were read, in this chunk or an earlier one. Bytes are never decoded or kept.
fn lines_ended(chunk: &[u8], open: &mut bool) -> usize {
    let ended = chunk.iter().filter(|b| **b == b'\n').count();
    *open = match chunk.iter().rposition(|b| *b == b'\n') {
        Some(last) => last + 1 < chunk.len(),
        None => *open || !chunk.is_empty(),
    };
    ended
}

fn interval_loop(reporter: &mut Reporter, interval: Duration) -> Result<(), RunError> {
    let mut next = Instant::now();
    loop {
        if !reporter.report()? {
            return Ok(());
        }
        let now = Instant::now();
        next += interval;
        while next <= now {
            next += interval; // a slow report skips ticks rather than bunching reports
        }
        if reporter.wait(next - now).ends_run() {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stdin_lines_are_counted_by_newline_whatever_their_bytes() {
        let mut open = false;
        assert_eq!(lines_ended(b"\n\xff\n", &mut open), 2);
        assert!(!open);
        assert_eq!(lines_ended(b"\xc3", &mut open), 0);
        assert!(open, "a line begun");
        assert_eq!(lines_ended(b"\x28", &mut open), 0);
        assert!(open, "still the same line");
        assert_eq!(lines_ended(b"\n\n", &mut open), 2);
        assert!(!open);
        assert_eq!(lines_ended(b"\nab", &mut open), 1);
        assert!(open);
    }
}
