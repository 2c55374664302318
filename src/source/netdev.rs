//! `/proc/net/dev` and the namespace's link list: the sampler's first, cheaper proof that no
//! accept queue of a namespace can have grown.
//!
//! A child enters an accept queue of namespace N only when a packet received by a device of N
//! reaches TCP (the handshake's last ACK, a SYN cookie's ACK, a Fast Open SYN, the ACK that
//! migrates a request off a closed SO_REUSEPORT listener). Some drivers count that packet in
//! the device's `rx_packets` as they hand it to the stack; hardware drivers often refresh their
//! counters from the NIC about once a second, so a packet can reach TCP long before it shows.
//! The sum over the namespace's devices is a proof only when every device is of a kind checked
//! in the kernel's source to count as it delivers:
//!
//! - loopback: `loopback_xmit` adds the packet to the device's counters right after
//!   `__netif_rx` queues it on the CPU's backlog, with bottom halves off, so TCP sees it only
//!   after it is counted (with RPS steering lo to another CPU, that CPU may get there a few
//!   instructions before the count: a sample read in that gap passes, the next one sees the
//!   move);
//! - veth: the receiving device's `rx_packets` is its peer's transmit count, added by
//!   `veth_xmit` right after the packet is queued on the backlog, the same way. With an XDP
//!   program or GRO on the veth, packets go through its NAPI ring instead, and `veth_xdp_rcv`
//!   adds its batch (64 at most) to the count at the batch's end: a sample read during a batch
//!   may pass, the next one sees the move. `bpf_redirect_peer` (Cilium's path into a pod) puts
//!   a packet straight into the veth's receive path; `skb_do_redirect` counts it there since
//!   Linux 6.7 ("bpf: Fix dev's rx stats for bpf_redirect_peer traffic") and not before, so
//!   veth counts only from 6.7 on.
//!
//! Left out, unverified or known not to hold: every hardware driver, and the software kinds not
//! read here (tun, macvlan, ipvlan, vxlan, geneve, wireguard, bridge, dummy, bond, netkit...):
//! a namespace holding one keeps the PassiveOpens gate alone.
//!
//! A packet a tc filter hands to the stack is counted by no device: `mirred ingress redirect`
//! from a device's egress goes through `netif_rx` (seen: lo's transmit turned into its own
//! receive, 40 handshakes, lo's `rx_packets` still 0), `bpf_redirect(.., BPF_F_INGRESS)`
//! through `__bpf_rx_skb`, neither past `loopback_xmit` or `veth_xmit`. Such a filter hangs on a
//! qdisc (`clsact`, `ingress`, or a root qdisc with classes); lo and veth have `noqueue`, which
//! holds none. So the classification also dumps the namespace's qdiscs, and any qdisc but
//! `noqueue` or `noop` (a device down) makes it unverified; the socket hears qdisc and filter
//! events too. Not seen that way: a BPF program attached by tcx (Linux 6.6 on, `bpf_link` or
//! `BPF_PROG_ATTACH` with `BPF_TCX_INGRESS`/`_EGRESS`), which needs no qdisc and sends no
//! netlink event; asking for it (`BPF_PROG_QUERY` per device) wants CAP_NET_ADMIN. A namespace
//! where such a program redirects into an ingress is a hole in this tier.
//!
//! Races of a few microseconds, where a packet reaches TCP before it is counted (RPS on lo, a
//! veth's NAPI batch): a sample read inside one passes although a child was queued, and the
//! next sees the move. A queue filled from inside that window for exactly one period, gone
//! just before the next sample, is missed.
//!
//! The other way round, a packet counted long before TCP sees it: the count is taken as the
//! packet is queued on a CPU's backlog, and PassiveOpens only when its child is queued. If the
//! backlog waits more than a period (softirqs pushed to a ksoftirqd that a real-time task
//! starves, async IPsec crypto), the sum moved, PassiveOpens did not, the PassiveOpens passes
//! settle this tier on the moved sum, and the child queued after is not seen until another
//! packet moves the sum. PassiveOpens alone has no such gap.
//!
//! The device set changes (a device added, deleted, renamed, moved in): the link socket is
//! subscribed to link events, and a namespace whose `/proc/net/dev` names other devices than
//! those classified is treated as not classified. The classification comes from dumps, never
//! from the events' contents, so an event lost to a full socket buffer (ENOBUFS) loses
//! nothing: the socket still reads as ready, and the next sample dumps again.
//!
//! The link dump is read by hand over `netlink-sys`: three attributes of one message type, read
//! in place from a reused buffer, so a classification allocates nothing.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::OnceLock;
use std::time::Duration;

