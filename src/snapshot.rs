//! Plain data: one reading of everything acceptq reports, per watched namespace.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::source::netstat::TcpExt;
use crate::source::sysctl::Sysctls;

/// One listening socket as the kernel reported it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Socket {
    pub addr: IpAddr,
    pub port: u16,
    /// The device the socket is bound to (`SO_BINDTODEVICE`, or the scope of a link-local
    /// address); 0 when unbound, and always in the `/proc/net/tcp` fallback, which lacks it.
    pub ifindex: u32,
    pub inode: u32,
    /// Connections waiting in the accept queue.
    pub depth: u32,
    /// The accept-queue limit; absent from the `/proc/net/tcp` fallback.
    pub limit: Option<u32>,
    /// `sk_drops`; absent from the fallback and from kernels with a short SKMEMINFO.
    pub drops: Option<u32>,
}

/// What a listener is known by: local address, port and bound device. Two sockets that differ
/// only in their device are independent listeners to the kernel (`fe80::1%v0` and
/// `fe80::1%v2`, or `0.0.0.0:80` bound to two devices), never one SO_REUSEPORT group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    pub addr: IpAddr,
    pub port: u16,
    /// Interface index, 0: not bound to a device.
    pub ifindex: u32,
}

impl Socket {
    pub fn endpoint(&self) -> Endpoint {
        Endpoint {
            addr: self.addr,
            port: self.port,
            ifindex: self.ifindex,
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct NetnsSnapshot {
    pub sockets: Vec<Socket>,
    /// Request sockets (SYN queue) per local address, port and `idiag_if`, when the SYN dump
    /// ran and finished.
    pub syn_queue: Option<HashMap<Endpoint, u32>>,
    /// The longest wait, in ms, of the connections still in an accept queue, per local address,
    /// port and `idiag_if` the connections carry (not yet matched to a listener), when the
    /// dump ran and finished. Only ports of listeners with a non-empty queue were asked.
    pub queue_wait: Option<HashMap<Endpoint, u32>>,
    /// Names of the devices listeners are bound to, by index, read in the socket's namespace
    /// (indexes are per namespace). An index missing here has no name (the device is gone).
    pub interfaces: HashMap<u32, String>,
    pub tcpext: Option<TcpExt>,
    pub sysctls: Sysctls,
}
