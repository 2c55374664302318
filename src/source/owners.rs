//! Socket inode → owning process, from the `socket:[inode]` links in `/proc/<pid>/fd`.
//!
//! Walking every process's fds is the most expensive thing acceptq does (≈ 200 ms with 42 k
//! socket fds), so results are cached by inode and `/proc` is walked again only when a listener
//! appears whose inode was never looked up, or whose cached owner no longer holds it. The cache
//! holds only inodes still listening.

use std::collections::{HashMap, HashSet};

use procfs::process::FDTarget;
use procfs::ProcError;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub pid: i32,
    /// `comm`: the kernel's 15-byte process name.
    pub comm: String,
    /// The systemd unit (`nginx.service`) or scope (a container's `docker-….scope`) the process
    /// runs in, from its cgroup: what tells two `python3` listeners apart.
    pub unit: Option<String>,
    /// The fd through which `pid` held the socket when it was found: one `readlink` of it tells
    /// whether the process still holds the socket before the cached owner is trusted again.
    pub fd: i32,
}

/// What one walk of `/proc` found for the inodes asked about.
#[derive(Debug, Default)]
pub struct Scan {
    pub found: HashMap<u32, Owner>,
    /// Processes whose fd directory we may not read (other users', without capabilities).
    pub denied: usize,
}

#[derive(Default)]
pub struct OwnerCache {
    /// `None`: looked up and not found (kept so it is not looked up again every report).
    known: HashMap<u32, Option<Owner>>,
}

impl OwnerCache {
    /// Resolves `inodes`, calling `scan` (at most once) for those never looked up before or
    /// whose cached owner no longer holds them, and forgets inodes no longer listening.
    /// Returns how many processes could not be read during the scan, if one ran.
    pub fn refresh(
        &mut self,
        inodes: &[u32],
        scan: impl FnOnce(&HashSet<u32>) -> Scan,
    ) -> Option<usize> {
        let mut comms: HashMap<i32, Option<String>> = HashMap::new();
        let still_owner = |inode: u32, o: &Owner| {
            let same_name = comms
                .entry(o.pid)
                .or_insert_with(|| current_comm(o.pid))
                .as_deref()
                == Some(o.comm.as_str());
            same_name && holds(o.pid, o.fd, inode)
        };
        self.refresh_with(inodes, still_owner, scan)
    }

    /// [`refresh`](Self::refresh) with `still_owner(inode, owner)`: whether the cached owner of
    /// `inode` still holds it under the same name. Asked once per cached owner per call.
    pub fn refresh_with(
        &mut self,
        inodes: &[u32],
        mut still_owner: impl FnMut(u32, &Owner) -> bool,
        scan: impl FnOnce(&HashSet<u32>) -> Scan,
    ) -> Option<usize> {
        let live: HashSet<u32> = inodes.iter().copied().filter(|i| *i != 0).collect();
        // An owner found earlier may have let go: a daemon's parent that bound the socket and
        // exited, a supervisor that forked a worker and closed its own fd, a process that exec'd
        // another program. It is kept only while it still holds the socket under that name;
        // otherwise the inode is looked up again and the holder now is named.
        self.known.retain(|inode, owner| {
            live.contains(inode)
                && match owner {
                    None => true,
                    Some(o) => still_owner(*inode, o),
                }
        });
        let wanted: HashSet<u32> = live
            .iter()
            .copied()
            .filter(|i| !self.known.contains_key(i))
            .collect();
        if wanted.is_empty() {
            return None;
        }
        let mut result = scan(&wanted);
        for inode in wanted {
            self.known.insert(inode, result.found.remove(&inode));
        }
        Some(result.denied)
    }

    pub fn get(&self, inode: u32) -> Option<&Owner> {
        self.known.get(&inode).and_then(|o| o.as_ref())
    }

    /// The owner to name for a row of several sockets (an SO_REUSEPORT group): the same choice
    /// as among the holders of one socket.
    pub fn owner_of(&self, inodes: impl Iterator<Item = u32>) -> Option<&Owner> {
        inodes
            .filter_map(|i| self.get(i))
            .reduce(|a, b| if preferred(a.pid, b.pid) { a } else { b })
    }

