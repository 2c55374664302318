//! rtnetlink link dumps: any bytes as one buffer of the answer to RTM_GETLINK. The sampler
//! classifies a namespace's devices from it, so a device it reports is one whose message lies
//! whole inside the buffer, and nothing panics.
#![no_main]

use acceptq::source::netdev::{link_part, Classifier, Part};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (seq, port, bytes) = match data {
        [a, b, rest @ ..] => (u32::from(*a), u32::from(*b), rest),
        _ => return,
    };
    let mut c = Classifier::new(true);
    let mut links = 0usize;
    let part = link_part(bytes, seq, port, |l| {
        links += 1;
        assert!(l.name.len() < bytes.len());
        c.add(l);
    });
    // A netlink header (16 bytes) and an ifinfomsg (16) per device at least.
    assert!(links <= bytes.len() / 32);
    if part == Ok(Part::Done) {
        let _ = c.class();
    }
});