use netlink_sys::{protocols::NETLINK_ROUTE, Socket};

use super::snmp::{parse_u64, read_whole};
use super::sock_diag::set_recv_timeout;

/// The devices a `/proc/net/dev` or a link dump named, without keeping their names: their
/// number and a sum of their names' hashes, the same whatever the order they come in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Names {
    count: u32,
    hash: u64,
}

impl Names {
    fn add(&mut self, name: &[u8]) {
        // FNV-1a: a name's hash; the set's is their wrapping sum.
        let h = name.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        self.count = self.count.wrapping_add(1);
        self.hash = self.hash.wrapping_add(h);
    }
}

/// One reading of `/proc/net/dev`: the sum of `rx_packets` over its devices and their names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RxSum {
    pub rx_packets: u64,
    pub names: Names,
}

/// `/proc/net/dev` text: every device line's receive packets (the second column after the
/// name's colon) summed, wrapping as the kernel's own counters do. `None` when a line is neither
/// a header (it holds `|`) nor `name: numbers`, or a packet count is missing or no number.
pub fn rx_sum(text: &[u8]) -> Option<RxSum> {
    let mut sum = RxSum::default();
    for line in text.split(|&b| b == b'\n') {
        if line.iter().all(u8::is_ascii_whitespace) || line.contains(&b'|') {
            continue;
        }
        // A device name holds no colon (dev_valid_name), so the first one ends it.
        let colon = line.iter().position(|&b| b == b':')?;
        let name = line[..colon].trim_ascii();
        if name.is_empty() {
            return None;
        }
        let mut fields = line[colon + 1..]
            .split(u8::is_ascii_whitespace)
            .filter(|w| !w.is_empty());
        let (_bytes, packets) = (fields.next()?, fields.next()?);
        sum.rx_packets = sum.rx_packets.wrapping_add(parse_u64(packets)?);
        sum.names.add(name);
    }
    Some(sum)
}

/// The open `/proc/net/dev` of one namespace and the buffer it is read into.
pub struct RxPackets {
    file: File,
    buf: Vec<u8>,
}

impl RxPackets {
    /// Opens `/proc/net/dev` of the calling thread's namespace (run it inside, once).
    pub fn open() -> io::Result<Self> {
        File::open("/proc/thread-self/net/dev").map(Self::from_file)
    }

    pub fn from_file(file: File) -> Self {
        RxPackets {
            file,
            buf: Vec::with_capacity(4096),
        }
    }

    /// The sum now. Allocates nothing once the buffer has held the whole file.
    pub fn read(&mut self) -> io::Result<RxSum> {
        read_whole(&self.file, &mut self.buf)?;
        rx_sum(&self.buf)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unreadable /proc/net/dev"))
    }
}

/// Whether a namespace's devices all count received packets as they deliver them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// Every device does: the sum of `rx_packets` over `names` is a proof.
    Live(Names),
    /// A device of a kind not verified to (hardware, or software not read in the kernel).
    Unverified,
}

/// One device of a link dump.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Link<'a> {
    pub name: &'a [u8],
    pub loopback: bool,
    /// `IFLA_INFO_KIND`: `veth`, `bond`...; `None` for a device with no link kind (hardware).
    pub kind: Option<&'a [u8]>,
}

