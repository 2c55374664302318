//! stderr messages with Telegraf's level prefixes (`E! `, `W! `), each warning said once.

use std::collections::HashSet;
use std::io::Write;

#[derive(Default)]
pub struct Warnings {
    said: HashSet<String>,
}

impl Warnings {
    /// Prints `msg` the first time `key` is warned about; later calls are silent.
    pub fn once(&mut self, key: &str, msg: String) {
        if self.said.insert(key.to_string()) {
            warn(&msg);
        }
    }
}

pub fn warn(msg: &str) {
    // A closed stderr must not turn a warning into a panic.
    let _ = writeln!(std::io::stderr(), "W! [acceptq] {msg}");
}

pub fn error(msg: &str) {
    let _ = writeln!(std::io::stderr(), "E! [acceptq] {msg}");
}