    /// Inodes remembered (found or not).
    #[cfg(test)]
    pub fn remembered(&self) -> usize {
        self.known.len()
    }
}

/// The comm of `pid` if it is running (zombies hold no fds).
fn current_comm(pid: i32) -> Option<String> {
    let stat = procfs::process::Process::new(pid).ok()?.stat().ok()?;
    if stat.state == 'Z' {
        return None;
    }
    read_comm(pid)
}

/// The process name of `pid`, from the raw bytes of `/proc/<pid>/comm` (procfs decodes them
/// lossily), as [`comm_text`] writes it.
fn read_comm(pid: i32) -> Option<String> {
    let mut bytes = std::fs::read(format!("/proc/{pid}/comm")).ok()?;
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
    }
    Some(comm_text(&bytes))
}

/// A process name as text, losslessly: `prctl(PR_SET_NAME)` takes any bytes, so a byte that is
/// not UTF-8 is written `\xHH`, and a `\` that would itself read as such an escape (followed by
/// `x` and two hex digits) is written `\x5c`. Every other name, `\` included, is kept as it is;
/// two different names never give one text (reading `\xHH` back as the byte HH undoes it).
pub fn comm_text(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        let valid = chunk.valid();
        for (i, c) in valid.char_indices() {
            let rest = &valid.as_bytes()[i + c.len_utf8()..];
            let looks_escaped = c == '\\'
                && rest.len() >= 3
                && rest[0] == b'x'
                && rest[1].is_ascii_hexdigit()
                && rest[2].is_ascii_hexdigit();
            if looks_escaped {
                out.push_str("\\x5c");
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// Whether fd `fd` of `pid` is still the socket `inode`: one `readlink`, no walk. A closed fd,
/// a reused fd number or a gone process all say no.
fn holds(pid: i32, fd: i32, inode: u32) -> bool {
    crate::caps::with(crate::caps::PROC, || {
        std::fs::read_link(format!("/proc/{pid}/fd/{fd}"))
    })
    .is_ok_and(|target| is_socket_link(target.as_os_str().as_encoded_bytes(), inode))
}

/// `socket:[inode]`, the text of an fd link to a socket.
fn is_socket_link(target: &[u8], inode: u32) -> bool {
    target
        .strip_prefix(b"socket:[")
        .and_then(|rest| rest.strip_suffix(b"]"))
        .is_some_and(|n| n == inode.to_string().as_bytes())
}

/// Walks `/proc` for the owners of `wanted`. When several processes share a socket (a forking
/// server's master and workers), the lowest pid wins: usually the master, and stable. pid 1
/// loses to any other holder: with socket activation systemd keeps the listening fd too, and the
/// service is what the operator is looking for. Other users' fds are read with
/// [`caps::PROC`](crate::caps::PROC) raised.
pub fn scan_proc(wanted: &HashSet<u32>) -> Scan {
    crate::caps::with(crate::caps::PROC, || scan_proc_now(wanted))
}

fn scan_proc_now(wanted: &HashSet<u32>) -> Scan {
    let mut scan = Scan::default();
    let Ok(procs) = procfs::process::all_processes() else {
        return scan;
    };
    for proc in procs {
        let Ok(proc) = proc else { continue };
        let fds = match proc.fd() {
            Ok(fds) => fds,
            Err(ProcError::PermissionDenied(_)) => {
                scan.denied += 1;
                continue;
            }
            Err(_) => continue, // gone meanwhile: an expected race
        };
        let mut found: Option<(String, Option<String>)> = None;
        for fd in fds.flatten() {
            let FDTarget::Socket(inode) = fd.target else {
                continue;
            };
            let Ok(inode) = u32::try_from(inode) else {
                continue;
            };
            if !wanted.contains(&inode) {
                continue;
            }
            if scan
                .found
                .get(&inode)
                .is_some_and(|o| preferred(o.pid, proc.pid()))
            {
                continue;
            }
            let (comm, unit) = found
                .get_or_insert_with(|| {
                    let comm = read_comm(proc.pid()).unwrap_or_default();
                    let cgroup = std::fs::read_to_string(format!("/proc/{}/cgroup", proc.pid()));
                    (comm, cgroup.ok().and_then(|c| unit_from_cgroup(&c)))
                })
                .clone();
            scan.found.insert(
                inode,
                Owner {
                    pid: proc.pid(),
                    comm,
                    unit,
                    fd: fd.fd,
                },
            );
        }
    }
    scan
}

/// True when an owner with pid `have` is to be kept over one with pid `other`.
fn preferred(have: i32, other: i32) -> bool {
    (have == 1, have) <= (other == 1, other)
}

/// The innermost systemd unit or scope in `/proc/<pid>/cgroup`: the unified (v2) hierarchy's
/// path, else the v1 `name=systemd` one. `None` outside any unit (the root cgroup).
pub fn unit_from_cgroup(text: &str) -> Option<String> {
    let path_of = |prefix: &str| {
        text.lines()
            .find_map(|l| l.split_once(':').and_then(|(_, r)| r.strip_prefix(prefix)))
    };
    let path = path_of(":")
        .filter(|p| *p != "/")
        .or_else(|| path_of("name=systemd:"))?;
    path.rsplit('/')
        .find(|c| c.ends_with(".service") || c.ends_with(".scope"))
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads `\xHH` back as the byte HH, everything else as it is: the inverse of comm_text.
    pub(super) fn comm_bytes(text: &str) -> Vec<u8> {
        let b = text.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            let hex = b
                .get(i + 2..i + 4)
                .and_then(|h| std::str::from_utf8(h).ok());
            match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                Some(byte) if b[i] == b'\\' && b[i + 1] == b'x' => {
                    out.push(byte);
                    i += 4;
                }
                _ => {
                    out.push(b[i]);
                    i += 1;
                }
            }
        }
        out
    }

    #[test]
    fn process_names_are_written_losslessly_and_never_meet() {
        assert_eq!(comm_text(b"nginx"), "nginx");
        assert_eq!(comm_text(b"trail\\"), "trail\\", "a lone backslash stays");
        assert_eq!(comm_text(b"kworker/0:1"), "kworker/0:1");
        assert_eq!(comm_text(b"bad\x88\xffn"), "bad\\x88\\xffn");
        assert_eq!(comm_text(b"bad\\x88n"), "bad\\x5cx88n");
        // Every name of a small alphabet rich in the troublesome bytes, up to 4 bytes: the text
        // reads back to the same bytes, so no two names share one.
        let alphabet = [b'\\', b'x', b'a', b'8', 0xff, 0xc3, 0xa9];
        let mut names: Vec<Vec<u8>> = vec![Vec::new()];
        for _ in 0..4 {
            let longer: Vec<Vec<u8>> = names
                .iter()
                .filter(|n| n.len() == names.last().unwrap().len())
                .flat_map(|n| {
                    alphabet.iter().map(move |c| {
                        let mut m = n.clone();
                        m.push(*c);
                        m
                    })
                })
                .collect();
            names.extend(longer);
        }
        let mut seen = std::collections::HashSet::new();
        for name in &names {
            let text = comm_text(name);
            assert_eq!(&comm_bytes(&text), name, "{text:?}");
            assert!(seen.insert(text));
        }
    }

    fn owner(pid: i32) -> Owner {
        Owner {
            pid,
            comm: format!("p{pid}"),
            unit: None,
            fd: 3,
        }
    }

    #[test]
    fn lowest_pid_wins_but_pid_1_only_alone() {
        assert!(preferred(10, 20));
        assert!(!preferred(20, 10));
        assert!(
            !preferred(1, 20),
            "a socket-activated service beats systemd"
        );
        assert!(preferred(20, 1));
        assert!(preferred(1, 1));
    }

    #[test]
    fn unit_comes_from_the_innermost_service_or_scope() {
        // cgroup v2, as systemd lays it out.
        assert_eq!(
            unit_from_cgroup("0::/system.slice/nginx.service\n").as_deref(),
            Some("nginx.service")
        );
        assert_eq!(
            unit_from_cgroup("0::/system.slice/docker-0123abcd.scope/init\n").as_deref(),
            Some("docker-0123abcd.scope")
        );
        // Hybrid v1/v2 with everything in the root of v2: the v1 name=systemd line has it.
        let hybrid =
            "12:memory:/system.slice/cron.service\n1:name=systemd:/system.slice/cron.service\n0::/\n";
        assert_eq!(unit_from_cgroup(hybrid).as_deref(), Some("cron.service"));
        // Not in any unit.
        assert_eq!(unit_from_cgroup("0::/\n"), None);
        assert_eq!(unit_from_cgroup("9:name=systemd:/\n0::/\n"), None);
        assert_eq!(unit_from_cgroup("0::/user.slice\n"), None);
        assert_eq!(unit_from_cgroup(""), None);
    }

    #[test]
    fn scans_only_for_new_inodes_and_forgets_gone_ones() {
        let mut cache = OwnerCache::default();
        let mut calls = Vec::new();
        let running = |_: u32, _: &Owner| true;
        let denied = cache.refresh_with(&[10, 11], running, |w| {
            calls.push(w.clone());
            Scan {
                found: HashMap::from([(10, owner(1))]),
                denied: 2,
            }
        });
        assert_eq!(denied, Some(2));
        assert_eq!(cache.get(10), Some(&owner(1)));
        assert_eq!(cache.get(11), None);
        // Same inodes: no scan, even for the one not found.
        assert_eq!(
            cache.refresh_with(&[10, 11], running, |_| panic!("rescanned")),
            None
        );
        // A new inode scans for it alone; a vanished one is forgotten.
        cache.refresh_with(&[10, 12], running, |w| {
            calls.push(w.clone());
            Scan {
                found: HashMap::from([(12, owner(3))]),
                denied: 0,
            }
        });
        assert_eq!(calls[1], HashSet::from([12]));
        assert_eq!(cache.remembered(), 2);
        assert_eq!(cache.get(12), Some(&owner(3)));
    }

    #[test]
    fn an_owner_that_exited_or_was_renamed_is_looked_up_again() {
        let mut cache = OwnerCache::default();
        let running = |_: u32, _: &Owner| true;
        cache.refresh_with(&[10, 11], running, |_| Scan {
            found: HashMap::from([(10, owner(1)), (11, owner(2))]),
            denied: 0,
        });
        // pid 1 exited (its child, pid 5, still holds inode 10); pid 2 runs on.
        let mut asked = Vec::new();
        cache.refresh_with(
            &[10, 11],
            |_, o| o.pid != 1,
            |w| {
                asked.push(w.clone());
                Scan {
                    found: HashMap::from([(10, owner(5))]),
                    denied: 0,
                }
            },
        );
        assert_eq!(asked, vec![HashSet::from([10])]);
        assert_eq!(cache.get(10), Some(&owner(5)));
        assert_eq!(cache.get(11), Some(&owner(2)));
        // pid 2 exec'd another program, or closed its fd: it holds inode 11 no more.
        cache.refresh_with(
            &[10, 11],
            |inode, _| inode != 11,
            |w| {
                assert_eq!(w, &HashSet::from([11]));
                Scan::default()
            },
        );
        assert_eq!(cache.get(11), None);
    }

    #[test]
    fn a_supervisor_that_closed_its_fd_gives_way_to_the_worker_holding_the_socket() {
        let mut cache = OwnerCache::default();
        // The supervisor (pid 100) bound the socket and forked a worker (pid 200): the lowest
        // pid is named.
        cache.refresh_with(
            &[10],
            |_, _| true,
            |_| Scan {
                found: HashMap::from([(10, owner(100))]),
                denied: 0,
            },
        );
        assert_eq!(cache.get(10).map(|o| o.pid), Some(100));
        // The supervisor closed its fd and lives on, under the same name: only its fd says so.
        let fds: HashMap<i32, Vec<u32>> = HashMap::from([(100, vec![]), (200, vec![10])]);
        let mut rescans = 0;
        cache.refresh_with(
            &[10],
            |inode, o| fds[&o.pid].contains(&inode),
            |w| {
                rescans += 1;
                assert_eq!(w, &HashSet::from([10]));
                Scan {
                    found: HashMap::from([(10, owner(200))]),
                    denied: 0,
                }
            },
        );
        assert_eq!(rescans, 1);
        assert_eq!(cache.get(10).map(|o| o.pid), Some(200));
        // The worker still holds it: trusted without a walk.
        cache.refresh_with(
            &[10],
            |inode, o| fds[&o.pid].contains(&inode),
            |_| panic!("rescanned"),
        );
    }

    #[test]
    fn the_fd_check_reads_the_link_of_this_process() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&listener);
        let pid = std::process::id() as i32;
        let inode = own_inode(fd);
        assert!(holds(pid, fd, inode));
        assert!(!holds(pid, fd, inode + 1), "another socket");
        drop(listener);
        assert!(!holds(pid, fd, inode), "closed");
        assert!(is_socket_link(b"socket:[42]", 42));
        assert!(!is_socket_link(b"socket:[421]", 42));
        assert!(!is_socket_link(b"pipe:[42]", 42));
    }

    fn own_inode(fd: i32) -> u32 {
        std::fs::read_link(format!("/proc/self/fd/{fd}"))
            .unwrap()
            .to_string_lossy()
            .trim_start_matches("socket:[")
            .trim_end_matches(']')
            .parse::<u32>()
            .unwrap()
    }

    #[test]
    fn inode_zero_is_never_looked_up() {
        let mut cache = OwnerCache::default();
        assert_eq!(
            cache.refresh(&[0, 0], |_| panic!("scanned for inode 0")),
            None
        );
    }

    #[test]
    fn finds_a_socket_of_this_process() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&listener);
        let inode = own_inode(fd);
        let scan = scan_proc(&HashSet::from([inode]));
        let found = scan.found.get(&inode).expect("own socket found");
        assert_eq!(found.pid, std::process::id() as i32);
        assert_eq!(found.fd, fd, "where it was found, for the cheap re-check");
    }
}

