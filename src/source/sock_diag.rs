//! The sock_diag netlink socket: one per watched namespace and user (report, sampler), kept open
//! and reused, with its buffers, for every dump.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use netlink_sys::{protocols::NETLINK_SOCK_DIAG, Socket, SocketAddr};

use super::inet_diag::{self, DecodeError, LocalPorts, Record, Step, FAMILIES};
use super::netns;

/// What [`DiagSocket::dump_both_families`] passes for its family: the request names none.
const AF_UNSPEC: u8 = 0;
/// 64 KiB: the kernel sizes dump datagrams up to 32 KiB; a smaller buffer truncates them.
const RECV_BUF: usize = 64 * 1024;
/// A dump that stalls this long is broken; netlink-sys has no timeout of its own.
const RECV_TIMEOUT: Duration = Duration::from_secs(2);
/// A dump the kernel could not deliver whole is tried again this many times.
const RETRIES: usize = 3;

#[derive(Debug)]
pub enum DiagError {
    Io(io::Error),
    Decode(DecodeError),
    /// The caller's CPU cap was spent mid-dump; the socket was left with a dump in flight and must
    /// be replaced, which the next dump does.
    Deadline {
        records: usize,
    },
}

impl std::fmt::Display for DiagError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DiagError::Io(e) => write!(f, "sock_diag: {e}"),
            DiagError::Decode(e) => write!(f, "{e}"),
            DiagError::Deadline { records } => write!(
                f,
                "sock_diag dump cut short after {records} records (time cap)"
            ),
        }
    }
}

impl std::error::Error for DiagError {}

/// A bound on the CPU time one dump may cost the thread that makes it: the kernel does a dump's
/// work in that thread's `send` and `recv` calls, so under a SYN flood the cost shows here. Not
/// wall time, which also counts the time a loaded host's scheduler kept the thread waiting: that
/// cut dumps of a few records, even before their first datagram, losing the whole count without
/// making the report any earlier. A stalled dump is bounded by the receive timeout instead.
#[derive(Clone, Copy, Debug)]
pub struct CpuCap {
    start: Duration,
    limit: Duration,
}

impl CpuCap {
    /// A cap of `limit` of this thread's CPU time from now; it holds only on this thread.
    pub fn start(limit: Duration) -> CpuCap {
        CpuCap {
            start: thread_cpu_time(),
            limit,
        }
    }

    fn spent(&self) -> bool {
        thread_cpu_time().saturating_sub(self.start) >= self.limit
    }
}

/// CPU time the calling thread has used, user and system; zero if the clock cannot be read,
/// which leaves a cap never spent rather than every dump cut.
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime fills a live timespec.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// What one dump asks for.
#[derive(Clone, Copy)]
enum Request<'a> {
    Sockets {
        states: u32,
        with_meminfo: bool,
    },
    /// Accept-queue children in `states` on these local ports.
    Children {
        ports: &'a LocalPorts,
        states: u32,
    },
    /// Sockets of both families in `states` that `ports` accepts, in one walk.
    BothFamilies {
        ports: &'a LocalPorts,
        states: u32,
        with_info: bool,
    },
}

/// What a children dump hands its caller, in order.
pub enum Dumped<'a> {
    Record(&'a Record),
    /// Every record of this address family has been handed over.
    FamilyDone(u8),
}

pub struct DiagSocket {
    sock: Socket,
    /// The namespace the socket lives in (`None`: ours), kept to open a replacement.
    netns: Option<Arc<File>>,
    buf: Vec<u8>,
    req: Vec<u8>,
    seq: u32,
    poisoned: bool,
}

impl DiagError {
    /// Errors after which a fresh dump is worth trying: the kernel dropped part of the reply, or
    /// a datagram was larger than our buffer (now grown).
    fn retryable(&self) -> bool {
        match self {
            DiagError::Io(e) => {
                e.raw_os_error() == Some(libc::ENOBUFS) || e.kind() == io::ErrorKind::InvalidData
            }
            _ => false,
        }
    }
}

impl DiagSocket {
    /// Opens a sock_diag socket in `netns` (or ours); sock_diag sees only the namespace a socket
    /// was created in, for the socket's whole life.
    pub fn open(netns: Option<Arc<File>>) -> io::Result<Self> {
        let sock = netns::run_in(netns.as_deref(), open_socket)??;
        Ok(DiagSocket {
            sock,
            netns,
            buf: vec![0; RECV_BUF],
            req: Vec::with_capacity(128),
            seq: 0,
            poisoned: false,
        })
    }

    fn reopen(&mut self) -> Result<(), DiagError> {
        self.sock = netns::run_in(self.netns.as_deref(), open_socket)
            .and_then(|r| r)
            .map_err(DiagError::Io)?;
        self.poisoned = false;
        Ok(())
    }

