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
    constants::{
        AF_INET, AF_INET6, INET_DIAG_INFO, INET_DIAG_SKMEMINFO, IPPROTO_TCP, SOCK_DIAG_BY_FAMILY,
    },
    inet::{ExtensionFlags, InetRequest, InetResponseHeader, SocketId, StateFlags},
    SockDiagMessage,
};

pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;

/// `TCP_LISTEN` as a state bit for `idiag_states`.
pub const STATE_LISTEN: u32 = 1 << 10;
/// `TCP_NEW_SYN_RECV` (12): request sockets in the SYN queue. The crate has no constant for it.
pub const STATE_NEW_SYN_RECV: u32 = 1 << 12;

/// The states a connection whose handshake completed waits in an accept queue in:
/// `TCP_ESTABLISHED` (1), and `TCP_CLOSE_WAIT` (8) when the client already closed.
pub const STATES_ESTABLISHED_CHILD: u32 = (1 << 1) | (1 << 8);
/// `TCP_SYN_RECV` (3): a Fast Open child is queued as soon as its SYN arrives, before the final
/// ACK. Asking for it makes the kernel add every `TCP_NEW_SYN_RECV` request socket of the asked
/// ports too (`inet_diag_dump_icsk`), a SYN flood's worth: asked for apart, and only for ports
/// whose queued children are not all found in [`STATES_ESTABLISHED_CHILD`]. Request sockets
/// come back as state 3 without `INET_DIAG_INFO` and are told apart by that.
pub const STATE_SYN_RECV: u32 = 1 << 3;
/// The state a request socket is reported in (`inet_req_diag_fill`), though it is dumped for
/// [`STATE_NEW_SYN_RECV`].
pub const TCP_SYN_RECV: u8 = 3;
/// Every state a connection still waiting in an accept queue can be in.
pub const STATES_QUEUED_CHILD: u32 = STATES_ESTABLISHED_CHILD | STATE_SYN_RECV;

/// `TCPDIAG_GETSOCK`: the older request (`struct inet_diag_req`), kept by every kernel since
/// sock_diag replaced it (`inet_diag_rcv_msg_compat`). It asks TCP sockets of both address
/// families (`AF_UNSPEC`) in one walk of the kernel's hash, where `SOCK_DIAG_BY_FAMILY` walks
/// the whole hash once per family (and answers `AF_UNSPEC` with ENOENT). Its replies carry this
/// type instead of `SOCK_DIAG_BY_FAMILY`.
pub const TCPDIAG_GETSOCK: u16 = 18;
/// Size of `struct inet_diag_req`: family, src_len, dst_len, ext (u8 each), the socket id
/// (48), states, dbs (u32 each).
const INET_DIAG_REQ_LEN: usize = 60;

/// `INET_DIAG_REQ_BYTECODE`: the request attribute carrying a filter program.
const INET_DIAG_REQ_BYTECODE: u16 = 1;
/// Bytecode op codes of `include/uapi/linux/inet_diag.h`. Only the local-port range
/// comparisons and the jump are used: every kernel's inet_diag has them, while `S_EQ` is newer
/// and an older kernel's audit refuses the whole request for it.
const INET_DIAG_BC_JMP: u8 = 1;
const INET_DIAG_BC_S_GE: u8 = 2;
const INET_DIAG_BC_S_LE: u8 = 3;
/// Holds when the socket's cgroup v2 id equals the u64 after the op. Linux 5.8 added it, and
/// only with `CONFIG_SOCK_CGROUP_DATA`; a kernel without it refuses the whole request with
/// EINVAL (`inet_diag_bc_audit`). The kernel gives a request socket (and a time-wait one) id 0
/// (`inet_diag_bc_sk`: only a full socket has a cgroup), and every full socket a cgroup's
/// kernfs id, never 0 (the root cgroup's is 1). So "id 0" is "a request socket": the one test a
/// program can make between the states a dump asks together.
const INET_DIAG_BC_CGROUP_COND: u8 = 13;
/// Size of `struct inet_diag_bc_op` (code, yes, no).
const BC_OP: usize = 4;
/// The cgroup op and its u64.
const BC_CGROUP: usize = BC_OP + 8;
/// A port range in the filter: `S_GE lo`, `S_LE hi` (each an op and a follow-on op holding the
/// port), then a jump to the end (accept). The last range needs no jump.
const BC_RANGE: usize = 4 * BC_OP;
const BC_RANGE_AND_JUMP: usize = BC_RANGE + BC_OP;
/// At most this many port ranges in one filter: the kernel runs the program on every socket of
/// the asked states, so nearby ranges are merged past this (the caller matches ports again).
pub const MAX_PORT_RANGES: usize = 64;

/// `tcpi_last_data_sent` in `struct tcp_info`: eight u8 fields, then `rto`, `ato`, `snd_mss`,
/// `rcv_mss`, `unacked`, `sacked`, `lost`, `retrans`, `fackets` (u32 each).
const TCPI_LAST_DATA_SENT: usize = 44;

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
    /// `AF_INET` or `AF_INET6`: the socket's own, which its children share. An IPv4-mapped
    /// address (a dual-stack or Java listener) is `AF_INET6` though `addr` is IPv4.
    pub family: u8,
    pub state: u8,
    /// Local address as the kernel holds it: an `AF_INET6` socket bound to `::ffff:a.b.c.d`
    /// keeps that form, since it is a listener of its own beside an `AF_INET` one on
    /// `a.b.c.d` (a separate SO_REUSEPORT group; IPv4 lookups prefer the `AF_INET` one). What
    /// a request or connection reached is [`Record::endpoint`], folded to IPv4.
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
    /// The `tcp_info` of a full TCP socket, when `INET_DIAG_INFO` was asked for and sent
    /// (never for listeners' request sockets).
    pub tcp_info: Option<TcpInfo>,
}

