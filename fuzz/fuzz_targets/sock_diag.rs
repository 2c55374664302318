//! sock_diag replies: any bytes as a datagram, and well-formed dumps the kernel could send, cut
//! at any offset and with any one byte changed.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use acceptq::source::inet_diag::{
    decode_datagram, decode_record, Record, Step, TcpInfo, NLMSG_DONE,
};
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

/// `SOCK_DIAG_BY_FAMILY`: the type of every record message.
const BY_FAMILY: u16 = 20;
const SKMEMINFO: u16 = 7;
const INFO: u16 = 2;

#[derive(Debug, Arbitrary)]
enum Input {
    Raw {
        datagram: Vec<u8>,
        seq: u32,
        with_attributes: bool,
    },
    Dump {
        records: Vec<Rec>,
        seq: u32,
        done: bool,
        with_attributes: bool,
        cut: u16,
        flip_at: u16,
        flip: u8,
    },
}

#[derive(Debug, Arbitrary)]
struct Rec {
    v6: bool,
    state: u8,
    addr: [u8; 16],
    port: u16,
    ifindex: u32,
    rqueue: u32,
    wqueue: u32,
    inode: u32,
    /// Length of the SKMEMINFO array in u32 words, 0: no attribute (kernels send 9 or more).
    meminfo_words: u8,
    drops: u32,
    /// Bytes of tcp_info sent, 0: no attribute.
    info_len: u8,
    last_data_sent: u32,
    /// Sent under another sequence number: a leftover of an earlier dump, to be skipped.
    stale: bool,
}

fn message(out: &mut Vec<u8>, kind: u16, seq: u32, payload: &[u8]) {
    out.extend_from_slice(&(16 + payload.len() as u32).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(&2u16.to_ne_bytes()); // NLM_F_MULTI
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes());
    out.extend_from_slice(payload);
    while out.len() % 4 != 0 {
        out.push(0);
    }
}

fn attribute(out: &mut Vec<u8>, kind: u16, value: &[u8]) {
    out.extend_from_slice(&(4 + value.len() as u16).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(value);
    while out.len() % 4 != 0 {
        out.push(0);
    }
}

/// The record's `inet_diag_msg` and attributes, and the Record the decoder must give for it.
fn body(r: &Rec, with_attributes: bool) -> (Vec<u8>, Record) {
    let family = if r.v6 { 10 } else { 2 };
    let mut p = vec![family, r.state, 0, 0];
    p.extend_from_slice(&r.port.to_be_bytes());
    p.extend_from_slice(&0u16.to_be_bytes());
    let mut src = r.addr;
    if !r.v6 {
        src[4..].fill(0);
    }
    p.extend_from_slice(&src);
    p.extend_from_slice(&[0u8; 16]);
    p.extend_from_slice(&r.ifindex.to_ne_bytes());
    p.extend_from_slice(&[0xff; 8]);
    p.extend_from_slice(&0u32.to_ne_bytes());
    p.extend_from_slice(&r.rqueue.to_ne_bytes());
    p.extend_from_slice(&r.wqueue.to_ne_bytes());
    p.extend_from_slice(&1000u32.to_ne_bytes());
    p.extend_from_slice(&r.inode.to_ne_bytes());
    let words = usize::from(r.meminfo_words % 16);
    if words > 0 {
        let mem: Vec<u8> = (0..words as u32)
            .flat_map(|i| if i == 8 { r.drops } else { i * 100 }.to_ne_bytes())
            .collect();
        attribute(&mut p, SKMEMINFO, &mem);
    }
    let info_len = usize::from(r.info_len);
    if info_len > 0 {
        let mut info = vec![0u8; 256];
        info[44..48].copy_from_slice(&r.last_data_sent.to_ne_bytes());
        attribute(&mut p, INFO, &info[..info_len]);
    }
    let addr = if r.v6 {
        IpAddr::V6(Ipv6Addr::from(r.addr))
    } else {
        IpAddr::V4(Ipv4Addr::new(r.addr[0], r.addr[1], r.addr[2], r.addr[3]))
    };
    let want = Record {
        family,
        state: r.state,
        addr,
        port: r.port,
        ifindex: r.ifindex,
        inode: r.inode,
        rqueue: r.rqueue,
        wqueue: r.wqueue,
        drops: (with_attributes && words > 8).then_some(r.drops),
        tcp_info: (with_attributes && info_len > 0).then(|| TcpInfo {
            last_data_sent: (info_len >= 48).then_some(r.last_data_sent),
        }),
    };
    (p, want)
}

fuzz_target!(|input: Input| {
    match input {
        Input::Raw {
            datagram,
            seq,
            with_attributes,
        } => {
            let mut n = 0usize;
            let _ = decode_datagram(&datagram, seq, with_attributes, &mut |_| n += 1);
            // Every record needs a 16-byte header and a 72-byte body.
            assert!(n <= datagram.len() / 88);
            let _ = decode_record(&datagram, with_attributes);
            let _ = TcpInfo::parse(&datagram);
        }
        Input::Dump {
            records,
            seq,
            done,
            with_attributes,
            cut,
            flip_at,
            flip,
        } => {
            let mut datagram = Vec::new();
            let mut want = Vec::new();
            for r in records.iter().take(8) {
                let (payload, record) = body(r, with_attributes);
                if r.stale {
                    message(&mut datagram, BY_FAMILY, seq.wrapping_add(1), &payload);
                } else {
                    message(&mut datagram, BY_FAMILY, seq, &payload);
                    want.push(record);
                }
            }
            if done {
                message(&mut datagram, NLMSG_DONE, seq, &0i32.to_ne_bytes());
            }
            let whole = datagram.len();
            let mut got = Vec::new();
            let step = decode_datagram(&datagram, seq, with_attributes, &mut |r| got.push(*r));
            assert_eq!(step, Ok(if done { Step::Done } else { Step::More }));
            assert_eq!(got, want);

            // Cut short: an error, or the records before the cut, each whole and right.
            let at = usize::from(cut) % (whole + 1);
            let mut got = Vec::new();
            let step =
                decode_datagram(&datagram[..at], seq, with_attributes, &mut |r| got.push(*r));
            assert!(got.len() <= want.len() && got[..] == want[..got.len()]);
            if step == Ok(Step::Done) {
                assert!(done && got == want);
            }

            // One byte changed: no panic, and no more records than messages.
            if whole > 0 {
                let i = usize::from(flip_at) % whole;
                datagram[i] ^= flip.max(1);
                let mut n = 0usize;
                let _ = decode_datagram(&datagram, seq, with_attributes, &mut |_| n += 1);
                assert!(n <= whole / 88);
            }
        }
    }
});