    /// Dumps TCP sockets in `states` into `out` (cleared first), IPv4 then IPv6, retrying a dump
    /// the kernel could not deliver whole. Allocates nothing once `out` has grown.
    pub fn dump_into(
        &mut self,
        states: u32,
        with_meminfo: bool,
        out: &mut Vec<Record>,
    ) -> Result<(), DiagError> {
        out.clear();
        for family in FAMILIES {
            self.append_family(family, states, with_meminfo, out)?;
        }
        Ok(())
    }

    /// Appends the sockets of one address family to `out`, retrying as [`Self::dump_into`].
    pub fn append_family(
        &mut self,
        family: u8,
        states: u32,
        with_meminfo: bool,
        out: &mut Vec<Record>,
    ) -> Result<(), DiagError> {
        let start = out.len();
        let mut attempt = 0;
        loop {
            out.truncate(start);
            if self.poisoned {
                self.reopen()?;
            }
            let request = Request::Sockets {
                states,
                with_meminfo,
            };
            let mut records = 0;
            match self.dump_family(family, request, None, &mut records, &mut |r| out.push(*r)) {
                Err(e) if attempt < RETRIES && e.retryable() => attempt += 1,
                other => return other,
            }
        }
    }

    /// Dumps TCP sockets in `states`, IPv4 then IPv6, calling `on_record` for each without
    /// storing them. Once `cap` is spent the dump is abandoned and the socket replaced next time.
    pub fn dump(
        &mut self,
        states: u32,
        with_meminfo: bool,
        cap: Option<CpuCap>,
        on_record: &mut dyn FnMut(&Record),
    ) -> Result<(), DiagError> {
        if self.poisoned {
            self.reopen()?;
        }
        let mut records = 0;
        for family in FAMILIES {
            let request = Request::Sockets {
                states,
                with_meminfo,
            };
            self.dump_family(family, request, cap, &mut records, on_record)?;
        }
        Ok(())
    }

    /// Dumps the TCP sockets of both families in `states` that `ports` accepts, with their
    /// `tcp_info` when `with_info`, in one walk of the kernel's hash (`TCPDIAG_GETSOCK`), as
    /// [`Self::dump`] otherwise. A kernel that refuses the request answers
    /// [`DecodeError::Kernel`] before any record.
    pub fn dump_both_families(
        &mut self,
        states: u32,
        ports: &LocalPorts,
        with_info: bool,
        cap: Option<CpuCap>,
        on_record: &mut dyn FnMut(&Record),
    ) -> Result<(), DiagError> {
        if self.poisoned {
            self.reopen()?;
        }
        let mut records = 0;
        let request = Request::BothFamilies {
            ports,
            states,
            with_info,
        };
        self.dump_family(AF_UNSPEC, request, cap, &mut records, on_record)
    }

    /// Dumps the sockets of `families` in `states` on the local `ports`, with their
    /// `tcp_info`, as [`Self::dump`], saying when each family is complete: a caller cut short
    /// by `cap` can keep what the families before the cut found.
    pub fn dump_children(
        &mut self,
        families: &[u8],
        ports: &LocalPorts,
        states: u32,
        cap: Option<CpuCap>,
        on_dumped: &mut dyn FnMut(Dumped),
    ) -> Result<(), DiagError> {
        if self.poisoned {
            self.reopen()?;
        }
        let mut records = 0;
        for &family in families {
            let request = Request::Children { ports, states };
            self.dump_family(family, request, cap, &mut records, &mut |r| {
                on_dumped(Dumped::Record(r))
            })?;
            on_dumped(Dumped::FamilyDone(family));
        }
        Ok(())
    }