/// The fields of `struct tcp_info` acceptq reads, each present only when the kernel's struct
/// is long enough to hold it: older kernels send shorter ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpInfo {
    /// `tcpi_last_data_sent`: ms (jiffy resolution) since this socket last sent data, or for a
    /// child not yet accepted, since its handshake completed.
    pub last_data_sent: Option<u32>,
}

impl TcpInfo {
    /// Reads `INET_DIAG_INFO`'s value by offset; a field cut short is `None`, the rest stands.
    pub fn parse(value: &[u8]) -> TcpInfo {
        TcpInfo {
            last_data_sent: read_u32(value, TCPI_LAST_DATA_SENT / 4),
        }
    }
}

impl Record {
    /// The address, port and device a request socket or queued connection reached, to be
    /// matched to its listener: an IPv4 client of an `AF_INET6` listener shows as
    /// `::ffff:a.b.c.d` and is folded to IPv4 (see [`canonical`]).
    pub fn endpoint(&self) -> crate::snapshot::Endpoint {
        crate::snapshot::Endpoint {
            addr: canonical(self.addr),
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
    let extensions = if with_meminfo {
        ExtensionFlags::SKMEMINFO
    } else {
        ExtensionFlags::empty()
    };
    build(out, family, states, extensions, 0, seq);
}

/// The local ports a children dump asks for. One port goes in the request itself
/// (`id.idiag_sport`), which the kernel compares before any filter program on a field it has
/// read anyway for the state; several go in a program ([`port_filter`]), which costs a few more
/// cache misses on every socket of the asked states. Neither: every port.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LocalPorts {
    port: u16,
    bytecode: Vec<u8>,
}

impl LocalPorts {
    /// Asks for `ports` (any order, repeats allowed), reusing the buffer; empty: every port.
    pub fn set(&mut self, ports: &[u16]) {
        match ports.first() {
            Some(&p) if p != 0 && ports.iter().all(|q| *q == p) => {
                self.port = p;
                self.bytecode.clear();
            }
            _ => self.set_program(ports),
        }
    }

    /// Asks for `ports` through a filter program even when there is one port.
    pub fn set_program(&mut self, ports: &[u16]) {
        self.port = 0;
        port_filter(ports, &mut self.bytecode);
    }

    /// Spoils the program with an op no kernel knows, as a kernel without the cgroup op sees
    /// [`request_or_port_filter`]: the request is refused.
    #[cfg(test)]
    pub fn spoil(&mut self) {
        self.bytecode[0] = 255;
    }

    /// Asks for every request socket and the full sockets on `ports` (not empty), through
    /// [`request_or_port_filter`]: the port cannot go in the request, which would drop the
    /// other ports' request sockets.
    pub fn set_with_request_sockets(&mut self, ports: &[u16]) {
        self.port = 0;
        request_or_port_filter(ports, &mut self.bytecode);
    }
}

/// Serialises a dump of the sockets in `states` (some of [`STATES_QUEUED_CHILD`]) on the local
/// `ports`, with `tcp_info` and nothing else.
pub fn build_children_request(
    out: &mut Vec<u8>,
    family: u8,
    states: u32,
    ports: &LocalPorts,
    seq: u32,
) {
    build(out, family, states, ExtensionFlags::INFO, ports.port, seq);
    // The crate cannot carry request attributes: append the nlattr and fix nlmsg_len.
    push_bytecode(out, &ports.bytecode);
}

/// Serialises a `TCPDIAG_GETSOCK` dump of the TCP sockets of both families in `states` on
/// `ports` (its port in the request or its program, as [`build_children_request`] puts
/// them), with `tcp_info` when `with_info`. The crate has no `struct inet_diag_req`: laid out
/// here.
pub fn build_both_families_request(
    out: &mut Vec<u8>,
    states: u32,
    ports: &LocalPorts,
    with_info: bool,
    seq: u32,
) {
    out.clear();
    out.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_len, set below
    out.extend_from_slice(&TCPDIAG_GETSOCK.to_ne_bytes()); // nlmsg_type
    out.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes()); // nlmsg_flags
    out.extend_from_slice(&seq.to_ne_bytes()); // nlmsg_seq
    out.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_pid
    let ext = if with_info {
        1u8 << (INET_DIAG_INFO - 1)
    } else {
        0
    };
    // idiag_family (the kernel asks AF_UNSPEC whatever it says), src_len, dst_len, idiag_ext.
    out.extend_from_slice(&[0, 0, 0, ext]);
    out.extend_from_slice(&ports.port.to_be_bytes()); // id.idiag_sport
    out.extend_from_slice(&[0u8; 46]); // the rest of the socket id: any
    out.extend_from_slice(&states.to_ne_bytes()); // idiag_states
    out.extend_from_slice(&0u32.to_ne_bytes()); // idiag_dbs
    debug_assert_eq!(out.len(), 16 + INET_DIAG_REQ_LEN);
    push_bytecode(out, &ports.bytecode);
}

