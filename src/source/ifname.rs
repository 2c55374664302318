//! Interface index → device name, with `SIOCGIFNAME` on a datagram socket.
//!
//! Indexes are per network namespace (`v0` may be index 3 in one namespace and 7 in another),
//! so the socket is opened inside the namespace being watched and asks that namespace's table.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// A datagram socket of one namespace, kept open to ask it for device names.
pub struct IfNames {
    sock: OwnedFd,
}

impl IfNames {
    /// Opens the socket in the calling thread's namespace (call it inside `netns::run_in`).
    pub fn open() -> io::Result<Self> {
        // SAFETY: socket(2) takes no pointers; the fd returned is ours alone.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a freshly opened descriptor nothing else owns.
        Ok(IfNames {
            sock: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// The name of device `index` now, `None` when the namespace has no such device.
    pub fn name(&self, index: u32) -> Option<String> {
        let index = libc::c_int::try_from(index).ok()?;
        // SAFETY: an all-zero ifreq is a valid value of this plain C struct.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        req.ifr_ifru.ifru_ifindex = index;
        // SAFETY: SIOCGIFNAME reads the index from and writes the name into the ifreq we pass,
        // which lives on our stack for the whole call.
        let rc = unsafe { libc::ioctl(self.sock.as_raw_fd(), libc::SIOCGIFNAME, &mut req) };
        if rc != 0 {
            return None;
        }
        let bytes: Vec<u8> = req
            .ifr_name
            .iter()
            .take_while(|c| **c != 0)
            .map(|c| *c as u8)
            .collect();
        String::from_utf8(bytes).ok().filter(|n| !n.is_empty())
    }
}

/// The `interface` tag of a device-bound listener: the device's name, or `if:<index>` when the
/// namespace no longer has a device with that index. The `:` is what keeps it apart from every
/// name: the kernel refuses a device name holding `/`, `:` or whitespace (`dev_valid_name`), so
/// `if:3` can never be a live device's tag, while a device may well be named `if3`. Of the
/// three, `:` alone needs no escaping in InfluxDB line protocol, Prometheus labels or an
/// `--address` glob, and reads as "interface number 3".
pub fn tag(index: u32, name: Option<&str>) -> String {
    match name {
        Some(n) => n.to_string(),
        None => format!("if:{index}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_found_by_its_index_and_a_missing_index_is_none() {
        let names = IfNames::open().unwrap();
        // SAFETY: a NUL-terminated name.
        let lo = unsafe { libc::if_nametoindex(c"lo".as_ptr()) };
        assert!(lo > 0);
        assert_eq!(names.name(lo).as_deref(), Some("lo"));
        assert_eq!(names.name(u32::MAX), None);
        assert_eq!(names.name(0), None);
    }

    #[test]
    fn an_unnamed_index_still_gets_a_unique_tag() {
        assert_eq!(tag(3, Some("v0")), "v0");
        assert_eq!(tag(42, None), "if:42");
        // A device may be named like an index; the unnamed index never is.
        assert_ne!(tag(42, Some("if42")), tag(42, None));
    }
}