    /// Dumps one family (`AF_UNSPEC`: both, for [`Request::BothFamilies`]); `records` counts what the whole dump has handed over, so that a cut
    /// says how far the dump got, not how far its last family did.
    // Longer than most functions here: one request and its receive loop, whose every exit
    // decides whether the socket is left mid-dump (`poisoned`); split, that state would be
    // threaded through each part.
    fn dump_family(
        &mut self,
        family: u8,
        request: Request,
        cap: Option<CpuCap>,
        records: &mut usize,
        on_record: &mut dyn FnMut(&Record),
    ) -> Result<(), DiagError> {
        self.seq = self.seq.wrapping_add(1);
        let with_attributes = match request {
            Request::Sockets {
                states,
                with_meminfo,
            } => {
                inet_diag::build_request(&mut self.req, family, states, with_meminfo, self.seq);
                with_meminfo
            }
            Request::Children { ports, states } => {
                inet_diag::build_children_request(&mut self.req, family, states, ports, self.seq);
                true
            }
            Request::BothFamilies {
                ports,
                states,
                with_info,
            } => {
                inet_diag::build_both_families_request(
                    &mut self.req,
                    states,
                    ports,
                    with_info,
                    self.seq,
                );
                with_info
            }
        };
        loop {
            match self.sock.send(&self.req, 0) {
                Ok(_) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.poisoned = true;
                    return Err(DiagError::Io(e));
                }
            }
        }
        loop {
            if cap.is_some_and(|c| c.spent()) {
                self.poisoned = true;
                return Err(DiagError::Deadline { records: *records });
            }
            let n = match self.sock.recv(&mut &mut self.buf[..], libc::MSG_TRUNC) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Whatever the error, the kernel may still hold the rest of this dump.
                    self.poisoned = true;
                    return Err(DiagError::Io(e));
                }
            };
            if n > self.buf.len() {
                self.buf.resize(n.next_power_of_two(), 0);
                self.poisoned = true;
                return Err(DiagError::Io(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("sock_diag datagram of {n} bytes was truncated"),
                )));
            }
            let step =
                inet_diag::decode_datagram(&self.buf[..n], self.seq, with_attributes, &mut |r| {
                    *records += 1;
                    on_record(r)
                });
            match step {
                Ok(Step::Done) => return Ok(()),
                Ok(Step::More) => {}
                Err(e) => {
                    // After NLMSG_ERROR the kernel ends the dump; after garbage we cannot tell.
                    self.poisoned = !matches!(e, DecodeError::Kernel(_));
                    return Err(DiagError::Decode(e));
                }
            }
        }
    }
}

fn open_socket() -> io::Result<Socket> {
    let mut sock = Socket::new(NETLINK_SOCK_DIAG)?;
    sock.bind_auto()?;
    sock.connect(&SocketAddr::new(0, 0))?;
    set_recv_timeout(&sock, RECV_TIMEOUT)?;
    Ok(sock)
}

