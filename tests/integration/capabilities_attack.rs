//! Capabilities and paths under attack: what a user of the host can make a privileged acceptq
//! (root, or a file-capability copy) do with a path it is given, and how it starts in a
//! sandbox; and the soak script (tests/bench/soak.sh) stopped as a job runner stops it.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

tests![
    root_does_not_follow_another_users_link_in_a_sticky_shared_folder,
    a_sandbox_refusing_capget_stops_only_a_process_holding_capabilities,
    the_soak_script_stops_at_once_on_sigterm_and_leaves_no_process,
];

/// nobody's uid, as `id -u nobody` says it.
fn nobody_uid() -> u32 {
    let out = Command::new("id").args(["-u", "nobody"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

fn root_does_not_follow_another_users_link_in_a_sticky_shared_folder() {
    let test =
        "capabilities_attack::root_does_not_follow_another_users_link_in_a_sticky_shared_folder";
    if !netns_gate(test) || !nobody_gate(test) {
        return;
    }
    let tmp = TempDir::new("caps-sticky");
    // A root-only file, and a folder like /tmp where nobody plants a link to it at the name
    // root's --output is given.
    let victim = tmp.join("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).unwrap();
    let shared = tmp.join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let planted = shared.join("acceptq.prom");
    std::os::unix::fs::symlink(&victim, &planted).unwrap();
    std::os::unix::fs::lchown(&planted, Some(nobody_uid()), None).unwrap();

    let ns = Netns::new("caps-sticky");
    let write_to = |path: &std::path::Path| {
        ns.cmd(
            acceptq(),
            &["--once", "--no-process", "--format", "prometheus"],
        )
        .arg("--output")
        .arg(path)
        .output()
        .unwrap()
    };
    let out = write_to(&planted);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    note!("{err}");
    assert_eq!(
        std::fs::read_to_string(&victim).unwrap(),
        "precious\n",
        "root replaced the file another user's link points to"
    );
    assert_eq!(out.status.code(), Some(1), "{err}");
    let p = planted.display();
    assert_eq!(
        err.trim_end(),
        format!(
            "E! [acceptq] --output {p}: {p} is a symbolic link of another user (uid {}) in {}, \
             a sticky folder anyone may write: not followed, as the kernel's \
             fs.protected_symlinks refuses",
            nobody_uid(),
            shared.display()
        )
    );
    assert!(planted.is_symlink(), "the link is left as it was");

    // Root's own link there is followed, as the kernel would.
    let own = shared.join("own.prom");
    let real = tmp.join("real.prom");
    std::os::unix::fs::symlink(&real, &own).unwrap();
    let out = write_to(&own);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(std::fs::read_to_string(&real)
        .unwrap()
        .contains("acceptq_netns"));
}

/// Runs the rest of its command line under a seccomp filter that fails `capget` (system call
/// number argv[1]) with EPERM, as some sandboxes do; no_new_privs first, as an unprivileged
/// process must.
const DENY_CAPGET: &str = r#"
import ctypes, os, struct, sys
libc = ctypes.CDLL(None, use_errno=True)
LD_NR, JEQ, RET = 0x20, 0x15, 0x06
code = [struct.pack("HBBI", LD_NR, 0, 0, 0),
        struct.pack("HBBI", JEQ, 0, 1, int(sys.argv[1])),
        struct.pack("HBBI", RET, 0, 0, 0x00050000 | 1),
        struct.pack("HBBI", RET, 0, 0, 0x7fff0000)]
buf = ctypes.create_string_buffer(b"".join(code))
class Prog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
prog = Prog(len(code), ctypes.cast(buf, ctypes.c_void_p))
PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2
assert libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0
assert libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0) == 0
os.execv(sys.argv[2], sys.argv[2:])
"#;

fn a_sandbox_refusing_capget_stops_only_a_process_holding_capabilities() {
    let test =
        "capabilities_attack::a_sandbox_refusing_capget_stops_only_a_process_holding_capabilities";
    let capget = match std::env::consts::ARCH {
        "x86_64" => Some("125"),
        "aarch64" => Some("90"),
        _ => None,
    };
    if !netns_gate(test)
        || !nobody_gate(test)
        || !skip_unless(capget.is_some(), test, "needs capget's number on this arch")
    {
        return;
    }
    let capget = capget.unwrap();
    let tmp = TempDir::new("caps-seccomp");
    let bin = binary_for_nobody(&tmp);
    let ns = Netns::new("caps-seccomp");
    let bin = bin.to_str().unwrap();
    let flags = ["--once", "--no-process", "--format", "json"];

    // nobody holds nothing: nothing to drop, so it reports as it did before it dropped anything.
    let mut cmd = ns.cmd("setpriv", &AS_NOBODY);
    cmd.args([SYSTEM_PYTHON, "-c", DENY_CAPGET, capget, bin])
        .args(flags);
    let out = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "nobody under the sandbox: {err}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("acceptq_netns"),
        "a report: {err}"
    );

    // root holds every capability and cannot tell which: it stops, saying why, with no report.
    let mut cmd = ns.cmd(SYSTEM_PYTHON, &["-c", DENY_CAPGET, capget, bin]);
    cmd.args(flags);
    let out = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "root under the sandbox: {err}");
    assert!(out.stdout.is_empty());
    assert_eq!(
        err.trim_end(),
        "E! [acceptq] cannot read our capabilities (capget): Operation not permitted (os error 1)"
    );
}

/// Every process descending from `pid`, from the parents /proc gives.
fn descendants(pid: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let p: u32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
            let ppid = stat.rsplit_once(')')?.1.split_whitespace().nth(1)?;
            Some((p, ppid.parse().ok()?))
        })
        .collect();
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let parent = out[i];
        out.extend(
            parents
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    out.remove(0);
    out
}

