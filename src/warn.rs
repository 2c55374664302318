//! stderr messages with Telegraf's level prefixes (`E! `, `W! `, `I! `), each warning said once.
//! Under collectd, which logs every stderr line as an error, warnings are held instead and go
//! out with the next report as notifications.

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::io::{self, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::encode::collectd::putnotif;
use std::sync::Mutex;

/// Distinct warnings kept in memory; past this (namespaces churning with the same problem, say)
/// further new warnings are dropped, once said so.
const MAX_KEYS: usize = 256;

/// Warnings said once per key, to stderr unless told otherwise (tests read what was said).
pub struct Warnings<W: Write = Stderr> {
    said: HashSet<String>,
    out: W,
    /// Held for the next report (collectd mode): when each was said, and what. At most one per
    /// key, so bounded as `said` is.
    held: Option<Vec<(Duration, String)>>,
}

impl Default for Warnings {
    fn default() -> Self {
        Warnings::to(Stderr)
    }
}

impl<W: Write> Warnings<W> {
    pub fn to(out: W) -> Self {
        Warnings {
            said: HashSet::new(),
            out,
            held: None,
        }
    }

    /// From now on warnings are held for [`Self::take_notifications`], not written.
    pub fn hold_for_collectd(&mut self) {
        self.held.get_or_insert_with(Vec::new);
    }

    /// Appends the warnings held since the last call, as collectd `PUTNOTIF` lines of severity
    /// warning for `host` (an identifier part), stamped with the time each was said.
    pub fn take_notifications(&mut self, host: &str, out: &mut Vec<u8>) {
        for (time, msg) in self.held.iter_mut().flat_map(|h| h.drain(..)) {
            putnotif(host, "warning", time, &msg, out);
        }
    }

    fn say(&mut self, msg: &str) {
        match &mut self.held {
            Some(held) => {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default();
                held.push((now, msg.to_string()));
            }
            None => warn_to(&mut self.out, msg),
        }
    }

    /// Where warnings go (tests read what was said).
    pub fn writer(&self) -> &W {
        &self.out
    }

    /// Says `msg` now, whatever was said before: for news whose sender already says it once
    /// per occurrence (the sampler, once per failure streak).
    pub fn now(&mut self, msg: &str) {
        self.say(msg);
    }

    /// Prints `msg` the first time `key` is warned about; later calls are silent.
    pub fn once(&mut self, key: &str, msg: String) {
        if self.said.contains(key) {
            return;
        }
        if self.said.len() >= MAX_KEYS {
            if self.said.insert(String::new()) {
                self.say("too many distinct warnings: further ones are not shown");
            }
            return;
        }
        self.said.insert(key.to_string());
        self.say(&msg);
    }
}

pub fn warn(msg: &str) {
    warn_to(&mut Stderr, msg);
}

fn warn_to(out: &mut impl Write, msg: &str) {
    // A closed stderr must not turn a warning into a panic.
    let _ = writeln!(out, "W! [acceptq] {msg}");
}

/// Good news after a problem was said (`I! `, Telegraf's info level).
pub fn info(msg: &str) {
    let _ = writeln!(Stderr, "I! [acceptq] {msg}");
}

pub fn error(msg: &str) {
    let _ = writeln!(Stderr, "E! [acceptq] {msg}");
}

/// Lines held back from stderr while a full-screen view (`acceptq top`) owns the terminal, where
/// they would scribble over the screen; `None` while stderr is written as usual.
static HELD: Mutex<Option<VecDeque<String>>> = Mutex::new(None);

/// Held lines kept until taken: the newest, a screen's status line shows only the latest.
const MAX_HELD: usize = 64;

fn held() -> std::sync::MutexGuard<'static, Option<VecDeque<String>>> {
    // A panic elsewhere while holding it leaves plain data: keep using it.
    HELD.lock().unwrap_or_else(|e| e.into_inner())
}

/// From now on lines for stderr (warnings, errors, infos) are held for [`take_held`] instead.
pub fn hold_stderr() {
    held().get_or_insert_with(VecDeque::new);
}

/// The lines held since the previous call, oldest first, without their newlines.
pub fn take_held() -> Vec<String> {
    held()
        .as_mut()
        .map(|h| h.drain(..).collect())
        .unwrap_or_default()
}

/// Lines go to stderr again; returns those still held.
pub fn release_stderr() -> Vec<String> {
    held().take().map(Vec::from).unwrap_or_default()
}

/// stderr, or the held lines while [`hold_stderr`] is on.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stderr;