/// Bounds each receive on `sock` by `timeout`.
pub(super) fn set_recv_timeout(sock: &Socket, timeout: Duration) -> io::Result<()> {
    let tv = libc::timeval {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_usec: timeout.subsec_micros() as libc::suseconds_t,
    };
    // SAFETY: setsockopt reads a timeval of the size we pass from a live stack value.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::inet_diag::{STATES_ESTABLISHED_CHILD, STATE_LISTEN, STATE_NEW_SYN_RECV};
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn dumps_our_own_listener_with_depth_limit_and_drops() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap(); // std listens with backlog 128
        let port = listener.local_addr().unwrap().port();
        let _clients: Vec<TcpStream> = (0..3)
            .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
            .collect();
        let mut sock = DiagSocket::open(None).unwrap();
        let mut records = Vec::new();
        for _ in 0..3 {
            // Reused socket and buffers: every dump sees the same thing.
            sock.dump_into(STATE_LISTEN, true, &mut records).unwrap();
            let r = records
                .iter()
                .find(|r| r.port == port)
                .expect("our listener");
            assert_eq!(r.state, 10);
            assert_eq!(r.rqueue, 3);
            assert!(r.wqueue >= 1 && r.wqueue <= 128, "limit {}", r.wqueue);
            assert_eq!(r.drops, Some(0));
            assert!(r.inode != 0);
        }
        assert!(records.iter().all(|r| r.state == 10), "LISTEN only");
        // A request-socket dump succeeds (and finds nothing for a completed handshake).
        let mut n = 0;
        sock.dump(
            STATE_NEW_SYN_RECV,
            false,
            Some(CpuCap::start(Duration::from_secs(1))),
            &mut |r| {
                if r.port == port {
                    n += 1
                }
            },
        )
        .unwrap();
        assert_eq!(n, 0);
    }

    #[test]
    fn a_spent_cap_abandons_the_dump_and_the_next_one_works() {
        let mut sock = DiagSocket::open(None).unwrap();
        let spent = CpuCap::start(Duration::ZERO);
        let r = sock.dump(STATE_LISTEN, false, Some(spent), &mut |_| {});
        assert!(matches!(r, Err(DiagError::Deadline { .. })));
        assert!(sock.poisoned);
        let mut records = Vec::new();
        sock.dump_into(STATE_LISTEN, false, &mut records).unwrap();
        assert!(!sock.poisoned);
    }

    /// A loaded host: the dumping thread kept off the CPU for longer than the cap, a few
    /// records to dump. The dump is whole: waiting for the CPU is not the dump's cost.
    #[test]
    fn time_spent_waiting_for_the_cpu_does_not_cut_a_dump() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut sock = DiagSocket::open(None).unwrap();
        let cap = CpuCap::start(Duration::from_millis(50));
        // Off the CPU, as when descheduled between the cap's start and the dump.
        std::thread::sleep(Duration::from_millis(120));
        let mut seen = false;
        sock.dump(STATE_LISTEN, false, Some(cap), &mut |r| {
            seen |= r.port == port
        })
        .unwrap();
        assert!(seen, "our listener, in a dump that was not cut");
    }

    #[test]
    fn a_cut_counts_the_records_of_the_families_before_it() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let _clients: Vec<TcpStream> = (0..2)
            .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
            .collect();
        let mut ports = LocalPorts::default();
        ports.set(&[port]);
        let mut sock = DiagSocket::open(None).unwrap();
        let limit = Duration::from_millis(200);
        let cap = CpuCap::start(limit);
        let mut handed = 0;
        // The IPv4 family ends within the cap; the IPv6 one starts after it is spent.
        let r = sock.dump_children(
            &FAMILIES,
            &ports,
            STATES_ESTABLISHED_CHILD,
            Some(cap),
            &mut |d| match d {
                Dumped::Record(_) => handed += 1,
                Dumped::FamilyDone(_) => {
                    let begun = thread_cpu_time();
                    while thread_cpu_time().saturating_sub(begun) <= limit {}
                }
            },
        );
        assert_eq!(handed, 2, "the two queued children, both IPv4");
        match r {
            Err(DiagError::Deadline { records }) => assert_eq!(records, 2),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn one_walk_of_both_families_keeps_the_asked_ports_sockets_only() {
        let v4 = TcpListener::bind("127.0.0.1:0").unwrap();
        let v6 = TcpListener::bind("[::1]:0").unwrap();
        let unasked = TcpListener::bind("127.0.0.1:0").unwrap();
        let (p4, p6) = (
            v4.local_addr().unwrap().port(),
            v6.local_addr().unwrap().port(),
        );
        let _clients: Vec<TcpStream> = [v4.local_addr(), v6.local_addr(), unasked.local_addr()]
            .into_iter()
            .map(|a| TcpStream::connect(a.unwrap()).unwrap())
            .collect();
        let mut ports = LocalPorts::default();
        ports.set_with_request_sockets(&[p4, p6]);
        let mut sock = DiagSocket::open(None).unwrap();
        let mut found = Vec::new();
        let states = STATE_NEW_SYN_RECV | STATES_ESTABLISHED_CHILD;
        sock.dump_both_families(states, &ports, true, None, &mut |r| {
            if r.state != inet_diag::TCP_SYN_RECV {
                assert!(r.tcp_info.and_then(|t| t.last_data_sent).is_some(), "{r:?}");
                found.push((r.family, r.port));
            }
        })
        .unwrap();
        found.sort();
        assert_eq!(
            found,
            [(libc::AF_INET as u8, p4), (libc::AF_INET6 as u8, p6)]
        );
    }

    #[test]
    fn dumps_queued_children_with_their_wait_and_not_the_accepted_one() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let _clients: Vec<TcpStream> = (0..3)
            .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
            .collect();
        let (_accepted, _) = listener.accept().unwrap();
        // Another listener with one queued child, and one whose port no filter asks for.
        let other = TcpListener::bind("127.0.0.1:0").unwrap();
        let other_port = other.local_addr().unwrap().port();
        let _other_client = TcpStream::connect(("127.0.0.1", other_port)).unwrap();
        let unasked = TcpListener::bind("127.0.0.1:0").unwrap();
        let _unasked_client = TcpStream::connect(unasked.local_addr().unwrap()).unwrap();
        let mut sock = DiagSocket::open(None).unwrap();
        let mut count =
            |ports: &LocalPorts| {
                let mut found: Vec<(u16, bool)> = Vec::new();
                let mut families = Vec::new();
                sock.dump_children(&FAMILIES, ports, STATES_ESTABLISHED_CHILD, None, &mut |d| {
                    match d {
                        Dumped::Record(r) => {
                            assert!(r.tcp_info.and_then(|t| t.last_data_sent).is_some());
                            found.push((r.port, r.inode == 0));
                        }
                        Dumped::FamilyDone(f) => families.push(f),
                    }
                })
                .unwrap();
                assert_eq!(families, FAMILIES, "each family said done, in order");
                found.sort();
                found
            };
        let mut ports = LocalPorts::default();
        // One port, in the request itself: two queued, one accepted.
        ports.set(&[port]);
        let one = vec![(port, false), (port, true), (port, true)];
        assert_eq!(count(&ports), one);
        // The same through a filter program: the kernel's audit takes it and it selects alike.
        ports.set_program(&[port]);
        assert_eq!(count(&ports), one);
        ports.set(&[port, other_port]);
        let mut two = one.clone();
        two.push((other_port, true));
        two.sort();
        assert_eq!(count(&ports), two);
    }
}
