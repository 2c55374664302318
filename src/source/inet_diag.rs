//! Pure encoding and decoding of sock_diag (`NETLINK_SOCK_DIAG`) messages for TCP sockets.
//!
//! No I/O here: `sock_diag.rs` owns the socket and feeds datagrams in, so every layout decision
//! is unit-tested on captured bytes. The byte layouts we read by hand are declared in this file
//! only.

use std::net::IpAddr;

use netlink_packet_core::Parseable;
use netlink_packet_core::{
    NetlinkBuffer, NetlinkHeader, NetlinkMessage, NlasIterator, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_sock_diag::{
    constants::{AF_INET, AF_INET6, INET_DIAG_SKMEMINFO, IPPROTO_TCP, SOCK_DIAG_BY_FAMILY},
    inet::{ExtensionFlags, InetRequest, InetResponseHeader, SocketId, StateFlags},
    SockDiagMessage,
};

pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;

/// `TCP_LISTEN` as a state bit for `idiag_states`.
pub const STATE_LISTEN: u32 = 1 << 10;
/// `TCP_NEW_SYN_RECV` (12): request sockets in the SYN queue. The crate has no constant for it.
pub const STATE_NEW_SYN_RECV: u32 = 1 << 12;

/// Size of `struct inet_diag_msg`, after which the attributes start.
const INET_DIAG_MSG_LEN: usize = 72;
/// `SK_MEMINFO_DROPS`: index of `sk_drops` in the `INET_DIAG_SKMEMINFO` array of u32.
const SK_MEMINFO_DROPS: usize = 8;
/// `struct nlmsgerr` starts with the negative errno as an i32.
const NLMSGERR_ERROR_LEN: usize = 4;

/// Which address families a dump covers: `AF_UNSPEC` answers ENOENT, so one dump per family.
pub const FAMILIES: [u8; 2] = [AF_INET, AF_INET6];

/// One socket record, copied out of the reply without allocating.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    pub state: u8,
    /// Local address; an IPv4-mapped IPv6 address is returned as IPv4.
    pub addr: IpAddr,
    pub port: u16,
    /// `idiag_if`: the device a listener is bound to (`SO_BINDTODEVICE`, or the scope of a
    /// link-local address); for a request socket, the listener's device, or for an IPv6
    /// link-local client the device the SYN came in on. 0: none.
    pub ifindex: u32,
    pub inode: u32,
    /// `idiag_rqueue`: for a listener, connections waiting in the accept queue.
    pub rqueue: u32,
    /// `idiag_wqueue`: for a listener, the accept-queue limit (`sk_max_ack_backlog`).
    pub wqueue: u32,
    /// `sk_drops`, when the reply carried `INET_DIAG_SKMEMINFO` long enough to hold it.
    pub drops: Option<u32>,
}

impl Record {
    pub fn endpoint(&self) -> crate::snapshot::Endpoint {
        crate::snapshot::Endpoint {
            addr: self.addr,
            port: self.port,
            ifindex: self.ifindex,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// The dump goes on in the next datagram.
    More,
    /// `NLMSG_DONE` was seen for our sequence number.
    Done,
}

#[derive(Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// A message header or body claims more bytes than the datagram holds.
    Truncated {
        what: &'static str,
        need: usize,
        have: usize,
    },
    /// The kernel answered `NLMSG_ERROR` with this (positive) errno.
    Kernel(i32),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Truncated { what, need, have } => {
                write!(
                    f,
                    "truncated sock_diag reply: {what} needs {need} bytes, {have} present"
                )
            }
            DecodeError::Kernel(errno) => {
                write!(
                    f,
                    "sock_diag request refused: {}",
                    std::io::Error::from_raw_os_error(*errno)
                )
            }
        }
    }
}

impl std::error::Error for DecodeError {}

