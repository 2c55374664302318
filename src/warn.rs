//! stderr messages with Telegraf's level prefixes (`E! `, `W! `), each warning said once.

use std::collections::HashSet;
use std::io::Write;

/// Distinct warnings kept in memory; past this (namespaces churning with the same problem, say)
/// further new warnings are dropped, once said so.
const MAX_KEYS: usize = 256;

#[derive(Default)]
pub struct Warnings {
    said: HashSet<String>,
}

impl Warnings {
    /// Prints `msg` the first time `key` is warned about; later calls are silent.
    pub fn once(&mut self, key: &str, msg: String) {
        if self.said.contains(key) {
            return;
        }
        if self.said.len() >= MAX_KEYS {
            if self.said.insert(String::new()) {
                warn("too many distinct warnings: further ones are not shown");
            }
            return;
        }
        self.said.insert(key.to_string());
        warn(&msg);
    }
}

pub fn warn(msg: &str) {
    // A closed stderr must not turn a warning into a panic.
    let _ = writeln!(std::io::stderr(), "W! [acceptq] {msg}");
}

pub fn error(msg: &str) {
    let _ = writeln!(std::io::stderr(), "E! [acceptq] {msg}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_key_once_and_the_set_stays_bounded() {
        let mut w = Warnings::default();
        w.once("a", "first".into());
        w.once("a", "again".into());
        assert_eq!(w.said.len(), 1);
        for i in 0..1000 {
            w.once(&format!("k{i}"), String::new());
        }
        assert_eq!(
            w.said.len(),
            MAX_KEYS + 1,
            "the keys plus the one saying it stopped"
        );
    }
}