/// Appends `bytecode` (if any) as the request's `INET_DIAG_REQ_BYTECODE` attribute and sets
/// `nlmsg_len`.
fn push_bytecode(out: &mut Vec<u8>, bytecode: &[u8]) {
    if !bytecode.is_empty() {
        let nla_len = 4 + bytecode.len();
        out.extend_from_slice(&(nla_len as u16).to_ne_bytes());
        out.extend_from_slice(&INET_DIAG_REQ_BYTECODE.to_ne_bytes());
        out.extend_from_slice(bytecode);
        while out.len() % 4 != 0 {
            out.push(0);
        }
    }
    let len = out.len() as u32;
    out[..4].copy_from_slice(&len.to_ne_bytes());
}

/// Writes into `out` (cleared first) a filter program accepting every request socket (cgroup
/// id 0, see [`INET_DIAG_BC_CGROUP_COND`]) and the other sockets whose local port is in
/// `ports`, as [`port_filter`] does. A dump of `TCP_NEW_SYN_RECV` and the states of queued
/// children with it walks the established hash once for both the SYN queue and the waits.
///
/// The cgroup op matching goes on to a jump to the end (accept); failing, past that jump to
/// the port program. The audit follows `yes` steps only, so the jump sits right after the op
/// and every op stays on that chain. No `ports`: request sockets only.
pub fn request_or_port_filter(ports: &[u16], out: &mut Vec<u8>) {
    port_filter(ports, out);
    let rest = out.len();
    let mut head = Vec::with_capacity(BC_CGROUP + BC_OP);
    // Failing, past the jump: the port program, or with no ports 4 past the end (reject).
    push_op(
        &mut head,
        INET_DIAG_BC_CGROUP_COND,
        BC_CGROUP,
        BC_CGROUP + BC_OP,
    );
    head.extend_from_slice(&0u64.to_ne_bytes());
    if rest > 0 {
        push_op(&mut head, INET_DIAG_BC_JMP, BC_OP, BC_OP + rest);
    }
    out.splice(0..0, head);
}

/// Writes into `out` (cleared first) an inet_diag filter program accepting sockets whose local
/// port is in `ports` (sorted or not). Consecutive ports share one range; past
/// [`MAX_PORT_RANGES`] the ranges closest together are merged, so the program may accept
/// more ports than asked, never fewer. Empty `ports`: an empty program (no filter).
///
/// The kernel runs the program from its start: an op whose test holds moves on by `yes` bytes,
/// else by `no`; running off the end exactly accepts, jumping past it (by 4) rejects
/// (`inet_diag_bc_run`). `inet_diag_bc_audit` wants every jump a multiple of 4, at least the
/// op's size, landing on an op boundary or at most 4 past the end.
pub fn port_filter(ports: &[u16], out: &mut Vec<u8>) {
    out.clear();
    let ranges = port_ranges(ports, MAX_PORT_RANGES);
    let total = (ranges.len() * BC_RANGE_AND_JUMP).saturating_sub(BC_OP);
    for (i, &(lo, hi)) in ranges.iter().enumerate() {
        let last = i + 1 == ranges.len();
        // On failure, go to the next range's first op; from the last range, to the end + 4.
        let block = if last { BC_RANGE } else { BC_RANGE_AND_JUMP };
        let fail_ge = if last { block + BC_OP } else { block };
        let fail_le = fail_ge - 2 * BC_OP;
        push_op(out, INET_DIAG_BC_S_GE, 2 * BC_OP, fail_ge);
        push_op(out, 0, 0, usize::from(lo));
        push_op(out, INET_DIAG_BC_S_LE, 2 * BC_OP, fail_le);
        push_op(out, 0, 0, usize::from(hi));
        if !last {
            // Matched: jump to the very end, which accepts. `yes` is never taken by a jump.
            let to_end = total - out.len();
            push_op(out, INET_DIAG_BC_JMP, BC_OP, to_end);
        }
    }
    debug_assert_eq!(out.len(), total);
}

fn push_op(out: &mut Vec<u8>, code: u8, yes: usize, no: usize) {
    out.push(code);
    out.push(yes as u8);
    out.extend_from_slice(&(no as u16).to_ne_bytes());
}

/// `ports` as at most `max` inclusive ranges, sorted: runs of consecutive ports become one
/// range, then the smallest gaps between ranges are closed until `max` remain.
pub fn port_ranges(ports: &[u16], max: usize) -> Vec<(u16, u16)> {
    let mut sorted = ports.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut ranges: Vec<(u16, u16)> = Vec::new();
    for p in sorted {
        match ranges.last_mut() {
            Some((_, hi)) if u32::from(*hi) + 1 == u32::from(p) => *hi = p,
            _ => ranges.push((p, p)),
        }
    }
    if ranges.len() > max.max(1) {
        // Keep the max - 1 widest gaps as the places where ranges stay apart.
        let mut gaps: Vec<(u16, usize)> = ranges
            .windows(2)
            .enumerate()
            .map(|(i, w)| (w[1].0 - w[0].1, i))
            .collect();
        gaps.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let mut split = vec![false; ranges.len()];
        for &(_, i) in gaps.iter().take(max.max(1) - 1) {
            split[i] = true;
        }
        let mut merged: Vec<(u16, u16)> = Vec::with_capacity(max);
        let mut start = ranges[0].0;
        for (i, r) in ranges.iter().enumerate() {
            if split[i] || i + 1 == ranges.len() {
                merged.push((start, r.1));
                if let Some(next) = ranges.get(i + 1) {
                    start = next.0;
                }
            }
        }
        ranges = merged;
    }
    ranges
}