/// Serialises a TCP dump request into `out` (cleared first), using the crate's layout.
pub fn build_request(out: &mut Vec<u8>, family: u8, states: u32, with_meminfo: bool, seq: u32) {
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    header.sequence_number = seq;
    let socket_id = if family == AF_INET6 {
        SocketId::new_v6()
    } else {
        SocketId::new_v4()
    };
    let extensions = if with_meminfo {
        ExtensionFlags::SKMEMINFO
    } else {
        ExtensionFlags::empty()
    };
    let mut msg = NetlinkMessage::new(
        header,
        SockDiagMessage::InetRequest(InetRequest {
            family,
            protocol: IPPROTO_TCP,
            extensions,
            // from_bits_retain: from_bits_truncate would silently drop TCP_NEW_SYN_RECV.
            states: StateFlags::from_bits_retain(states),
            socket_id,
        })
        .into(),
    );
    msg.finalize();
    out.clear();
    out.resize(msg.buffer_len(), 0);
    msg.serialize(out);
}

/// Decodes one datagram of a dump reply, calling `on_record` for every socket record that
/// belongs to the request numbered `seq`. Messages of other sequence numbers are skipped: they
/// are leftovers of an earlier dump and must not be counted twice.
pub fn decode_datagram(
    datagram: &[u8],
    seq: u32,
    with_meminfo: bool,
    on_record: &mut dyn FnMut(&Record),
) -> Result<Step, DecodeError> {
    let mut rest = datagram;
    while !rest.is_empty() {
        let msg = NetlinkBuffer::new_checked(rest).map_err(|_| DecodeError::Truncated {
            what: "netlink message",
            need: message_len_claim(rest),
            have: rest.len(),
        })?;
        let len = msg.length() as usize;
        let payload = msg.payload();
        let aligned = (len + 3) & !3;
        rest = if aligned >= rest.len() {
            &[]
        } else {
            &rest[aligned..]
        };
        if msg.sequence_number() != seq {
            continue;
        }
        match msg.message_type() {
            NLMSG_DONE => {
                // The dump's final status: a kernel that cut the dump short says so here.
                return match read_i32(payload) {
                    Some(errno) if errno < 0 => Err(DecodeError::Kernel(errno.saturating_neg())),
                    _ => Ok(Step::Done),
                };
            }
            NLMSG_ERROR => {
                if payload.len() < NLMSGERR_ERROR_LEN {
                    return Err(DecodeError::Truncated {
                        what: "nlmsgerr",
                        need: NLMSGERR_ERROR_LEN,
                        have: payload.len(),
                    });
                }
                let errno = read_i32(payload).unwrap_or_default();
                if errno == 0 {
                    continue; // an ACK, not an error
                }
                return Err(DecodeError::Kernel(errno.saturating_neg()));
            }
            SOCK_DIAG_BY_FAMILY => on_record(&decode_record(payload, with_meminfo)?),
            _ => {}
        }
    }
    Ok(Step::More)
}

fn message_len_claim(buf: &[u8]) -> usize {
    if buf.len() >= 4 {
        u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize
    } else {
        16
    }
}

/// Decodes one `inet_diag_msg` and, when SKMEMINFO was asked for, its attributes.
pub fn decode_record(payload: &[u8], with_meminfo: bool) -> Result<Record, DecodeError> {
    if payload.len() < INET_DIAG_MSG_LEN {
        return Err(DecodeError::Truncated {
            what: "inet_diag_msg",
            need: INET_DIAG_MSG_LEN,
            have: payload.len(),
        });
    }
    let header = InetResponseHeader::parse(&payload[..INET_DIAG_MSG_LEN]).map_err(|_| {
        DecodeError::Truncated {
            what: "inet_diag_msg",
            need: INET_DIAG_MSG_LEN,
            have: payload.len(),
        }
    })?;
    let mut drops = None;
    // The crate's MemInfo rejects a shorter SKMEMINFO (older kernels) and would lose the whole
    // record, so the attribute is read by offset and only `drops` depends on its length.
    let attributes = if with_meminfo {
        &payload[INET_DIAG_MSG_LEN..]
    } else {
        &[][..]
    };
    for nla in NlasIterator::new(attributes) {
        let Ok(nla) = nla else { break };
        if nla.kind() == INET_DIAG_SKMEMINFO {
            drops = read_u32(nla.value(), SK_MEMINFO_DROPS);
        }
    }
    Ok(Record {
        state: header.state,
        addr: canonical(header.socket_id.source_address),
        port: header.socket_id.source_port,
        ifindex: header.socket_id.interface_id,
        inode: header.inode,
        rqueue: header.recv_queue,
        wqueue: header.send_queue,
        drops,
    })
}

