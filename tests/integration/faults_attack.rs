//! Faults as hosts and operators make them, beyond the planned ones: a reader that stops
//! reading while acceptq is asked to stop.

use std::os::fd::{FromRawFd, OwnedFd};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::*;

tests![sigterm_while_the_stdout_reader_stalls_ends_the_run_at_once_with_status_0,];

/// A pipe whose buffer holds one page: a few reports fill it.
fn small_pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the two-element array; each fd is then owned once.
    unsafe {
        assert_eq!(libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC), 0);
        assert!(libc::fcntl(fds[1], libc::F_SETPIPE_SZ, 4096) >= 4096);
        (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1]))
    }
}

/// Where the kernel has `pid` sleeping (`pipe_write` when a write waits for the reader).
fn wchan(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default()
}

/// A consumer that stopped reading (a wedged agent): acceptq's write waits for it. SIGTERM and
/// SIGINT must still end the run, quietly and with status 0, not leave it waiting for a reader
/// that may never come back until systemd kills it.
fn sigterm_while_the_stdout_reader_stalls_ends_the_run_at_once_with_status_0() {
    let test =
        "faults_attack::sigterm_while_the_stdout_reader_stalls_ends_the_run_at_once_with_status_0";
    if !netns_gate(test) {
        return;
    }
    let ns = Netns::new("stall");
    let mut d = ns.driver();
    for _ in 0..8 {
        d.listen("127.0.0.1", 0, 16, false);
    }
    let tmp = TempDir::new("stall");
    for signal in [libc::SIGTERM, libc::SIGINT] {
        let (read_end, write_end) = small_pipe();
        let mut child = Reaped(
            ns.cmd(acceptq(), &["--interval", "100ms", "--format", "json"])
                .stdin(Stdio::null())
                .stdout(Stdio::from(write_end))
                .stderr(tmp.file("stderr"))
                .spawn()
                .unwrap(),
        );
        // `ip netns exec` execs acceptq in place: the child is acceptq.
        let pid = child.0.id();
        let blocked = wait_for(Duration::from_secs(20), || {
            wchan(pid).contains("pipe_write").then_some(())
        });
        assert!(
            blocked.is_some(),
            "never waited on the full pipe: {}",
            wchan(pid)
        );
        let asked = Instant::now();
        // SAFETY: signals our own child.
        unsafe { libc::kill(pid as libc::pid_t, signal) };
        let status = wait_or_kill(&mut child.0, Duration::from_secs(5));
        let took = asked.elapsed();
        note!("signal {signal}: ended after {took:?}: {status:?}");
        drop(read_end);
        let status = status.unwrap_or_else(|| {
            panic!(
                "signal {signal}: still waiting on the reader 5 s later ({})",
                wchan(pid)
            )
        });
        assert_eq!(status.code(), Some(0), "signal {signal}");
        // The rest of the report had its second of grace, no more.
        assert!(took < Duration::from_secs(3), "signal {signal}: {took:?}");
        let said = std::fs::read_to_string(tmp.join("stderr")).unwrap();
        assert_eq!(said, "", "signal {signal}");
    }
}
