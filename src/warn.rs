//! stderr messages with Telegraf's level prefixes (`E! `, `W! `, `I! `), each warning said once.

use std::collections::HashSet;
use std::io::{self, Write};

/// Distinct warnings kept in memory; past this (namespaces churning with the same problem, say)
/// further new warnings are dropped, once said so.
const MAX_KEYS: usize = 256;

/// Warnings said once per key, to stderr unless told otherwise (tests read what was said).
pub struct Warnings<W: Write = io::Stderr> {
    said: HashSet<String>,
    out: W,
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
        }
    }

    /// Where warnings go (tests read what was said).
    pub fn writer(&self) -> &W {
        &self.out
    }

    /// Prints `msg` the first time `key` is warned about; later calls are silent.
    pub fn once(&mut self, key: &str, msg: String) {
        if self.said.contains(key) {
            return;
        }
        if self.said.len() >= MAX_KEYS {
            if self.said.insert(String::new()) {
                warn_to(
                    &mut self.out,
                    "too many distinct warnings: further ones are not shown",
                );
            }
            return;
        }
        self.said.insert(key.to_string());
        warn_to(&mut self.out, &msg);
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
}