fn build(
    out: &mut Vec<u8>,
    family: u8,
    states: u32,
    extensions: ExtensionFlags,
    sport: u16,
    seq: u32,
) {
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    header.sequence_number = seq;
    let mut socket_id = if family == AF_INET6 {
        SocketId::new_v6()
    } else {
        SocketId::new_v4()
    };
    socket_id.source_port = sport;
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
/// are leftovers of an earlier dump and must not be counted twice. `with_attributes`: the
/// request asked for an extension, so the records' attributes are worth reading.
pub fn decode_datagram(
    datagram: &[u8],
    seq: u32,
    with_attributes: bool,
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
            SOCK_DIAG_BY_FAMILY | TCPDIAG_GETSOCK => {
                on_record(&decode_record(payload, with_attributes)?)
            }
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

/// Decodes one `inet_diag_msg` and, when an extension was asked for, its SKMEMINFO and INFO
/// attributes.
pub fn decode_record(payload: &[u8], with_attributes: bool) -> Result<Record, DecodeError> {
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
    let mut tcp_info = None;
    // The crate's MemInfo and TcpInfo reject shorter structs (older kernels) and would lose the
    // whole record, so attributes are read by offset and each field depends on its own length.
    let attributes = if with_attributes {
        &payload[INET_DIAG_MSG_LEN..]
    } else {
        &[][..]
    };
    for nla in NlasIterator::new(attributes) {
        let Ok(nla) = nla else { break };
        match nla.kind() {
            INET_DIAG_SKMEMINFO => drops = read_u32(nla.value(), SK_MEMINFO_DROPS),
            INET_DIAG_INFO => tcp_info = Some(TcpInfo::parse(nla.value())),
            _ => {}
        }
    }
    Ok(Record {
        family: header.family,
        state: header.state,
        addr: header.socket_id.source_address,
        port: header.socket_id.source_port,
        ifindex: header.socket_id.interface_id,
        inode: header.inode,
        rqueue: header.recv_queue,
        wqueue: header.send_queue,
        drops,
        tcp_info,
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

/// IPv4 clients of a `[::]` listener show up as `::ffff:a.b.c.d`: fold them back to IPv4 so
/// they are matched by the address they reached, whichever family's listener took them. Not for
/// listeners: their family is part of what they are.
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
                family: 2,
                state: 10,
                addr: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)),
                port: 8080,
                ifindex: 0,
                inode: 4242,
                rqueue: 3,
                wqueue: 2,
                drops: Some(14),
                tcp_info: None,
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
    fn a_mapped_address_is_folded_for_matching_and_kept_for_the_listener() {
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
        // A request to 10.1.2.3, whichever family's listener took it.
        assert_eq!(
            recs[0].endpoint().addr,
            IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3))
        );
        // A listener bound to ::ffff:10.1.2.3 is an AF_INET6 socket, not the AF_INET one.
        assert_eq!(
            recs[0].addr,
            IpAddr::V6(Ipv4Addr::new(10, 1, 2, 3).to_ipv6_mapped())
        );
        assert_eq!(recs[0].family, AF_INET6, "the socket's family stays");
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

    /// What a kernel's audit knows: 5.8 and later (with `CONFIG_SOCK_CGROUP_DATA`) the
    /// cgroup condition, earlier ones not.
    #[derive(Clone, Copy, PartialEq)]
    enum Kernel {
        WithCgroupOp,
        WithoutCgroupOp,
    }

    /// The kernel's `inet_diag_bc_audit` for the ops we emit, as its source reads: each op's
    /// `yes` and `no` (but a NOP's `no`) a multiple of 4, at least the op's size, at most 4 past
    /// the end, a `no` inside the program landing on an op reached by `yes` steps; an op it
    /// does not know refuses the request (EINVAL).
    fn audit(bc: &[u8]) -> Result<(), String> {
        audit_on(bc, Kernel::WithCgroupOp)
    }

    fn audit_on(bc: &[u8], kernel: Kernel) -> Result<(), String> {
        let op = |at: usize| {
            (
                bc[at],
                bc[at + 1] as usize,
                u16::from_ne_bytes([bc[at + 2], bc[at + 3]]) as usize,
            )
        };
        // valid_cc: walking from the start by `yes` steps reaches `target`.
        let boundary = |target: usize| {
            let mut at = 0;
            while at < bc.len() {
                if at == target {
                    return true;
                }
                if at > target {
                    return false;
                }
                let yes = op(at).1;
                if yes < 4 || yes % 4 != 0 {
                    return false;
                }
                at += yes;
            }
            false
        };
        if bc.len() < 4 {
            return Err("shorter than one op".into());
        }
        let mut at = 0;
        while at < bc.len() {
            let len = bc.len() - at;
            let (code, yes, no) = op(at);
            let min_len = match code {
                INET_DIAG_BC_S_GE | INET_DIAG_BC_S_LE => 8,
                INET_DIAG_BC_JMP => 4,
                INET_DIAG_BC_CGROUP_COND if kernel == Kernel::WithCgroupOp => 12,
                c => return Err(format!("op {c} at {at} not expected")),
            };
            if len < min_len {
                return Err(format!("op at {at} runs past the end"));
            }
            if no < min_len || no > len + 4 || no % 4 != 0 {
                return Err(format!("bad no {no} at {at} (len {len})"));
            }
            if no < len && !boundary(at + no) {
                return Err(format!("no {no} at {at} lands inside an op"));
            }
            if yes < min_len || yes > len + 4 || yes % 4 != 0 {
                return Err(format!("bad yes {yes} at {at}"));
            }
            at += yes;
        }
        if at == bc.len() {
            Ok(())
        } else {
            Err("program does not end on an op boundary".into())
        }
    }

    /// A full socket's cgroup id: the root cgroup's.
    const ROOT_CGROUP: u64 = 1;

    /// The kernel's `inet_diag_bc_run` for a full socket with local port `sport`.
    fn run(bc: &[u8], sport: u16) -> bool {
        run_sk(bc, sport, ROOT_CGROUP)
    }

    /// The kernel's `inet_diag_bc_run` for a socket with local port `sport` and cgroup id
    /// `cgroup` (0 for a request socket, `inet_diag_bc_sk`).
    fn run_sk(bc: &[u8], sport: u16, cgroup: u64) -> bool {
        let mut at = 0i64;
        let len = bc.len() as i64;
        while at < len {
            let i = at as usize;
            let (code, yes, no) = (
                bc[i],
                bc[i + 1] as i64,
                u16::from_ne_bytes([bc[i + 2], bc[i + 3]]) as i64,
            );
            let arg = || u16::from_ne_bytes([bc[i + 6], bc[i + 7]]);
            let hold = match code {
                INET_DIAG_BC_JMP => false,
                INET_DIAG_BC_S_GE => sport >= arg(),
                INET_DIAG_BC_S_LE => sport <= arg(),
                INET_DIAG_BC_CGROUP_COND => {
                    u64::from_ne_bytes(bc[i + 4..i + 12].try_into().unwrap()) == cgroup
                }
                _ => true,
            };
            at += if hold { yes } else { no };
        }
        at == len
    }

    #[test]
    fn port_filter_passes_the_kernel_audit_and_accepts_exactly_its_ports() {
        let cases: Vec<Vec<u16>> = vec![
            vec![80],
            vec![0],
            vec![65535],
            vec![80, 81, 82],
            vec![443, 80, 8080, 80],
            vec![1, 3, 5, 7, 65534, 65535],
            (1000..1010).chain([2000, 3000]).collect(),
        ];
        let mut bc = Vec::new();
        for ports in cases {
            port_filter(&ports, &mut bc);
            audit(&bc).unwrap_or_else(|e| panic!("{ports:?}: {e}"));
            for p in (0..=u16::MAX)
                .step_by(1)
                .filter(|p| p % 97 == 0 || ports.iter().any(|q| q.abs_diff(*p) <= 2))
            {
                assert_eq!(run(&bc, p), ports.contains(&p), "{ports:?} port {p}");
            }
        }
        port_filter(&[], &mut bc);
        assert!(
            bc.is_empty(),
            "no ports: no program, not a program rejecting all"
        );
    }

    #[test]
    fn request_or_port_filter_passes_the_audit_and_accepts_request_sockets_and_its_ports_only() {
        let cases: Vec<Vec<u16>> = vec![
            vec![80],
            vec![0],
            vec![65535],
            vec![80, 81, 82],
            vec![443, 80, 8080, 80],
            (1000..1010).chain([2000, 3000]).collect(),
            // Past the cap: ranges merged, so more ports pass, never fewer.
            (0..2 * MAX_PORT_RANGES as u16)
                .map(|i| 1000 + i * 7)
                .collect(),
            vec![],
        ];
        let mut bc = Vec::new();
        let mut ports_only = Vec::new();
        for ports in cases {
            request_or_port_filter(&ports, &mut bc);
            audit(&bc).unwrap_or_else(|e| panic!("{ports:?}: {e}"));
            assert!(
                audit_on(&bc, Kernel::WithoutCgroupOp).is_err(),
                "an older kernel refuses it: the caller falls back"
            );
            port_filter(&ports, &mut ports_only);
            for p in
                (0..=u16::MAX).filter(|p| p % 97 == 0 || ports.iter().any(|q| q.abs_diff(*p) <= 8))
            {
                assert!(run_sk(&bc, p, 0), "{ports:?}: a request socket on {p}");
                let full = !ports.is_empty() && run(&ports_only, p);
                for cgroup in [ROOT_CGROUP, 2, 0x1_0000_0001, u64::MAX] {
                    assert_eq!(
                        run_sk(&bc, p, cgroup),
                        full,
                        "{ports:?}: a full socket on {p} in cgroup {cgroup}"
                    );
                }
                if ports.len() <= MAX_PORT_RANGES {
                    assert_eq!(run(&bc, p), ports.contains(&p), "{ports:?} port {p}");
                }
            }
        }
        // A program of ports only is what any kernel takes.
        port_filter(&[80, 443], &mut ports_only);
        audit_on(&ports_only, Kernel::WithoutCgroupOp).unwrap();
    }

    #[test]
    fn both_families_request_is_the_older_layout_with_the_program() {
        let mut ports = LocalPorts::default();
        ports.set_with_request_sockets(&[8080]);
        let mut bc = Vec::new();
        request_or_port_filter(&[8080], &mut bc);
        let mut buf = Vec::new();
        let states = STATE_NEW_SYN_RECV | STATES_ESTABLISHED_CHILD;
        build_both_families_request(&mut buf, states, &ports, true, 9);
        assert_eq!(buf.len(), 16 + 60 + 4 + bc.len());
        assert_eq!(
            u32::from_ne_bytes(buf[..4].try_into().unwrap()) as usize,
            buf.len(),
            "nlmsg_len"
        );
        assert_eq!(u16::from_ne_bytes([buf[4], buf[5]]), 18, "TCPDIAG_GETSOCK");
        assert_eq!(
            u16::from_ne_bytes([buf[6], buf[7]]),
            0x301,
            "REQUEST | DUMP"
        );
        assert_eq!(u32::from_ne_bytes(buf[8..12].try_into().unwrap()), 9, "seq");
        assert_eq!(&buf[16..19], &[0, 0, 0], "family, src_len, dst_len");
        assert_eq!(buf[19], 1 << (INET_DIAG_INFO - 1), "idiag_ext: INFO");
        assert_eq!(
            &buf[20..22],
            &[0, 0],
            "id.idiag_sport: any, or request sockets would go"
        );
        assert_eq!(
            u32::from_ne_bytes(buf[68..72].try_into().unwrap()),
            (1 << 12) | (1 << 1) | (1 << 8),
            "NEW_SYN_RECV, ESTABLISHED, CLOSE_WAIT"
        );
        assert_eq!(&buf[72..76], &[0; 4], "idiag_dbs");
        assert_eq!(
            u16::from_ne_bytes([buf[76], buf[77]]) as usize,
            4 + bc.len()
        );
        assert_eq!(
            u16::from_ne_bytes([buf[78], buf[79]]),
            INET_DIAG_REQ_BYTECODE
        );
        assert_eq!(&buf[80..], &bc[..]);

        // The SYN queue alone: no program, no extension.
        build_both_families_request(
            &mut buf,
            STATE_NEW_SYN_RECV,
            &LocalPorts::default(),
            false,
            10,
        );
        assert_eq!(buf.len(), 16 + 60);
        assert_eq!(buf[19], 0);
        assert_eq!(u32::from_ne_bytes(buf[68..72].try_into().unwrap()), 1 << 12);
    }

    #[test]
    fn replies_to_the_older_request_are_records_too() {
        let mut d = Vec::new();
        let body = inet_diag_msg(10, 3, &Ipv6Addr::LOCALHOST.octets(), 443, 0, 0, 0, 0, 0);
        message(&mut d, TCPDIAG_GETSOCK, 2, 4, &body);
        message(&mut d, NLMSG_DONE, 2, 4, &0i32.to_ne_bytes());
        let (step, recs) = collect(&d, 4);
        assert_eq!(step, Ok(Step::Done));
        assert_eq!(
            (recs.len(), recs[0].family, recs[0].port),
            (1, AF_INET6, 443)
        );
    }

    #[test]
    fn port_filter_merges_the_nearest_ranges_past_its_cap() {
        // Twice the cap of lone ports, in pairs 10 apart with 1000 between pairs.
        let ports: Vec<u16> = (0..MAX_PORT_RANGES as u16)
            .flat_map(|i| [1000 + i * 1000, 1010 + i * 1000])
            .collect();
        let ranges = port_ranges(&ports, MAX_PORT_RANGES);
        assert_eq!(ranges.len(), MAX_PORT_RANGES);
        assert!(ranges.iter().all(|(lo, hi)| hi - lo == 10), "{ranges:?}");
        let mut bc = Vec::new();
        port_filter(&ports, &mut bc);
        audit(&bc).unwrap();
        assert_eq!(bc.len(), MAX_PORT_RANGES * BC_RANGE_AND_JUMP - BC_OP);
        for p in &ports {
            assert!(run(&bc, *p), "port {p} must still pass");
        }
        assert!(!run(&bc, 1500), "a wide gap stays closed");
    }

    #[test]
    fn children_request_carries_the_filter_and_asks_tcp_info_only() {
        let mut ports = LocalPorts::default();
        ports.set(&[8080, 9090, 8080]);
        let mut bc = Vec::new();
        port_filter(&[8080, 9090], &mut bc);
        let mut buf = Vec::new();
        build_children_request(&mut buf, AF_INET6, STATES_ESTABLISHED_CHILD, &ports, 3);
        assert_eq!(&buf[24..26], &[0, 0], "id.idiag_sport: any");
        assert_eq!(buf.len(), 16 + 56 + 4 + bc.len());
        assert_eq!(
            u32::from_ne_bytes(buf[..4].try_into().unwrap()) as usize,
            buf.len(),
            "nlmsg_len"
        );
        assert_eq!(buf[18], 1 << (INET_DIAG_INFO - 1), "idiag_ext: INFO only");
        assert_eq!(
            u32::from_ne_bytes(buf[20..24].try_into().unwrap()),
            (1 << 1) | (1 << 8),
            "ESTABLISHED, CLOSE_WAIT"
        );
        assert_eq!(
            u16::from_ne_bytes([buf[72], buf[73]]) as usize,
            4 + bc.len(),
            "nla_len"
        );
        assert_eq!(
            u16::from_ne_bytes([buf[74], buf[75]]),
            INET_DIAG_REQ_BYTECODE
        );
        assert_eq!(&buf[76..], &bc[..]);

        // One port: in the request's socket id (network order), no program.
        ports.set(&[8080, 8080]);
        build_children_request(&mut buf, AF_INET, STATE_SYN_RECV, &ports, 4);
        assert_eq!(buf.len(), 16 + 56);
        assert_eq!(&buf[24..26], &8080u16.to_be_bytes(), "id.idiag_sport");
        assert_eq!(
            u32::from_ne_bytes(buf[20..24].try_into().unwrap()),
            1 << 3,
            "SYN_RECV alone"
        );
        assert_eq!(buf[18], 1 << (INET_DIAG_INFO - 1));
        // Unless a program is asked for.
        ports.set_program(&[8080]);
        build_children_request(&mut buf, AF_INET, STATES_QUEUED_CHILD, &ports, 5);
        assert_eq!(&buf[24..26], &[0, 0]);
        assert!(buf.len() > 16 + 56);
    }

    /// An `INET_DIAG_INFO` attribute holding the first `len` bytes of a tcp_info whose
    /// `tcpi_last_data_sent` is `sent`.
    fn info_attr(len: usize, sent: u32) -> Vec<u8> {
        let mut info = vec![0u8; 232]; // struct tcp_info of 6.x kernels
        info[0] = 1; // tcpi_state
        info[TCPI_LAST_DATA_SENT..TCPI_LAST_DATA_SENT + 4].copy_from_slice(&sent.to_ne_bytes());
        info[52..56].copy_from_slice(&7u32.to_ne_bytes()); // tcpi_last_data_recv: not the wait
        let mut a = Vec::new();
        a.extend_from_slice(&((4 + len) as u16).to_ne_bytes());
        a.extend_from_slice(&INET_DIAG_INFO.to_ne_bytes());
        a.extend_from_slice(&info[..len]);
        while a.len() % 4 != 0 {
            a.push(0);
        }
        a
    }

    #[test]
    fn tcp_info_is_read_by_offset_and_a_short_struct_loses_only_missing_fields() {
        for len in 0..=232 {
            let mut body = inet_diag_msg(2, 1, &[127, 0, 0, 1], 8080, 0, 0, 0, 0, 0);
            body.extend_from_slice(&info_attr(len, 2508));
            let r = decode_record(&body, true).unwrap();
            let want = (len >= TCPI_LAST_DATA_SENT + 4).then_some(2508);
            assert_eq!(
                r.tcp_info,
                Some(TcpInfo {
                    last_data_sent: want
                }),
                "struct of {len} bytes"
            );
            assert_eq!((r.port, r.inode, r.state), (8080, 0, 1));
        }
        // Without INFO (a request socket, or not asked for): no tcp_info at all.
        let body = inet_diag_msg(2, 3, &[127, 0, 0, 1], 8080, 0, 0, 0, 0, 0);
        assert_eq!(decode_record(&body, true).unwrap().tcp_info, None);
    }

    #[test]
    fn a_child_record_cut_at_every_offset_is_an_error_or_whole() {
        let mut body = inet_diag_msg(
            10,
            8,
            &Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped().octets(),
            443,
            0,
            0,
            0,
            0,
            0,
        );
        body.extend_from_slice(&info_attr(232, 1200));
        let mut d = Vec::new();
        message(&mut d, SOCK_DIAG_BY_FAMILY, 2, 1, &body);
        let (step, recs) = collect(&d, 1);
        assert_eq!(step, Ok(Step::More));
        assert_eq!(recs[0].tcp_info.and_then(|t| t.last_data_sent), Some(1200));
        assert_eq!(
            recs[0].endpoint().addr,
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))
        );
        for cut in 1..d.len() {
            let (r, recs) = collect(&d[..cut], 1);
            assert!(r.is_err() && recs.is_empty(), "cut at {cut} gave {r:?}");
        }
    }
}