fn read_i32(bytes: &[u8]) -> Option<i32> {
    Some(i32::from_ne_bytes(bytes.get(..4)?.try_into().ok()?))
}

fn read_u32(array: &[u8], index: usize) -> Option<u32> {
    let at = index * 4;
    let bytes = array.get(at..at + 4)?;
    Some(u32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

/// IPv4 clients of a `[::]` listener show up as `::ffff:a.b.c.d`: fold them back to IPv4 so they
/// match IPv4 listeners and print as operators expect.
pub fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

#[cfg(test)]
pub(crate) mod fixtures {
    /// Offset of `id.idiag_if` in `inet_diag_msg`: family, state, timer, retrans (4), ports (4),
    /// src and dst (32).
    const IDIAG_IF: usize = 40;

    /// Sets `idiag_if` of a record built by [`inet_diag_msg`] (which leaves it 0: unbound).
    pub fn bound_to(mut msg: Vec<u8>, ifindex: u32) -> Vec<u8> {
        msg[IDIAG_IF..IDIAG_IF + 4].copy_from_slice(&ifindex.to_ne_bytes());
        msg
    }

    /// Appends one netlink message (header + payload) the way the kernel lays it out.
    pub fn message(out: &mut Vec<u8>, msg_type: u16, flags: u16, seq: u32, payload: &[u8]) {
        let len = 16 + payload.len();
        out.extend_from_slice(&(len as u32).to_ne_bytes()); // nlmsg_len
        out.extend_from_slice(&msg_type.to_ne_bytes()); // nlmsg_type
        out.extend_from_slice(&flags.to_ne_bytes()); // nlmsg_flags
        out.extend_from_slice(&seq.to_ne_bytes()); // nlmsg_seq
        out.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_pid
        out.extend_from_slice(payload);
        while out.len() % 4 != 0 {
            out.push(0);
        }
    }

    /// An `inet_diag_msg` for an IPv4 socket, optionally followed by an SKMEMINFO attribute
    /// holding `meminfo_words` u32 values, `drops` at index 8 when it fits.
    #[allow(clippy::too_many_arguments)]
    pub fn inet_diag_msg(
        family: u8,
        state: u8,
        addr: &[u8],
        port: u16,
        rqueue: u32,
        wqueue: u32,
        inode: u32,
        meminfo_words: usize,
        drops: u32,
    ) -> Vec<u8> {
        let mut p = vec![family, state, 0, 0]; // idiag_family, state, timer, retrans
        p.extend_from_slice(&port.to_be_bytes()); // id.idiag_sport (network order)
        p.extend_from_slice(&0u16.to_be_bytes()); // id.idiag_dport
        let mut src = [0u8; 16];
        src[..addr.len()].copy_from_slice(addr);
        p.extend_from_slice(&src); // id.idiag_src
        p.extend_from_slice(&[0u8; 16]); // id.idiag_dst
        p.extend_from_slice(&0u32.to_ne_bytes()); // id.idiag_if
        p.extend_from_slice(&[0xff; 8]); // id.idiag_cookie
        p.extend_from_slice(&0u32.to_ne_bytes()); // idiag_expires
        p.extend_from_slice(&rqueue.to_ne_bytes()); // idiag_rqueue
        p.extend_from_slice(&wqueue.to_ne_bytes()); // idiag_wqueue
        p.extend_from_slice(&1000u32.to_ne_bytes()); // idiag_uid
        p.extend_from_slice(&inode.to_ne_bytes()); // idiag_inode
        assert_eq!(p.len(), 72);
        if meminfo_words > 0 {
            let value_len = meminfo_words * 4;
            p.extend_from_slice(&((4 + value_len) as u16).to_ne_bytes()); // nla_len
            p.extend_from_slice(&7u16.to_ne_bytes()); // nla_type = INET_DIAG_SKMEMINFO
            for i in 0..meminfo_words {
                let v = if i == 8 { drops } else { i as u32 * 100 };
                p.extend_from_slice(&v.to_ne_bytes());
            }
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn collect(datagram: &[u8], seq: u32) -> (Result<Step, DecodeError>, Vec<Record>) {
        let mut out = Vec::new();
        let step = decode_datagram(datagram, seq, true, &mut |r| out.push(*r));
        (step, out)
    }

    #[test]
    fn request_asks_for_listen_only_with_skmeminfo() {
        let mut buf = Vec::new();
        build_request(&mut buf, AF_INET, STATE_LISTEN, true, 7);
        assert_eq!(buf.len(), 16 + 56, "nlmsghdr + inet_diag_req_v2");
        assert_eq!(u16::from_ne_bytes([buf[4], buf[5]]), SOCK_DIAG_BY_FAMILY);
        assert_eq!(
            u32::from_ne_bytes([buf[8], buf[9], buf[10], buf[11]]),
            7,
            "sequence"
        );
        assert_eq!(buf[16], AF_INET, "sdiag_family");
        assert_eq!(buf[17], IPPROTO_TCP, "sdiag_protocol");
        assert_eq!(buf[18], 1 << (INET_DIAG_SKMEMINFO - 1), "idiag_ext");
        assert_eq!(
            u32::from_ne_bytes([buf[20], buf[21], buf[22], buf[23]]),
            1 << 10,
            "idiag_states"
        );
    }

    #[test]
    fn request_keeps_new_syn_recv_state_bit() {
        let mut buf = Vec::new();
        build_request(&mut buf, AF_INET6, STATE_NEW_SYN_RECV, false, 1);
        assert_eq!(buf[18], 0, "no extension");
        assert_eq!(
            u32::from_ne_bytes([buf[20], buf[21], buf[22], buf[23]]),
            1 << 12
        );
    }

    #[test]
    fn decodes_listener_with_drops_then_done() {
        let mut d = Vec::new();
        let body = inet_diag_msg(2, 10, &[127, 0, 0, 1], 8080, 3, 2, 4242, 9, 14);
        message(&mut d, SOCK_DIAG_BY_FAMILY, 2, 5, &body);
        message(&mut d, NLMSG_DONE, 2, 5, &0i32.to_ne_bytes());
        let (step, recs) = collect(&d, 5);
        assert_eq!(step, Ok(Step::Done));
        assert_eq!(
            recs,
            vec![Record {
                state: 10,
                addr: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)),
                port: 8080,
                ifindex: 0,
                inode: 4242,
                rqueue: 3,
                wqueue: 2,
                drops: Some(14),
            }]
        );
    }

    #[test]
    fn short_skmeminfo_keeps_depth_and_limit() {
        // Kernels before 4.x sent fewer SK_MEMINFO words; the record must survive without drops.
        let mut d = Vec::new();
        message(
            &mut d,
            SOCK_DIAG_BY_FAMILY,
            2,
            1,
            &inet_diag_msg(2, 10, &[0, 0, 0, 0], 22, 1, 128, 9, 8, 0),
        );
        let (step, recs) = collect(&d, 1);
        assert_eq!(step, Ok(Step::More));
        assert_eq!(recs[0].drops, None);
        assert_eq!((recs[0].rqueue, recs[0].wqueue), (1, 128));
    }

    #[test]
    fn ipv4_mapped_address_is_folded_to_ipv4() {
        let mapped = Ipv4Addr::new(10, 1, 2, 3).to_ipv6_mapped().octets();
        let mut d = Vec::new();
        message(
            &mut d,
            SOCK_DIAG_BY_FAMILY,
            2,
            1,
            &inet_diag_msg(10, 3, &mapped, 80, 0, 0, 0, 0, 0),
        );
        let (_, recs) = collect(&d, 1);
        assert_eq!(recs[0].addr, IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)));
        let (_, recs) = {
            let mut d = Vec::new();
            message(
                &mut d,
                SOCK_DIAG_BY_FAMILY,
                2,
                1,
                &inet_diag_msg(10, 10, &Ipv6Addr::LOCALHOST.octets(), 80, 0, 5, 1, 0, 0),
            );
            collect(&d, 1)
        };
        assert_eq!(recs[0].addr, IpAddr::V6(Ipv6Addr::LOCALHOST));
    }

    #[test]
    fn the_bound_device_index_is_read_from_the_header() {
        let link_local = "fe80::1".parse::<Ipv6Addr>().unwrap().octets();
        let body = bound_to(inet_diag_msg(10, 10, &link_local, 7000, 2, 4, 9, 0, 0), 7);
        let mut d = Vec::new();
        message(&mut d, SOCK_DIAG_BY_FAMILY, 2, 1, &body);
        let (_, recs) = collect(&d, 1);
        assert_eq!(recs[0].ifindex, 7);
        assert_eq!(recs[0].addr, "fe80::1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn stale_sequence_numbers_are_skipped() {
        let mut d = Vec::new();
        message(
            &mut d,
            SOCK_DIAG_BY_FAMILY,
            2,
            3,
            &inet_diag_msg(2, 10, &[1, 2, 3, 4], 1, 0, 0, 0, 0, 0),
        );
        message(&mut d, NLMSG_DONE, 2, 3, &0i32.to_ne_bytes());
        let (step, recs) = collect(&d, 4);
        assert_eq!(step, Ok(Step::More));
        assert!(recs.is_empty());
    }

    #[test]
    fn an_error_in_nlmsg_done_fails_the_dump() {
        let mut d = Vec::new();
        message(&mut d, NLMSG_DONE, 2, 4, &(-libc::EINTR).to_ne_bytes());
        assert_eq!(collect(&d, 4).0, Err(DecodeError::Kernel(libc::EINTR)));
    }

    #[test]
    fn kernel_error_is_reported_with_errno() {
        let mut d = Vec::new();
        message(&mut d, NLMSG_ERROR, 0, 9, &(-libc::ENOENT).to_ne_bytes());
        assert_eq!(collect(&d, 9).0, Err(DecodeError::Kernel(libc::ENOENT)));
    }

    #[test]
    fn truncated_input_is_an_error_not_a_panic() {
        let mut d = Vec::new();
        message(
            &mut d,
            SOCK_DIAG_BY_FAMILY,
            2,
            1,
            &inet_diag_msg(2, 10, &[1, 2, 3, 4], 1, 0, 0, 0, 9, 0),
        );
        for cut in 1..d.len() {
            let (r, _) = collect(&d[..cut], 1);
            assert!(r.is_err() || cut >= d.len(), "cut at {cut} gave {r:?}");
        }
        // A record body shorter than inet_diag_msg, in a well-formed message.
        let mut d = Vec::new();
        message(&mut d, SOCK_DIAG_BY_FAMILY, 2, 1, &[2, 10, 0, 0]);
        assert!(matches!(
            collect(&d, 1).0,
            Err(DecodeError::Truncated {
                what: "inet_diag_msg",
                ..
            })
        ));
    }
}
