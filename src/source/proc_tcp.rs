//! Fallback listener source: `/proc/net/tcp` and `/proc/net/tcp6` through procfs, used only when
//! sock_diag is unavailable. They hold the accept-queue depth (`rx_queue`) of a listener but not
//! its limit nor its drops, which stay absent.

use std::fs::File;
use std::io::{self, BufReader, Seek};

use procfs::net::{TcpNetEntries, TcpState};
use procfs::FromBufReadSI;

use crate::snapshot::Socket;

/// Opens `tcp` and `tcp6` of the calling thread's namespace.
pub fn open() -> [Option<File>; 2] {
    ["tcp", "tcp6"].map(|f| File::open(format!("/proc/thread-self/net/{f}")).ok())
}

/// Reads listeners from the open tables into `out` (cleared first).
pub fn read(files: &[Option<File>; 2], out: &mut Vec<Socket>) -> io::Result<()> {
    out.clear();
    let info = procfs::current_system_info();
    for file in files.iter().flatten() {
        let mut file = file;
        file.rewind()?;
        let entries = TcpNetEntries::from_buf_read(BufReader::new(file), info)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
        out.extend(
            entries
                .0
                .into_iter()
                .filter(|e| e.state == TcpState::Listen)
                .map(|e| Socket {
                    // As sock_diag gives it: an AF_INET6 listener on `::ffff:a.b.c.d` stays one.
                    addr: e.local_address.ip(),
                    port: e.local_address.port(),
                    ifindex: 0,
                    inode: e.inode as u32,
                    depth: e.rx_queue,
                    limit: None,
                    drops: None,
                }),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn fallback_finds_a_listener_and_its_depth_without_limit_or_drops() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let _clients: Vec<TcpStream> = (0..2)
            .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
            .collect();
        let mut sockets = Vec::new();
        read(&open(), &mut sockets).unwrap();
        let found = sockets
            .iter()
            .find(|s| s.port == port)
            .expect("listener in /proc/net/tcp");
        assert_eq!(found.addr.to_string(), "127.0.0.1");
        assert_eq!(found.depth, 2, "two handshakes completed, none accepted");
        assert_eq!((found.limit, found.drops), (None, None));
        assert!(sockets.iter().all(|s| s.port != 0));
    }
}