/// Whether a device counts what it receives before TCP sees it (see the module's text).
pub fn counts_live(link: &Link, veth_counted: bool) -> bool {
    link.loopback || (veth_counted && link.kind == Some(b"veth"))
}

/// Folds the devices of a whole link dump into a [`Class`].
#[derive(Clone, Copy, Debug)]
pub struct Classifier {
    veth_counted: bool,
    live: bool,
    names: Names,
}

impl Classifier {
    pub fn new(veth_counted: bool) -> Self {
        Classifier {
            veth_counted,
            live: true,
            names: Names::default(),
        }
    }

    pub fn add(&mut self, link: &Link) {
        self.live &= counts_live(link, self.veth_counted);
        self.names.add(link.name);
    }

    pub fn class(&self) -> Class {
        if self.live {
            Class::Live(self.names)
        } else {
            Class::Unverified
        }
    }
}

const NLMSG_HDR: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_DUMP: u16 = 0x300;
/// The dump was interrupted by a change: its list is not one state of the namespace.
const NLM_F_DUMP_INTR: u16 = 0x10;
const IFINFOMSG: usize = 16;
const IFF_LOOPBACK: u32 = 0x8;
const IFLA_IFNAME: u16 = 3;
const IFLA_LINKINFO: u16 = 18;
const IFLA_INFO_KIND: u16 = 1;
/// The nested and byte-order flags of an attribute's type.
const NLA_TYPE_MASK: u16 = 0x3fff;
const RTNLGRP_LINK: u32 = 1;
const RTM_NEWQDISC: u16 = 36;
const RTM_GETQDISC: u16 = 38;
const TCMSG: usize = 20;
const TCA_KIND: u16 = 1;
/// Qdisc and filter changes.
const RTNLGRP_TC: u32 = 4;

/// Whether a qdisc of this kind leaves every packet to the device's own counting: `noqueue`
/// (lo's and veth's) holds no filter, `noop` (a device down) passes nothing. Any other, root or
/// `ingress`/`clsact`, can carry a tc filter whose `mirred ingress redirect` or BPF
/// `bpf_redirect(.., BPF_F_INGRESS)` hands a packet to the stack past every device's count.
pub fn qdisc_passes_counts(kind: &[u8]) -> bool {
    kind == b"noqueue" || kind == b"noop"
}

/// What one buffer of a link dump said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// Devices given to the callback; more buffers follow.
    More,
    /// The dump's end.
    Done,
    /// A message of no part of this dump (a link event, another sequence) or a dump the kernel
    /// marked interrupted: the namespace changed while it was read.
    Changed,
}

/// Why a link dump's bytes could not be read.
#[derive(Debug, PartialEq, Eq)]
pub enum LinkError {
    /// A length that runs past the buffer or below its header.
    Truncated,
    /// The kernel's error (its errno, positive).
    Kernel(i32),
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The attributes `(type, payload)` of `b`, stopping at the first that does not fit.
fn attrs(mut b: &[u8]) -> impl Iterator<Item = Result<(u16, &[u8]), LinkError>> {
    std::iter::from_fn(move || {
        if b.len() < 4 {
            return None;
        }
        let (Some(len), Some(ty)) = (u16_at(b, 0), u16_at(b, 2)) else {
            return Some(Err(LinkError::Truncated));
        };
        let len = usize::from(len);
        if len < 4 || len > b.len() {
            b = &[];
            return Some(Err(LinkError::Truncated));
        }
        let payload = &b[4..len];
        b = b.get((len + 3) & !3..).unwrap_or(&[]);
        Some(Ok((ty & NLA_TYPE_MASK, payload)))
    })
}

/// A NUL-terminated string attribute, without its NUL.
fn c_str(b: &[u8]) -> &[u8] {
    b.split(|&c| c == 0).next().unwrap_or(b)
}

/// One `RTM_NEWLINK` message's payload (after the netlink header) as a [`Link`].
fn link(payload: &[u8]) -> Result<Link<'_>, LinkError> {
    let flags = u32_at(payload, 8).ok_or(LinkError::Truncated)?;
    let mut l = Link {
        name: &[],
        loopback: flags & IFF_LOOPBACK != 0,
        kind: None,
    };
    for a in attrs(payload.get(IFINFOMSG..).ok_or(LinkError::Truncated)?) {
        match a? {
            (IFLA_IFNAME, v) => l.name = c_str(v),
            (IFLA_LINKINFO, v) => {
                for i in attrs(v) {
                    if let (IFLA_INFO_KIND, k) = i? {
                        l.kind = Some(c_str(k));
                    }
                }
            }
            _ => {}
        }
    }
    Ok(l)
}