#[cfg(test)]
mod prop {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(crate::prop_config(512))]

        #[test]
        fn any_process_name_reads_back_as_its_bytes(bytes in proptest::collection::vec(prop_oneof![any::<u8>(), Just(b'\\'), Just(b'x'), Just(b'a')], 0..16)) {
            prop_assert_eq!(super::tests::comm_bytes(&comm_text(&bytes)), bytes);
        }

        #[test]
        fn a_unit_is_a_service_or_scope_named_in_the_text(text in "([0-9]{1,2}:(name=systemd)?:|/|[a-z@.-]{1,10}|\\.service|\\.scope|\n){0,12}") {
            if let Some(unit) = unit_from_cgroup(&text) {
                prop_assert!(unit.ends_with(".service") || unit.ends_with(".scope"));
                prop_assert!(!unit.contains('/') && text.contains(&unit));
            }
        }

        #[test]
        fn a_unit_path_gives_its_innermost_unit(slices in proptest::collection::vec("[a-z]{1,8}\\.slice", 0..3), unit in "[a-z][a-z0-9@-]{0,12}\\.(service|scope)", below in proptest::collection::vec("[a-z]{1,8}", 0..2)) {
            let path = format!("/{}/{unit}/{}", slices.join("/"), below.join("/"));
            prop_assert_eq!(unit_from_cgroup(&format!("0::{path}\n")), Some(unit.clone()));
            prop_assert_eq!(unit_from_cgroup(&format!("1:name=systemd:{path}\n0::/\n")), Some(unit));
        }
    }
}
