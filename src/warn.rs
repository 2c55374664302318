//! stderr messages with Telegraf's level prefixes (`E! `, `W! `, `I! `), each warning said once.
//! Under collectd, which logs every stderr line as an error, warnings are held instead and go
//! out with the next report as notifications.

use std::collections::HashSet;
use std::io::{self, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::encode::collectd::putnotif;

/// Distinct warnings kept in memory; past this (namespaces churning with the same problem, say)
/// further new warnings are dropped, once said so.
const MAX_KEYS: usize = 256;

/// Warnings said once per key, to stderr unless told otherwise (tests read what was said).
pub struct Warnings<W: Write = io::Stderr> {
    said: HashSet<String>,
    out: W,
    /// Held for the next report (collectd mode): when each was said, and what. At most one per
    /// key, so bounded as `said` is.
    held: Option<Vec<(Duration, String)>>,
}

impl Default for Warnings {
    fn default() -> Self {
        Warnings::to(io::stderr())
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
    warn_to(&mut io::stderr(), msg);
}

fn warn_to(out: &mut impl Write, msg: &str) {
    // A closed stderr must not turn a warning into a panic.
    let _ = writeln!(out, "W! [acceptq] {msg}");
}

/// Good news after a problem was said (`I! `, Telegraf's info level).
pub fn info(msg: &str) {
    let _ = writeln!(io::stderr(), "I! [acceptq] {msg}");
}

pub fn error(msg: &str) {
    let _ = writeln!(io::stderr(), "E! [acceptq] {msg}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn said(w: &Warnings<Vec<u8>>) -> Vec<&str> {
        std::str::from_utf8(&w.out).unwrap().lines().collect()
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