/// Reads one buffer of the answer to a link dump sent with `seq` by port `port`, giving each
/// device to `each`. Never panics, whatever the bytes.
pub fn link_part(
    buf: &[u8],
    seq: u32,
    port: u32,
    mut each: impl FnMut(&Link),
) -> Result<Part, LinkError> {
    dump_part(buf, seq, port, RTM_NEWLINK, |payload| {
        each(&link(payload)?);
        Ok(())
    })
}

/// Reads one buffer of the answer to a qdisc dump sent with `seq` by port `port`, giving each
/// qdisc's kind (`noqueue`, `clsact`...) to `each`. Never panics, whatever the bytes.
pub fn qdisc_part(
    buf: &[u8],
    seq: u32,
    port: u32,
    mut each: impl FnMut(&[u8]),
) -> Result<Part, LinkError> {
    dump_part(buf, seq, port, RTM_NEWQDISC, |payload| {
        let mut kind: &[u8] = &[];
        for a in attrs(payload.get(TCMSG..).ok_or(LinkError::Truncated)?) {
            if let (TCA_KIND, k) = a? {
                kind = c_str(k);
            }
        }
        each(kind);
        Ok(())
    })
}

/// One buffer of a dump's answer: each message of type `ty` has its payload given to `each`.
fn dump_part(
    buf: &[u8],
    seq: u32,
    port: u32,
    ty_wanted: u16,
    mut each: impl FnMut(&[u8]) -> Result<(), LinkError>,
) -> Result<Part, LinkError> {
    let mut at = 0;
    while buf.len() - at >= NLMSG_HDR {
        let m = &buf[at..];
        let len = u32_at(m, 0).ok_or(LinkError::Truncated)? as usize;
        let ty = u16_at(m, 4).ok_or(LinkError::Truncated)?;
        let flags = u16_at(m, 6).ok_or(LinkError::Truncated)?;
        if len < NLMSG_HDR || len > m.len() {
            return Err(LinkError::Truncated);
        }
        if u32_at(m, 8) != Some(seq) || u32_at(m, 12) != Some(port) || flags & NLM_F_DUMP_INTR != 0
        {
            return Ok(Part::Changed);
        }
        let payload = &m[NLMSG_HDR..len];
        match ty {
            NLMSG_DONE => return Ok(Part::Done),
            NLMSG_ERROR => {
                let errno = u32_at(payload, 0).ok_or(LinkError::Truncated)? as i32;
                return Err(LinkError::Kernel(errno.wrapping_neg()));
            }
            t if t == ty_wanted => each(payload)?,
            _ => {}
        }
        at += (len + 3) & !3;
        if at > buf.len() {
            break;
        }
    }
    Ok(Part::More)
}

/// Whether this kernel counts a packet `bpf_redirect_peer` puts into a veth (6.7 on).
pub fn veth_counted() -> bool {
    // SAFETY: uname fills a local struct.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    if unsafe { libc::uname(&mut u) } != 0 {
        return false;
    }
    let release: Vec<u8> = u
        .release
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    release_at_least(&release, (6, 7))
}

/// Whether a kernel release (`6.18.44-fc`) is at least `major.minor`.
pub fn release_at_least(release: &[u8], (major, minor): (u64, u64)) -> bool {
    let mut parts = release
        .split(|&b| !b.is_ascii_digit())
        .map(parse_u64)
        .take(2);
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(a), Some(b)) => (a, b) >= (major, minor),
        _ => false,
    }
}

