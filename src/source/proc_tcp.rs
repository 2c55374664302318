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

#[cfg(test)]
mod prop {
    use std::io::Cursor;

    use procfs::ExplicitSystemInfo;
    use proptest::prelude::*;

    use super::*;

    const HEADER: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n";

    fn entries(text: &[u8]) -> Result<TcpNetEntries, String> {
        let info = ExplicitSystemInfo {
            boot_time_secs: 0,
            ticks_per_second: 100,
            page_size: 4096,
            is_little_endian: cfg!(target_endian = "little"),
        };
        TcpNetEntries::from_buf_read(Cursor::new(text), &info).map_err(|e| e.to_string())
    }

    proptest! {
        #![proptest_config(crate::prop_config(256))]

        /// The table procfs parses for the fallback source: any text is an error or entries,
        /// never a panic that would take the report down.
        #[test]
        fn any_table_text_is_an_error_or_entries(rows in proptest::collection::vec("( |[0-9A-F]{1,8}|:|[0-9]{1,6}|\n)", 0..60)) {
            let text = format!("{HEADER}{}", rows.concat());
            let _ = entries(text.as_bytes());
        }

        #[test]
        fn any_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = entries(&bytes);
        }

        /// A listener row as the kernel writes it gives its port, depth and inode back.
        #[test]
        fn a_listener_row_reads_back(port in 1u16.., depth in any::<u32>(), inode in any::<u32>(), cut in 0usize..160) {
            let row = format!(
                "   0: 0100007F:{port:04X} 00000000:0000 0A 00000000:{depth:08X} 00:00000000 00000000  1000        0 {inode} 1 0000000000000000 100 0 0 10 0\n"
            );
            let text = format!("{HEADER}{row}");
            let e = entries(text.as_bytes()).unwrap();
            prop_assert_eq!(e.0.len(), 1);
            prop_assert_eq!(&e.0[0].state, &TcpState::Listen);
            prop_assert_eq!(e.0[0].local_address.port(), port);
            prop_assert_eq!((e.0[0].rx_queue, e.0[0].inode), (depth, u64::from(inode)));
            let _ = entries(&text.as_bytes()[..cut.min(text.len())]);
        }
    }
}
