//! Capabilities kept to what the flags use, and held in the effective set only around the calls
//! that need them.
//!
//! acceptq may run with file capabilities (acceptq-setcap) or ambient ones (a systemd unit), or
//! as root. At start [`limit`] keeps in the permitted set only the capabilities the chosen flags
//! use and empties the inheritable and ambient sets; the effective set is then left without the
//! privileged ones, which [`raise`] adds on the calling thread (capabilities are per thread)
//! only around a `setns` or a read of another process's `/proc/<pid>` entries. A path the user
//! named (`--output`, `--netns PATH`) is therefore opened with the user's own rights: none of
//! the privileged capabilities when they came from a file capability (the kernel's AT_SECURE),
//! so a capability never answers for a file its user could not read or write; the caller's own
//! file-access capabilities otherwise (root, or a unit's ambient set), so `sudo acceptq
//! --output` still writes where root may.
//!
//! The bounding set is left as it is: lowering it needs CAP_SETPCAP, which a file-capability
//! binary does not hold, and it only limits what a later `execve` may gain. acceptq never
//! executes a program, and `PR_SET_NO_NEW_PRIVS` makes any `execve` unable to gain a
//! capability (even root's: the new permitted set stays within ours), with no privilege needed.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::cli::Selection;

/// Capability numbers (linux/capability.h).
pub const DAC_OVERRIDE: u32 = 1;
pub const DAC_READ_SEARCH: u32 = 2;
pub const FOWNER: u32 = 3;
pub const SYS_PTRACE: u32 = 19;
pub const SYS_ADMIN: u32 = 21;

pub const fn bit(cap: u32) -> u64 {
    1 << cap
}

/// Joining another network or UTS namespace (`setns`).
pub const JOIN: u64 = bit(SYS_ADMIN);
/// Reading another user's `/proc/<pid>/fd` (a 0500 directory: DAC_READ_SEARCH) and its links
/// and `/proc/<pid>/ns/*` (guarded like ptrace: SYS_PTRACE).
pub const PROC: u64 = bit(SYS_PTRACE) | bit(DAC_READ_SEARCH);

/// The three sets of a thread, one bit per capability.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sets {
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
}

/// What the flags use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Needs {
    /// `--netns`: join the namespaces given.
    pub netns: bool,
    /// `--all-netns`: find every namespace (other users' `/proc/<pid>/ns/net`, bind mounts in
    /// private folders) and join them, and pods' UTS namespaces.
    pub all_netns: bool,
    /// Name the process of each listener (not `--no-process`).
    pub owners: bool,
    /// `--output`: a file the user named is written.
    pub output: bool,
}

impl Needs {
    pub fn of(select: &Selection, output: bool) -> Needs {
        Needs {
            netns: !select.netns.is_empty(),
            all_netns: select.all_netns,
            owners: !select.no_process,
            output,
        }
    }

    /// Raised around the calls that need them, never while a user's path is opened.
    fn privileged(&self) -> u64 {
        let mut caps = 0;
        if self.netns || self.all_netns {
            caps |= JOIN;
        }
        if self.owners || self.all_netns {
            caps |= PROC;
        }
        caps
    }

    /// The file-access capabilities of a caller who holds them as their own (root), which its
    /// paths are opened with: writing `--output` in another user's folder, and opening
    /// `--netns /proc/PID/ns/net` of another user's process.
    fn own_rights(&self) -> u64 {
        let mut caps = 0;
        if self.output {
            caps |= bit(DAC_OVERRIDE) | bit(DAC_READ_SEARCH) | bit(FOWNER);
        }
        if self.netns {
            caps |= bit(DAC_OVERRIDE) | bit(DAC_READ_SEARCH) | bit(SYS_PTRACE);
        }
        caps
    }
}

/// The sets to run with, and the capabilities [`raise`] may add to the effective set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    pub sets: Sets,
    pub raisable: u64,
}

/// The plan for a process that started with `start`. `elevated`: the capabilities came with
/// the executable (a file capability, the kernel's AT_SECURE), not from the user who ran it,
/// so none of them is the user's own.
pub fn plan(start: Sets, needs: &Needs, elevated: bool) -> Plan {
    let own = if elevated { 0 } else { needs.own_rights() };
    let permitted = start.permitted & (needs.privileged() | own);
    let effective = permitted & own;
    Plan {
        sets: Sets {
            effective,
            permitted,
            inheritable: 0,
        },
        raisable: permitted & !effective,
    }
}

/// What [`raise`] may add; 0 until [`limit`] ran (tests, and the library used alone).
static RAISABLE: AtomicU64 = AtomicU64::new(0);

