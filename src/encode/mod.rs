//! One encoder per output format, all behind [`Encoder`], all appending to a reused buffer so a
//! report leaves in one write.
//!
//! No encoder may merge two distinct tag values into one series: a value a format cannot carry
//! byte for byte is written in a documented escaped form that no other value can take.

pub mod collectd;
pub mod influx;
pub mod json;
pub mod prometheus;

use crate::metric::{Metric, Metrics};

pub trait Encoder {
    /// Appends `metrics`, as one report, to `out`.
    fn encode(&mut self, metrics: &Metrics, out: &mut Vec<u8>);

    /// [`Self::encode`] for metrics made one by one.
    fn encode_all(&mut self, metrics: &[Metric], out: &mut Vec<u8>) {
        self.encode(&Metrics::from(metrics), out);
    }
}

/// What a format finds about a name that lives as long as the program (a measurement, tag or
/// field name of the schema), worked out once per name instead of once per row: a name is
/// looked up by where its text is, which no other text can share while it lives.
pub struct NameMemo<T: Copy> {
    slots: [Option<(usize, usize, T)>; 64],
}

impl<T: Copy> Default for NameMemo<T> {
    fn default() -> Self {
        NameMemo { slots: [None; 64] }
    }
}

impl<T: Copy> NameMemo<T> {
    /// `find(name)`, remembered.
    pub fn get(&mut self, name: &'static str, find: impl FnOnce(&str) -> T) -> T {
        let at = name.as_ptr() as usize;
        let slot = &mut self.slots[(at >> 3 ^ name.len()) % 64];
        match *slot {
            Some((a, len, v)) if a == at && len == name.len() => v,
            _ => {
                let v = find(name);
                *slot = Some((at, name.len(), v));
                v
            }
        }
    }
}

/// `--tag KEY=VALUE` pairs, validated (see [`crate::metric::parse_user_tag`]), added to every
/// row after acceptq's own tags.
pub type UserTags = Vec<(String, String)>;

/// 64-bit FNV-1a: a hash that is the same on every run, build and version (std's hashers are
/// seeded per process), so identifiers built from it stay stable across restarts and upgrades.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_memo_answers_for_each_name_whatever_shares_its_slot() {
        // More names than slots: some share one, and each must still get its own answer.
        let names: Vec<&'static str> = (0..200)
            .map(|i| {
                &*Box::leak(format!("n{i}{}", if i % 3 == 0 { " x" } else { "" }).into_boxed_str())
            })
            .collect();
        let mut memo = NameMemo::default();
        for _ in 0..3 {
            for name in &names {
                assert_eq!(
                    memo.get(name, |n| n.contains(' ')),
                    name.contains(' '),
                    "{name}"
                );
            }
        }
    }

    #[test]
    fn fnv1a64_matches_the_published_test_vectors() {
        // From the FNV reference test suite: the empty string, "a" and "foobar".
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }
}