impl Stderr {
    /// Holds `text` if holding is on; `false`: write it to stderr.
    fn hold(text: &str) -> bool {
        let mut guard = held();
        let Some(lines) = guard.as_mut() else {
            return false;
        };
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            if lines.len() == MAX_HELD {
                lines.pop_front();
            }
            lines.push_back(line.to_string());
        }
        true
    }
}

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if Stderr::hold(&String::from_utf8_lossy(buf)) {
            return Ok(buf.len());
        }
        io::stderr().write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }

    /// Whole, as `io::Stderr` writes a formatted line under one lock: lines from two threads
    /// never interleave.
    fn write_fmt(&mut self, args: fmt::Arguments<'_>) -> io::Result<()> {
        if Stderr::hold(&args.to_string()) {
            return Ok(());
        }
        io::stderr().write_fmt(args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn said(w: &Warnings<Vec<u8>>) -> Vec<&str> {
        std::str::from_utf8(&w.out).unwrap().lines().collect()
    }

    #[test]
    fn held_lines_are_kept_bounded_and_given_back_when_released() {
        // The one test that turns holding on: others writing to stderr meanwhile may add lines,
        // so only ours are looked for.
        hold_stderr();
        let mut w = Warnings::default();
        w.once("held-test", "held-test said while held".into());
        error("held-test error while held");
        let taken = take_held();
        assert!(taken.contains(&"W! [acceptq] held-test said while held".to_string()));
        assert!(taken.contains(&"E! [acceptq] held-test error while held".to_string()));
        assert!(
            !take_held().iter().any(|l| l.contains("held-test")),
            "taken once"
        );
        for i in 0..200 {
            warn(&format!("held-test {i}"));
        }
        let left = release_stderr();
        assert!(left.len() <= MAX_HELD, "{}", left.len());
        assert_eq!(
            left.last().unwrap(),
            "W! [acceptq] held-test 199",
            "the newest kept"
        );
        assert!(take_held().is_empty(), "released: nothing held any more");
    }

    #[test]
    fn each_key_once_and_the_set_stays_bounded() {
        let mut w = Warnings::to(Vec::new());
        w.once("a", "first".into());
        w.once("a", "again".into());
        assert_eq!(said(&w), ["W! [acceptq] first"]);
        for i in 0..1000 {
            w.once(&format!("k{i}"), format!("number {i}"));
        }
        assert_eq!(
            w.said.len(),
            MAX_KEYS + 1,
            "the keys plus the one saying it stopped"
        );
        let lines = said(&w);
        assert_eq!(
            lines.len(),
            MAX_KEYS + 1,
            "each kept key said once, and the stop"
        );
        assert_eq!(lines[MAX_KEYS - 1], "W! [acceptq] number 254");
        assert_eq!(
            lines[MAX_KEYS],
            "W! [acceptq] too many distinct warnings: further ones are not shown"
        );
    }

    #[test]
    fn held_for_collectd_warnings_leave_as_notifications_not_on_stderr() {
        let mut w = Warnings::to(Vec::new());
        w.hold_for_collectd();
        w.once("owners", "cannot read /proc/<pid>/fd of 2 processes".into());
        w.once("owners", "again".into());
        w.once("other", "second \"one\"".into());
        assert!(said(&w).is_empty(), "nothing on stderr: {:?}", said(&w));
        let mut out = b"PUTVAL x\n".to_vec();
        w.take_notifications("web1", &mut out);
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert_eq!(lines[0], "PUTVAL x", "appended after the report");
        for (line, msg) in lines[1..].iter().zip([
            "cannot read /proc/<pid>/fd of 2 processes",
            "second \"one\"",
        ]) {
            let opts = crate::encode::collectd::tests::parse_putnotif(line).unwrap();
            let get = |k: &str| opts.iter().find(|(o, _)| o == k).unwrap().1.clone();
            assert_eq!(get("severity"), "warning", "{line}");
            assert_eq!(get("host"), "web1");
            assert_eq!(get("plugin"), "acceptq");
            assert_eq!(get("message"), msg);
            assert!(get("time").parse::<f64>().unwrap() > 1.6e9, "{line}");
        }
        let mut again = Vec::new();
        w.take_notifications("web1", &mut again);
        assert!(again.is_empty(), "each said once");
        w.once("third", "later".into());
        w.take_notifications("web1", &mut again);
        assert_eq!(String::from_utf8(again).unwrap().lines().count(), 1);
    }
}