/// Keeps only the capabilities `needs` uses (see the module's comment). Call it before any
/// thread is started: the other threads' sets are their own and would keep the rest.
pub fn limit(needs: &Needs) -> Result<(), String> {
    let start = match get() {
        Ok(sets) => sets,
        // A sandbox's seccomp filter may refuse capget: the kernel's word is then read from
        // /proc. Holding nothing, there is nothing to drop, and acceptq runs as any program
        // would; holding something it cannot see to drop, it stops.
        Err(e) => match std::fs::read_to_string("/proc/thread-self/status")
            .ok()
            .and_then(|s| sets_in_status(&s))
        {
            Some(sets) if sets == Sets::default() => sets,
            _ => return Err(format!("cannot read our capabilities (capget): {e}")),
        },
    };
    let holding = start != Sets::default();
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 && holding {
        return Err(format!(
            "cannot set no_new_privs: {}",
            io::Error::last_os_error()
        ));
    }
    // SAFETY: getauxval has no preconditions.
    let elevated = unsafe { libc::getauxval(libc::AT_SECURE) } != 0;
    let plan = plan(start, needs, elevated);
    // Before the inheritable set shrinks, which would drop them anyway; EINVAL before 4.3,
    // which has no ambient set.
    // SAFETY: prctl with integer arguments only.
    let cleared = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        )
    };
    // The ambient set lies within the permitted one: nothing to clear when that is empty.
    if cleared != 0
        && start.permitted != 0
        && io::Error::last_os_error().raw_os_error() != Some(libc::EINVAL)
    {
        return Err(format!(
            "cannot clear the ambient capabilities: {}",
            io::Error::last_os_error()
        ));
    }
    if plan.sets != start {
        set(plan.sets).map_err(|e| format!("cannot drop capabilities (capset): {e}"))?;
    }
    if plan.sets.permitted != 0 {
        // A dumpable process may be traced, and dumped to a core file, by its user: holding
        // capabilities, it must not be, whatever fs.suid_dumpable says (an ambient set gives no
        // AT_SECURE, so the kernel leaves it dumpable).
        // SAFETY: prctl with integer arguments only.
        if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
            return Err(format!(
                "cannot make the process non-dumpable: {}",
                io::Error::last_os_error()
            ));
        }
    }
    RAISABLE.store(plan.raisable, Ordering::Relaxed);
    Ok(())
}

/// The thread's sets from a `/proc/<pid>/status` text (`CapInh:`, `CapPrm:`, `CapEff:`).
fn sets_in_status(status: &str) -> Option<Sets> {
    let field = |name: &str| {
        let hex = status.lines().find_map(|l| l.strip_prefix(name))?;
        u64::from_str_radix(hex.trim(), 16).ok()
    };
    Some(Sets {
        effective: field("CapEff:")?,
        permitted: field("CapPrm:")?,
        inheritable: field("CapInh:")?,
    })
}

/// Whether `cap` is held (in the permitted set: raised when it is used).
pub fn held(cap: u32) -> bool {
    get().is_ok_and(|s| s.permitted & bit(cap) != 0)
}

/// Capabilities added to this thread's effective set until it is dropped.
#[must_use]
pub struct Raised {
    before: Option<Sets>,
}

/// Adds `caps` (those kept) to the calling thread's effective set until the guard is dropped.
/// Costs no system call when none of them is to be raised (before [`limit`], or for root).
pub fn raise(caps: u64) -> Raised {
    let caps = caps & RAISABLE.load(Ordering::Relaxed);
    if caps == 0 {
        return Raised { before: None };
    }
    let Ok(now) = get() else {
        return Raised { before: None };
    };
    if now.effective & caps == caps {
        return Raised { before: None };
    }
    let raised = Sets {
        effective: now.effective | (caps & now.permitted),
        ..now
    };
    // A failure leaves the call to fail with EPERM and be reported as a missing capability.
    let ok = set(raised).is_ok();
    Raised {
        before: ok.then_some(now),
    }
}

impl Drop for Raised {
    fn drop(&mut self) {
        if let Some(before) = self.before {
            // Lowering the effective set within the permitted one cannot fail.
            let _ = set(before);
        }
    }
}

/// Runs `f` with `caps` raised (see [`raise`]).
pub fn with<T>(caps: u64, f: impl FnOnce() -> T) -> T {
    let _raised = raise(caps);
    f()
}

const VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct Header {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Data {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// The calling thread's sets.
pub fn get() -> io::Result<Sets> {
    let mut header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: capget writes two Data (version 3) through valid pointers to our locals.
    let rc = unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let join = |lo: u32, hi: u32| u64::from(lo) | u64::from(hi) << 32;
    Ok(Sets {
        effective: join(data[0].effective, data[1].effective),
        permitted: join(data[0].permitted, data[1].permitted),
        inheritable: join(data[0].inheritable, data[1].inheritable),
    })
}

/// Sets the calling thread's sets.
fn set(sets: Sets) -> io::Result<()> {
    let mut header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let split = |v: u64| (v as u32, (v >> 32) as u32);
    let (e0, e1) = split(sets.effective);
    let (p0, p1) = split(sets.permitted);
    let (i0, i1) = split(sets.inheritable);
    let data = [
        Data {
            effective: e0,
            permitted: p0,
            inheritable: i0,
        },
        Data {
            effective: e1,
            permitted: p1,
            inheritable: i1,
        },
    ];
    // SAFETY: capset reads two Data (version 3) through valid pointers to our locals.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What root starts with on a kernel with 41 capabilities.
    const ROOT: Sets = Sets {
        effective: (1 << 41) - 1,
        permitted: (1 << 41) - 1,
        inheritable: 0,
    };
    /// A binary given cap_sys_admin,cap_sys_ptrace,cap_dac_read_search+ep.
    const FILE_CAPS: Sets = Sets {
        effective: JOIN | PROC,
        permitted: JOIN | PROC,
        inheritable: 0,
    };

    fn needs(netns: bool, all_netns: bool, owners: bool, output: bool) -> Needs {
        Needs {
            netns,
            all_netns,
            owners,
            output,
        }
    }

    #[test]
    fn a_file_capability_is_never_in_effect_outside_the_calls_that_need_it() {
        let p = plan(FILE_CAPS, &needs(true, false, true, true), true);
        assert_eq!(p.sets.permitted, JOIN | PROC);
        assert_eq!(
            p.sets.effective, 0,
            "paths the user named open without them"
        );
        assert_eq!(p.raisable, JOIN | PROC);
    }

    #[test]
    fn only_what_the_flags_use_is_kept() {
        let none = plan(FILE_CAPS, &needs(false, false, false, false), true);
        assert_eq!(none.sets, Sets::default());
        assert_eq!(none.raisable, 0);
        let owners = plan(FILE_CAPS, &needs(false, false, true, false), true);
        assert_eq!(
            owners.sets.permitted, PROC,
            "no CAP_SYS_ADMIN without --netns"
        );
        let netns = plan(FILE_CAPS, &needs(true, false, false, false), true);
        assert_eq!(
            netns.sets.permitted, JOIN,
            "--no-process: no ptrace nor read-search"
        );
        let all = plan(FILE_CAPS, &needs(false, true, false, false), true);
        assert_eq!(
            all.sets.permitted,
            JOIN | PROC,
            "--all-netns reads /proc/<pid>/ns"
        );
    }

    #[test]
    fn nothing_is_gained_that_was_not_held() {
        let ambient = Sets {
            effective: bit(SYS_PTRACE),
            permitted: bit(SYS_PTRACE),
            inheritable: bit(SYS_PTRACE),
        };
        let p = plan(ambient, &needs(true, true, true, true), false);
        assert_eq!(p.sets.permitted, bit(SYS_PTRACE));
        assert_eq!(p.sets.inheritable, 0);
    }

    #[test]
    fn root_keeps_its_own_file_rights_for_the_paths_it_names_and_nothing_else() {
        let once = plan(ROOT, &needs(false, false, false, false), false);
        assert_eq!(
            once.sets,
            Sets::default(),
            "--once --no-process needs nothing"
        );
        let out = plan(ROOT, &needs(false, false, false, true), false);
        assert_eq!(
            out.sets.effective,
            bit(DAC_OVERRIDE) | bit(DAC_READ_SEARCH) | bit(FOWNER)
        );
        assert_eq!(out.sets.permitted, out.sets.effective);
        let owners = plan(ROOT, &needs(false, false, true, true), false);
        assert_eq!(owners.sets.effective & bit(SYS_PTRACE), 0);
        assert_eq!(owners.raisable, bit(SYS_PTRACE));
        let netns = plan(ROOT, &needs(true, false, false, false), false);
        assert_eq!(
            netns.sets.effective,
            bit(DAC_OVERRIDE) | bit(DAC_READ_SEARCH) | bit(SYS_PTRACE),
            "--netns /proc/PID/ns/net of another user's process"
        );
        assert_eq!(netns.raisable, JOIN);
    }

    #[test]
    fn the_sets_are_read_from_a_status_text() {
        let status = "Name:\tacceptq\nCapInh:\t0000000000000000\nCapPrm:\t0000000000280004\n\
                      CapEff:\t0000000000080000\nCapBnd:\t000001ffffffffff\n";
        assert_eq!(
            sets_in_status(status),
            Some(Sets {
                effective: bit(SYS_PTRACE),
                permitted: JOIN | PROC,
                inheritable: 0,
            })
        );
        assert_eq!(
            sets_in_status("CapInh:\t0\nCapPrm:\tzz\nCapEff:\t0\n"),
            None
        );
        assert_eq!(sets_in_status(""), None, "unknown is not empty");
    }

    #[test]
    fn the_sets_read_back_as_the_kernel_keeps_them() {
        let now = get().unwrap();
        assert_eq!(now.effective & !now.permitted, 0);
        let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
        let field = |name: &str| {
            let hex = status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .unwrap()
                .trim();
            u64::from_str_radix(hex, 16).unwrap()
        };
        assert_eq!(now.effective, field("CapEff:"));
        assert_eq!(now.permitted, field("CapPrm:"));
        assert_eq!(now.inheritable, field("CapInh:"));
    }
}