/// How long a link dump may wait for the kernel's next part.
const DUMP_TIMEOUT: Duration = Duration::from_secs(1);

/// A namespace's rtnetlink socket: dumps its links and hears of every change to them through
/// the process-wide [`LinkEvents`].
pub struct LinkWatch {
    sock: Socket,
    port: u32,
    seq: u32,
    buf: Vec<u8>,
    veth_counted: bool,
}

impl LinkWatch {
    /// Opens the socket of the calling thread's namespace (run it inside, once), subscribed to
    /// link events and registered with the sampler's [`LinkEvents`].
    pub fn open() -> io::Result<Self> {
        let mut sock = Socket::new(NETLINK_ROUTE)?;
        let port = sock.bind_auto()?.port_number();
        sock.add_membership(RTNLGRP_LINK)?;
        sock.add_membership(RTNLGRP_TC)?;
        set_recv_timeout(&sock, DUMP_TIMEOUT)?;
        LinkEvents::get()?.add(sock.as_raw_fd())?;
        Ok(LinkWatch {
            sock,
            port,
            seq: 0,
            buf: vec![0; 32 * 1024],
            veth_counted: veth_counted(),
        })
    }

    pub fn fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }

    /// Forgets the events waiting, then dumps the links and the qdiscs. `None`: the namespace
    /// changed while they were read (try again later). Allocates nothing.
    pub fn classify(&mut self) -> io::Result<Option<Class>> {
        self.drain()?;
        let mut c = Classifier::new(self.veth_counted);
        if !self.dump(RTM_GETLINK, |buf, seq, port| {
            link_part(buf, seq, port, |l| c.add(l))
        })? {
            return Ok(None);
        }
        let mut plain = true;
        if !self.dump(RTM_GETQDISC, |buf, seq, port| {
            qdisc_part(buf, seq, port, |k| plain &= qdisc_passes_counts(k))
        })? {
            return Ok(None);
        }
        Ok(Some(if plain { c.class() } else { Class::Unverified }))
    }

    /// Sends a dump request of type `ty` (its header zeroed: every device, every family) and
    /// reads its answer through `part`. False: the namespace changed while it was read (the
    /// rest of the dump is read away with the next drain).
    fn dump(
        &mut self,
        ty: u16,
        mut part: impl FnMut(&[u8], u32, u32) -> Result<Part, LinkError>,
    ) -> io::Result<bool> {
        self.seq = self.seq.wrapping_add(1);
        // ifinfomsg (16 bytes) or tcmsg (20), family AF_UNSPEC: the longer fits both.
        let mut req = [0u8; NLMSG_HDR + TCMSG];
        let len = NLMSG_HDR + if ty == RTM_GETLINK { IFINFOMSG } else { TCMSG };
        req[0..4].copy_from_slice(&(len as u32).to_ne_bytes());
        req[4..6].copy_from_slice(&ty.to_ne_bytes());
        req[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
        req[8..12].copy_from_slice(&self.seq.to_ne_bytes());
        self.sock.send(&req[..len], 0)?;
        loop {
            let n = self.sock.recv(&mut &mut self.buf[..], 0)?;
            match part(&self.buf[..n], self.seq, self.port) {
                Ok(Part::More) => {}
                Ok(Part::Done) => return Ok(true),
                Ok(Part::Changed) => return Ok(false),
                Err(LinkError::Kernel(e)) => return Err(io::Error::from_raw_os_error(e)),
                Err(LinkError::Truncated) => {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, "truncated dump"))
                }
            }
        }
    }

    /// Reads away every message waiting (events, or a dump left unfinished).
    fn drain(&mut self) -> io::Result<()> {
        loop {
            match self.sock.recv(&mut &mut self.buf[..], libc::MSG_DONTWAIT) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                // Events lost to a full buffer: the drain forgets them anyway.
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// One epoll over every namespace's link socket: the sampler asks it once per sample, without
/// waiting, which namespaces' devices changed.
pub struct LinkEvents {
    epoll: OwnedFd,
}

/// Events taken per call; more stay ready for the next.
pub const MAX_EVENTS: usize = 64;

impl LinkEvents {
    /// The process's one instance.
    pub fn get() -> io::Result<&'static LinkEvents> {
        static EVENTS: OnceLock<Result<LinkEvents, i32>> = OnceLock::new();
        let made = EVENTS.get_or_init(|| {
            // SAFETY: a new descriptor, owned at once.
            let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
            if fd < 0 {
                return Err(io::Error::last_os_error().raw_os_error().unwrap_or(0));
            }
            Ok(LinkEvents {
                epoll: unsafe { OwnedFd::from_raw_fd(fd) },
            })
        });
        made.as_ref().map_err(|&e| io::Error::from_raw_os_error(e))
    }

    /// Watches `fd` (a socket closed leaves the set by itself).
    fn add(&self, fd: RawFd) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: fd as u64,
        };
        // SAFETY: both descriptors are open; the event is local.
        if unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) } != 0
        {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// The link sockets with something to read, into `out`; how many. Does not wait.
    pub fn ready(&self, out: &mut [RawFd; MAX_EVENTS]) -> usize {
        let mut evs = [libc::epoll_event { events: 0, u64: 0 }; MAX_EVENTS];
        // SAFETY: the array outlives the call and its length is given.
        let n = unsafe {
            libc::epoll_wait(
                self.epoll.as_raw_fd(),
                evs.as_mut_ptr(),
                MAX_EVENTS as i32,
                0,
            )
        };
        let n = usize::try_from(n).unwrap_or(0);
        for (o, e) in out.iter_mut().zip(&evs[..n]) {
            *o = e.u64 as RawFd;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEV: &[u8] = b"Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:    1000      10    0    0    0     0          0         0     1000      10    0    0    0     0       0          0
  eth0:12345678901 4000000000    0    0    0     0          0         0        0       0    0    0    0     0       0          0
";

    #[test]
    fn sums_rx_packets_of_every_device_and_names_them_in_any_order() {
        let s = rx_sum(DEV).unwrap();
        assert_eq!(s.rx_packets, 4_000_000_010);
        let mut swapped = Vec::new();
        for l in DEV
            .split(|&b| b == b'\n')
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
        {
            swapped.extend_from_slice(l);
            swapped.push(b'\n');
        }
        assert_eq!(rx_sum(&swapped), Some(s));
        let renamed = String::from_utf8(DEV.to_vec())
            .unwrap()
            .replace("eth0", "eth1");
        assert_ne!(rx_sum(renamed.as_bytes()).unwrap().names, s.names);
        let one = rx_sum(b"  lo: 1 2 0\n").unwrap();
        assert_eq!(one.rx_packets, 2);
        assert_ne!(one.names, s.names);
    }

    #[test]
    fn a_malformed_proc_net_dev_is_none() {
        assert_eq!(rx_sum(b"  lo: 1\n"), None, "no packets column");
        assert_eq!(rx_sum(b"  lo 1 2\n"), None, "no colon");
        assert_eq!(rx_sum(b"  : 1 2\n"), None, "no name");
        assert_eq!(rx_sum(b"  lo: 1 -2\n"), None);
        assert_eq!(rx_sum(b"  lo: 1 18446744073709551616\n"), None);
        assert_eq!(rx_sum(b"").map(|s| s.rx_packets), Some(0));
    }

    fn attr(ty: u16, payload: &[u8]) -> Vec<u8> {
        let mut a = Vec::new();
        a.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
        a.extend_from_slice(&ty.to_ne_bytes());
        a.extend_from_slice(payload);
        while a.len() % 4 != 0 {
            a.push(0);
        }
        a
    }

    /// A netlink message: header (len, type, flags, seq, port), then `payload`.
    fn msg(ty: u16, flags: u16, seq: u32, port: u32, payload: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&((NLMSG_HDR + payload.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&ty.to_ne_bytes());
        m.extend_from_slice(&flags.to_ne_bytes());
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&port.to_ne_bytes());
        m.extend_from_slice(payload);
        m
    }

    /// An RTM_NEWLINK payload: ifinfomsg (family, pad, type, index, flags, change), the name
    /// and, when given, IFLA_LINKINFO { IFLA_INFO_KIND } (nested flag set, as the kernel does).
    fn newlink(name: &str, flags: u32, kind: Option<&str>) -> Vec<u8> {
        let mut p = vec![0u8; IFINFOMSG];
        p[8..12].copy_from_slice(&flags.to_ne_bytes());
        p.extend(attr(IFLA_IFNAME, format!("{name}\0").as_bytes()));
        if let Some(k) = kind {
            let inner = attr(IFLA_INFO_KIND, format!("{k}\0").as_bytes());
            p.extend(attr(IFLA_LINKINFO | 0x8000, &inner));
        }
        p
    }

    fn dump(links: &[(&str, u32, Option<&str>)]) -> Vec<u8> {
        let mut b = Vec::new();
        for (n, f, k) in links {
            b.extend(msg(RTM_NEWLINK, 2, 7, 99, &newlink(n, *f, *k)));
        }
        b.extend(msg(NLMSG_DONE, 2, 7, 99, &[0; 4]));
        b
    }

    fn classify(b: &[u8], veth_counted: bool) -> Result<(Part, Class), LinkError> {
        let mut c = Classifier::new(veth_counted);
        let part = link_part(b, 7, 99, |l| c.add(l))?;
        Ok((part, c.class()))
    }

    #[test]
    fn only_loopback_and_veth_count_live_and_veth_only_where_the_kernel_counts_redirects() {
        let lo_veth = dump(&[("lo", IFF_LOOPBACK, None), ("eth0", 0, Some("veth"))]);
        let (part, class) = classify(&lo_veth, true).unwrap();
        assert_eq!(part, Part::Done);
        let mut names = Names::default();
        names.add(b"lo");
        names.add(b"eth0");
        assert_eq!(class, Class::Live(names));
        assert_eq!(classify(&lo_veth, false).unwrap().1, Class::Unverified);
        for other in [None, Some("dummy"), Some("bond"), Some("vxlan"), Some("")] {
            let b = dump(&[("lo", IFF_LOOPBACK, None), ("x", 0, other)]);
            assert_eq!(
                classify(&b, true).unwrap().1,
                Class::Unverified,
                "{other:?}"
            );
        }
        // The names a dump gives are those /proc/net/dev gives for the same devices.
        let text = b"  eth0: 0 0 0\n    lo: 0 0 0\n";
        assert_eq!(Class::Live(rx_sum(text).unwrap().names), class);
    }

    #[test]
    fn an_event_another_sequence_or_an_interrupted_dump_is_a_change() {
        let event = msg(RTM_NEWLINK, 0, 0, 0, &newlink("eth1", 0, Some("veth")));
        assert_eq!(classify(&event, true).unwrap().0, Part::Changed);
        let other = msg(RTM_NEWLINK, 2, 8, 99, &newlink("lo", IFF_LOOPBACK, None));
        assert_eq!(classify(&other, true).unwrap().0, Part::Changed);
        let intr = msg(
            RTM_NEWLINK,
            2 | NLM_F_DUMP_INTR,
            7,
            99,
            &newlink("lo", IFF_LOOPBACK, None),
        );
        assert_eq!(classify(&intr, true).unwrap().0, Part::Changed);
        let part = msg(RTM_NEWLINK, 2, 7, 99, &newlink("lo", IFF_LOOPBACK, None));
        assert_eq!(classify(&part, true).unwrap().0, Part::More);
        let err = msg(NLMSG_ERROR, 0, 7, 99, &(-libc::EPERM).to_ne_bytes());
        assert_eq!(classify(&err, true), Err(LinkError::Kernel(libc::EPERM)));
    }

    #[test]
    fn a_link_dump_cut_anywhere_is_an_error_or_a_part_never_a_panic() {
        let b = dump(&[("lo", IFF_LOOPBACK, None), ("eth0", 0, Some("veth"))]);
        for cut in 0..b.len() {
            let _ = classify(&b[..cut], true);
        }
        // A message claiming more than the buffer holds.
        let mut long = b.clone();
        long[0..4].copy_from_slice(&10_000u32.to_ne_bytes());
        assert_eq!(classify(&long, true), Err(LinkError::Truncated));
        // An attribute claiming more than its message.
        let mut m = newlink("lo", IFF_LOOPBACK, None);
        m[IFINFOMSG..IFINFOMSG + 2].copy_from_slice(&200u16.to_ne_bytes());
        let bad = msg(RTM_NEWLINK, 2, 7, 99, &m);
        assert_eq!(classify(&bad, true), Err(LinkError::Truncated));
    }

    #[test]
    fn a_qdisc_other_than_noqueue_or_noop_is_where_a_filter_can_pass_the_counters_by() {
        // tcmsg (family, pads, ifindex, handle, parent, info), then TCA_KIND.
        let qdisc = |kind: &str| {
            let mut p = vec![0u8; TCMSG];
            p.extend(attr(TCA_KIND, format!("{kind}\0").as_bytes()));
            msg(RTM_NEWQDISC, 2, 7, 99, &p)
        };
        let mut b = qdisc("noqueue");
        b.extend(qdisc("clsact"));
        b.extend(msg(NLMSG_DONE, 2, 7, 99, &[0; 4]));
        let mut kinds = Vec::new();
        assert_eq!(
            qdisc_part(&b, 7, 99, |k| kinds.push(k.to_vec())),
            Ok(Part::Done)
        );
        assert_eq!(kinds, [b"noqueue".to_vec(), b"clsact".to_vec()]);
        for (kind, plain) in [
            ("noqueue", true),
            ("noop", true),
            ("clsact", false),
            ("ingress", false),
            ("prio", false),
            ("fq_codel", false),
            ("", false),
        ] {
            assert_eq!(qdisc_passes_counts(kind.as_bytes()), plain, "{kind}");
        }
        for cut in 0..b.len() {
            let _ = qdisc_part(&b[..cut], 7, 99, |_| {});
        }
        let event = msg(RTM_NEWQDISC, 0, 0, 0, &qdisc("clsact")[NLMSG_HDR..]);
        assert_eq!(qdisc_part(&event, 7, 99, |_| {}), Ok(Part::Changed));
    }

    #[test]
    fn kernel_releases_compare_by_major_then_minor() {
        assert!(release_at_least(b"6.18.44-fc-v782", (6, 7)));
        assert!(release_at_least(b"6.7.0", (6, 7)));
        assert!(release_at_least(b"7.0", (6, 7)));
        assert!(!release_at_least(b"6.6.30-lts", (6, 7)));
        assert!(!release_at_least(b"5.15.0-91-generic", (6, 7)));
        assert!(!release_at_least(b"", (6, 7)));
    }

    #[test]
    fn reads_this_namespaces_links_and_proc_net_dev_alike() {
        let Ok(mut w) = LinkWatch::open() else { return };
        let Some(Class::Live(names)) = w.classify().unwrap() else {
            // A host with a hardware NIC: nothing to compare.
            return;
        };
        let now = RxPackets::open().unwrap().read().unwrap();
        assert_eq!(now.names, names);
    }
}

#[cfg(test)]
mod prop {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(crate::prop_config(256))]

        #[test]
        fn any_bytes_give_a_sum_or_none_and_a_link_part_or_an_error(
            text in proptest::collection::vec(any::<u8>(), 0..600)
        ) {
            let _ = rx_sum(&text);
            let _ = link_part(&text, 1, 2, |_| {});
            let _ = qdisc_part(&text, 1, 2, |_| {});
        }
    }
}
