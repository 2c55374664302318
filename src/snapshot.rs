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
    pub inode: u32,
    /// Connections waiting in the accept queue.
    pub depth: u32,
    /// The accept-queue limit; absent from the `/proc/net/tcp` fallback.
    pub limit: Option<u32>,
    /// `sk_drops`; absent from the fallback and from kernels with a short SKMEMINFO.
    pub drops: Option<u32>,
}

/// A local address and port: what a listener is known by.
pub type Endpoint = (IpAddr, u16);

#[derive(Clone, Debug, Default)]
pub struct NetnsSnapshot {
    pub sockets: Vec<Socket>,
    /// Request sockets (SYN queue) per local address and port, when the SYN dump ran and
    /// finished.
    pub syn_queue: Option<HashMap<Endpoint, u32>>,
    pub tcpext: Option<TcpExt>,
    pub sysctls: Sysctls,
}