#[cfg(test)]
mod prop {
    use proptest::prelude::*;

    use super::fixtures::*;
    use super::*;

    /// One record as the kernel lays it out and the Record it must decode to.
    #[derive(Clone, Debug)]
    struct Case {
        v6: bool,
        addr: [u8; 16],
        port: u16,
        state: u8,
        rqueue: u32,
        wqueue: u32,
        inode: u32,
        meminfo_words: usize,
        drops: u32,
        stale: bool,
    }

    fn case() -> impl Strategy<Value = Case> {
        (
            (any::<bool>(), any::<[u8; 16]>(), any::<u16>(), any::<u8>()),
            (any::<u32>(), any::<u32>(), any::<u32>()),
            (0usize..12, any::<u32>(), proptest::bool::weighted(0.2)),
        )
            .prop_map(
                |(
                    (v6, addr, port, state),
                    (rqueue, wqueue, inode),
                    (meminfo_words, drops, stale),
                )| Case {
                    v6,
                    addr,
                    port,
                    state,
                    rqueue,
                    wqueue,
                    inode,
                    meminfo_words,
                    drops,
                    stale,
                },
            )
    }

    /// A dump of `cases` under `seq` (stale ones under another), then `NLMSG_DONE` if `done`,
    /// and the records it must give.
    fn dump(cases: &[Case], seq: u32, done: bool) -> (Vec<u8>, Vec<Record>) {
        let mut d = Vec::new();
        let mut want = Vec::new();
        for c in cases {
            let family = if c.v6 { AF_INET6 } else { AF_INET };
            let addr = if c.v6 { &c.addr[..] } else { &c.addr[..4] };
            let body = inet_diag_msg(
                family,
                c.state,
                addr,
                c.port,
                c.rqueue,
                c.wqueue,
                c.inode,
                c.meminfo_words,
                c.drops,
            );
            let msg_seq = if c.stale { seq.wrapping_add(1) } else { seq };
            message(&mut d, SOCK_DIAG_BY_FAMILY, 2, msg_seq, &body);
            if c.stale {
                continue;
            }
            want.push(Record {
                family,
                state: c.state,
                addr: if c.v6 {
                    IpAddr::from(c.addr)
                } else {
                    IpAddr::from([c.addr[0], c.addr[1], c.addr[2], c.addr[3]])
                },
                port: c.port,
                ifindex: 0,
                inode: c.inode,
                rqueue: c.rqueue,
                wqueue: c.wqueue,
                drops: (c.meminfo_words > SK_MEMINFO_DROPS).then_some(c.drops),
                tcp_info: None,
            });
        }
        if done {
            message(&mut d, NLMSG_DONE, 2, seq, &0i32.to_ne_bytes());
        }
        (d, want)
    }

