//! What an operator types: durations (`--interval`, `--window`, `--sample`, collectd's
//! COLLECTD_INTERVAL), `--tag KEY=VALUE` and the globs of `--process`/`--interface`.
#![no_main]

use std::time::Duration;

use acceptq::cli::{parse_duration, parse_interval, parse_sample, parse_window, show_duration};
use acceptq::filter::glob;
use acceptq::metric::parse_user_tag;
use libfuzzer_sys::fuzz_target;

#[derive(Debug, arbitrary::Arbitrary)]
struct Input<'a> {
    duration: &'a str,
    tag: &'a str,
    pattern: &'a str,
    text: &'a str,
}

/// Shell-style matching written the obvious way (recursion over both strings), to hold the
/// product's linear-time matcher to.
fn model(p: &[char], t: &[char]) -> bool {
    match (p.first(), t.first()) {
        (None, _) => t.is_empty(),
        (Some('*'), _) => model(&p[1..], t) || (!t.is_empty() && model(p, &t[1..])),
        (Some(_), None) => false,
        (Some(&c), Some(&d)) => (c == '?' || c == d) && model(&p[1..], &t[1..]),
    }
}

fuzz_target!(|input: Input| {
    let s = input.duration;
    if let Ok(d) = parse_duration(s) {
        assert!(d <= Duration::from_secs(24 * 3600), "{s:?} gave {d:?}");
        // What is shown reads back as itself (to the millisecond shown).
        let shown = show_duration(d);
        let again = parse_duration(&shown).expect("a shown duration parses");
        assert_eq!(again.as_millis(), d.as_millis(), "{s:?} shown as {shown:?}");
    }
    for parse in [parse_interval, parse_window, parse_sample] {
        if let Ok(d) = parse(s) {
            assert_eq!(parse_duration(s), Ok(d));
        }
    }
    if let Ok((k, v)) = parse_user_tag(input.tag) {
        assert_eq!(format!("{k}={v}"), input.tag);
    }
    // The model is exponential on many stars: keep its inputs small.
    if input.pattern.chars().count() <= 12 && input.text.chars().count() <= 24 {
        let p: Vec<char> = input.pattern.chars().collect();
        let t: Vec<char> = input.text.chars().collect();
        assert_eq!(glob(input.pattern, input.text), model(&p, &t), "{input:?}");
    } else {
        glob(input.pattern, input.text);
    }
});
