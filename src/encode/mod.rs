//! One encoder per output format, all behind [`Encoder`], all appending to a reused buffer so a
//! report leaves in one write.

pub mod collectd;
pub mod influx;
pub mod json;
pub mod prometheus;

use crate::metric::Metric;

pub trait Encoder {
    /// Appends `metrics`, as one report, to `out`.
    fn encode(&mut self, metrics: &[Metric], out: &mut Vec<u8>);
}

/// Strips what no format can carry in a name or tag: control characters (a newline would end
/// the line early). Empty results are dropped by the callers.
pub fn clean(s: &str) -> std::borrow::Cow<'_, str> {
    if s.chars().any(char::is_control) {
        s.chars()
            .filter(|c| !c.is_control())
            .collect::<String>()
            .into()
    } else {
        s.into()
    }
}