    fn decode(d: &[u8], seq: u32) -> (Result<Step, DecodeError>, Vec<Record>) {
        let mut got = Vec::new();
        let step = decode_datagram(d, seq, true, &mut |r| got.push(*r));
        (step, got)
    }

    proptest! {
        #![proptest_config(crate::prop_config(64))]

        #[test]
        fn any_bytes_give_an_error_or_whole_records(bytes in proptest::collection::vec(any::<u8>(), 0..600), seq in 0u32..3, attrs in any::<bool>()) {
            let mut n = 0;
            let _ = decode_datagram(&bytes, seq, attrs, &mut |_| n += 1);
            // Every record needs a netlink header and a whole inet_diag_msg.
            prop_assert!(n <= bytes.len() / (16 + INET_DIAG_MSG_LEN));
            let _ = decode_record(&bytes, attrs);
            let _ = TcpInfo::parse(&bytes);
        }

        #[test]
        fn a_dump_decodes_to_its_records(cases in proptest::collection::vec(case(), 0..6), seq in any::<u32>(), done in any::<bool>()) {
            let (d, want) = dump(&cases, seq, done);
            let (step, got) = decode(&d, seq);
            prop_assert_eq!(step, Ok(if done { Step::Done } else { Step::More }));
            prop_assert_eq!(got, want);
        }

        /// Cut at every offset: an error, or the records before the cut, each whole and right.
        #[test]
        fn a_dump_cut_at_every_offset_gives_an_error_or_the_records_before_the_cut(cases in proptest::collection::vec(case(), 1..4), seq in any::<u32>()) {
            let (d, want) = dump(&cases, seq, true);
            for cut in 0..d.len() {
                let (step, got) = decode(&d[..cut], seq);
                prop_assert!(got.len() <= want.len() && got[..] == want[..got.len()], "cut at {}", cut);
                prop_assert_ne!(step, Ok(Step::Done), "cut at {} before NLMSG_DONE", cut);
            }
        }

        /// Any one byte changed to any value: no panic, no record without its bytes, and a
        /// record the change did not reach is decoded as it was.
        #[test]
        fn a_dump_corrupted_at_every_offset_never_panics(cases in proptest::collection::vec(case(), 1..3), seq in any::<u32>(), mask in 1u8..=255) {
            let (d, want) = dump(&cases, seq, true);
            for at in 0..d.len() {
                let mut bad = d.clone();
                bad[at] ^= mask;
                let (_, got) = decode(&bad, seq);
                prop_assert!(got.len() <= d.len() / (16 + INET_DIAG_MSG_LEN));
                // Messages before the changed byte are untouched.
                let before = dump_prefix_records(&d, at, seq);
                prop_assert!(got.len() >= before, "changed at {}: {} of {} records", at, got.len(), before);
                prop_assert_eq!(&got[..before], &want[..before]);
            }
        }
    }

    /// How many of our records lie wholly before byte `at` of the dump `d`.
    fn dump_prefix_records(d: &[u8], at: usize, seq: u32) -> usize {
        let mut n = 0;
        let mut i = 0;
        while i + 16 <= d.len() {
            let len = u32::from_ne_bytes(d[i..i + 4].try_into().unwrap()) as usize;
            let end = i + ((len + 3) & !3);
            if end > at {
                break;
            }
            let kind = u16::from_ne_bytes([d[i + 4], d[i + 5]]);
            let s = u32::from_ne_bytes(d[i + 8..i + 12].try_into().unwrap());
            if kind == SOCK_DIAG_BY_FAMILY && s == seq {
                n += 1;
            }
            i = end;
        }
        n
    }
}
