//! The machine the tests run on: the binary under test, privileges and programs, the gates.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::harness::skip_unless;
use super::tempdir::TempDir;

/// Held by a test while it floods: SYN floods run one at a time, as each measures times that a
/// second flood on the same few CPUs would stretch.
pub static FLOOD: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Takes [`FLOOD`], whatever a failed holder left it in.
pub fn one_flood_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    FLOOD.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn acceptq() -> &'static str {
    env!("CARGO_BIN_EXE_acceptq")
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

pub fn have(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
        .unwrap_or(false)
        || Path::new(program).is_file()
}

/// Gate for tests that make a network namespace: root, `ip`, `python3` and `ss`. Returns true or
/// ends the test as ignored (see [`skip_unless`]).
#[track_caller]
pub fn netns_gate(test: &str) -> bool {
    skip_unless(is_root(), test, "needs root to create a network namespace")
        && skip_unless(have("ip"), test, "needs `ip` (iproute2)")
        && skip_unless(have("python3"), test, "needs python3 for the test driver")
        && skip_unless(
            have("ss"),
            test,
            "needs `ss` (iproute2) as the kernel's word to compare with",
        )
}

/// A python3 that `nobody` may run (pyenv's shims live under /root).
pub const SYSTEM_PYTHON: &str = "/usr/bin/python3";

/// Gate for tests that run processes as `nobody`: setpriv, the system python3, the nobody user
/// and the nogroup group.
#[track_caller]
pub fn nobody_gate(test: &str) -> bool {
    let known = |db: &str, name: &str| {
        Command::new("getent")
            .args([db, name])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    skip_unless(
        have("setpriv")
            && have(SYSTEM_PYTHON)
            && known("passwd", "nobody")
            && known("group", "nogroup"),
        test,
        "needs setpriv (util-linux), /usr/bin/python3, the nobody user and nogroup group",
    )
}

/// `setpriv` arguments that run the rest of a command line as nobody:nogroup.
pub const AS_NOBODY: [&str; 3] = ["--reuid=nobody", "--regid=nogroup", "--clear-groups"];

/// The acceptq binary as a path `nobody` can execute: the build's own when every directory on
/// the way is searchable by others, else a mode-755 copy in `tmp` (the build tree may be under
/// a private home).
pub fn binary_for_nobody(tmp: &TempDir) -> PathBuf {
    let bin = Path::new(acceptq());
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode();
    let reachable = bin.ancestors().skip(1).all(|d| mode(d) & 0o001 != 0);
    if reachable && mode(bin) & 0o005 == 0o005 {
        return bin.to_path_buf();
    }
    let copy = tmp.join("acceptq");
    std::fs::copy(bin, &copy).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
    copy
}

/// A snippet of `conf/`, as the README quotes it and the agents' tests run it.
pub fn conf(name: &str) -> String {
    let path = repo().join("conf").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The name a process runs under (`/proc/<pid>/comm`).
pub fn comm_of(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap()
        .trim_end()
        .to_string()
}