fn the_soak_script_stops_at_once_on_sigterm_and_leaves_no_process() {
    let test =
        "capabilities_attack::the_soak_script_stops_at_once_on_sigterm_and_leaves_no_process";
    if !netns_gate(test)
        || !skip_unless(
            have("unshare") && have("pkill") && have("python3"),
            test,
            "needs unshare, pkill and python3",
        )
    {
        return;
    }
    let mut cmd = Command::new("bash");
    cmd.arg(repo().join("tests/bench/soak.sh"))
        .env("ACCEPTQ", acceptq())
        .env("DURATION", "60s")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut soak = Reaped(cmd.spawn().unwrap());
    let out = Lines::new(soak.0.stdout.take().unwrap());
    // The table's header, then its first row: churn and acceptq are running.
    out.expect(Duration::from_secs(30), "the table's header");
    out.expect(Duration::from_secs(30), "the first sample");
    let inside = descendants(soak.0.id());
    note!("the soak's processes: {inside:?}");
    assert!(
        inside.len() >= 3,
        "unshare, the namespaces' first process, churn, acceptq"
    );

    // As `kill`, `timeout` or a CI runner's cancel stops it: the script alone.
    let asked = Instant::now();
    // SAFETY: kill on our own child's pid.
    unsafe { libc::kill(soak.0.id() as i32, libc::SIGTERM) };
    let ended = wait_for(Duration::from_secs(15), || soak.0.try_wait().unwrap());
    let took = asked.elapsed();
    let alive: Vec<u32> = inside
        .iter()
        .copied()
        .filter(|p| std::path::Path::new(&format!("/proc/{p}")).exists())
        .collect();
    for p in &alive {
        // Left running by a failure: ended here, not left to run out the soak.
        // SAFETY: kill on a pid that descended from our own child.
        unsafe { libc::kill(*p as i32, libc::SIGKILL) };
    }
    let status = ended.unwrap_or_else(|| panic!("the soak still runs {took:?} after SIGTERM"));
    note!("ended in {took:?}: {status:?}");
    assert_eq!(status.code(), Some(2), "stopped, not passed or failed");
    let gone = wait_for(Duration::from_secs(5), || {
        alive
            .iter()
            .all(|p| !std::path::Path::new(&format!("/proc/{p}")).exists())
            .then_some(())
    });
    assert!(
        alive.is_empty() && gone.is_some(),
        "left running: {alive:?}"
    );
}
