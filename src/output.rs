//! Where reports go: stdout, a whole report or nothing of it, or a file replaced atomically;
//! and waiting between reports without missing that stdout's reader went away.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::RawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::{Duration, Instant};

const STDOUT: RawFd = 1;
/// A pipe whose reader is gone is POLLERR on the writing end; a hung-up terminal or socket is
/// POLLHUP. poll reports both whatever events were asked for.
const HANGUP: i16 = libc::POLLERR | libc::POLLHUP;

pub enum Sink {
    Stdout {
        /// A write failed after part of a report went out: that line is unfinished.
        unfinished: bool,
    },
    /// Written to a temp file in the target's directory, then renamed over the target, so a
    /// reader (node_exporter's textfile collector) never sees half a report. A symlink is
    /// followed, each write, to the file it names now, which is replaced and the link kept.
    File { path: PathBuf },
}

/// Symlinks followed before `--output` is called a loop, as the kernel's own limit.
const MAX_LINKS: usize = 40;

impl Sink {
    pub fn stdout() -> Sink {
        Sink::Stdout { unfinished: false }
    }

    pub fn file(path: &Path) -> Sink {
        Sink::File {
            path: path.to_path_buf(),
        }
    }

    /// Where reports go, as a message names it.
    pub fn describe(&self) -> String {
        match self {
            Sink::Stdout { .. } => "stdout".into(),
            Sink::File { path } => format!("--output {}", path.display()),
        }
    }

    pub fn is_stdout(&self) -> bool {
        matches!(self, Sink::Stdout { .. })
    }

    /// Proves a report can be written where it must go, before anything is collected: a
    /// missing or read-only `--output` directory, or a target that is no regular file, is the
    /// error, not whatever reading `/proc` warned about first.
    pub fn check(&self) -> io::Result<()> {
        let Sink::File { path } = self else {
            return Ok(());
        };
        let target = resolve(path).map_err(|e| named(path, e))?;
        let fail = |e: io::Error| {
            io::Error::new(
                e.kind(),
                format!(
                    "--output {}: cannot write a file in {}: {e}",
                    path.display(),
                    dir_of(&target).display()
                ),
            )
        };
        self.check_held(&target, fail, || ())
    }

    /// Creates and removes a temp file by `target` with SIGTERM and SIGINT held off meanwhile:
    /// one while starting ends the process at once, which would leave that file behind in the
    /// operator's directory. `between` runs while the file exists (a test stops there).
    fn check_held(
        &self,
        target: &Path,
        fail: impl Fn(io::Error) -> io::Error,
        between: impl FnOnce(),
    ) -> io::Result<()> {
        let _held = HeldStops::new();
        let (tmp, _) = create_temp(target).map_err(&fail)?;
        between();
        fs::remove_file(&tmp).map_err(fail)
    }

    pub fn write(&mut self, report: &[u8]) -> io::Result<()> {
        match self {
            Sink::Stdout { unfinished } => {
                // A line a failed write cut is ended first, so the next report's first line is
                // whole; the cut line is lost either way.
                let result = if *unfinished {
                    write_whole(b"\n").and_then(|()| write_whole(report))
                } else {
                    write_whole(report)
                };
                *unfinished = result.is_err();
                result.map_err(|e| {
                    io::Error::new(e.kind(), format!("writing the report to stdout: {e}"))
                })
            }
            Sink::File { path } => {
                // Resolved each time: the link may be pointed elsewhere, or a device put where
                // the file was, while we run.
                let target = resolve(path).map_err(|e| named(path, e))?;
                let (tmp, mut f) = create_temp(&target).map_err(|e| named(path, e))?;
                let result = (|| {
                    f.write_all(report)?;
                    f.sync_data()?;
                    fs::rename(&tmp, &target)
                })();
                if result.is_err() {
                    // Ours: created by this call.
                    let _ = fs::remove_file(&tmp);
                }
                result.map_err(|e| named(path, e))
            }
        }
    }
}

fn named(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("--output {}: {e}", path.display()))
}

fn dir_of(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// The file `path` names once its symlinks are followed: a regular file, or nothing yet (it is
/// created). Anything else (a device, a FIFO, a socket, a directory) is refused rather than
/// replaced: `--output /dev/null` must not turn the system's /dev/null into a file.
fn resolve(path: &Path) -> io::Result<PathBuf> {
    let mut at = path.to_path_buf();
    for _ in 0..=MAX_LINKS {
        let meta = match fs::symlink_metadata(&at) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(at),
            Err(e) => return Err(e),
        };
        let kind = meta.file_type();
        if kind.is_symlink() {
            refuse_planted_link(&at, &meta)?;
            let link = fs::read_link(&at)?;
            // A relative link is relative to the folder holding it; joining an absolute one
            // replaces the folder.
            at = dir_of(&at).join(link);
            continue;
        }
        if kind.is_file() {
            return Ok(at);
        }
        let what = if kind.is_dir() {
            "a directory; name a file in it"
        } else if kind.is_char_device() {
            "a character device, not a regular file; acceptq replaces only regular files"
        } else if kind.is_block_device() {
            "a block device, not a regular file; acceptq replaces only regular files"
        } else if kind.is_fifo() {
            "a FIFO, not a regular file; acceptq replaces only regular files"
        } else if kind.is_socket() {
            "a socket, not a regular file; acceptq replaces only regular files"
        } else {
            "not a regular file; acceptq replaces only regular files"
        };
        let msg = if at == path {
            format!("is {what}")
        } else {
            format!("links to {}, which is {what}", at.display())
        };
        return Err(io::Error::other(msg));
    }
    Err(io::Error::other(format!(
        "more than {MAX_LINKS} symlinks to follow (a loop?)"
    )))
}

/// The kernel's `fs.protected_symlinks` rule, which following the link here rather than in an
/// `open` would skip: a link in a sticky folder anyone may write (`/tmp`) is followed only when
/// it is ours or the folder owner's. Without it, another user's `/tmp/x.prom -> /etc/shadow`
/// has root's `--output /tmp/x.prom` replace /etc/shadow. Applied whatever the sysctl says.
fn refuse_planted_link(link: &Path, meta: &fs::Metadata) -> io::Result<()> {
    let dir = dir_of(link);
    let folder = fs::metadata(dir)?;
    // SAFETY: geteuid has no preconditions; the file-system uid follows it.
    let follower = unsafe { libc::geteuid() };
    if may_follow(meta.uid(), folder.mode(), folder.uid(), follower) {
        return Ok(());
    }
    Err(io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!(
            "{} is a symbolic link of another user (uid {}) in {}, a sticky folder anyone may \
             write: not followed, as the kernel's fs.protected_symlinks refuses",
            link.display(),
            meta.uid(),
            dir.display()
        ),
    ))
}

/// Whether a link owned by `link_uid`, in a folder of mode `dir_mode` owned by `dir_uid`, may
/// be followed by `follower` under `fs.protected_symlinks`.
fn may_follow(link_uid: u32, dir_mode: u32, dir_uid: u32, follower: u32) -> bool {
    let shared = libc::S_ISVTX | libc::S_IWOTH;
    link_uid == follower || dir_mode & shared != shared || link_uid == dir_uid
}

/// Temp names tried before giving up: `.acceptq.<pid>.<k>.tmp` for k from 0.
const TEMP_NAMES: u32 = 64;

/// Creates a temp file beside `target` (rename cannot cross file systems) and returns its path.
/// Its name does not end in `.prom`, so node_exporter's textfile collector never reads it half
/// written, and stays short of NAME_MAX whatever the target's name. O_EXCL and O_NOFOLLOW refuse
/// whatever already holds a name, a planted symlink included, and the next name is tried: a
/// file of another writer is never removed, even one with our pid (two containers' pid 1
/// sharing a directory) or a crashed run's leftover.
fn create_temp(target: &Path) -> io::Result<(PathBuf, File)> {
    let dir = dir_of(target);
    let pid = std::process::id();
    for k in 0..TEMP_NAMES {
        let tmp = dir.join(format!(".acceptq.{pid}.{k}.tmp"));
        let opened = OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW)
            .mode(0o644)
            .open(&tmp);
        match opened {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!(
            "{TEMP_NAMES} temp names .acceptq.{pid}.*.tmp are taken in {}: remove leftovers",
            dir.display()
        ),
    ))
}

/// Writes all of `buf` to fd 1, itself rather than through `std::io::Stdout`: std's stdout is
/// line-buffered (a report would go out as many writes), and its `write_all` on a non-blocking
/// stdout stops at EAGAIN without saying how much went out, leaving half a line for the next
/// report to continue. Here a started report is finished: on EAGAIN it waits until the pipe
/// has room, as a blocking write would.
///
/// A stop (SIGTERM, SIGINT) interrupts a write that a stalled reader blocks: the rest of the
/// report then gets [`STOP_GRACE`] to go out, in writes a pipe with room takes without
/// blocking, and past it the run ends (see [`stop_requested`]) rather than wait for a reader
/// that may never read again.
fn write_whole(mut buf: &[u8]) -> io::Result<()> {
    let mut grace: Option<Instant> = None;
    while !buf.is_empty() {
        let mut len = buf.len();
        if let Some(until) = grace {
            wait_writable(Some(until))?;
            len = len.min(libc::PIPE_BUF);
        }
        // SAFETY: writes from a live slice to fd 1, which the process keeps open throughout.
        let n = unsafe { libc::write(STDOUT, buf.as_ptr().cast(), len) };
        if let Ok(n) = usize::try_from(n) {
            buf = &buf[n..];
        } else {
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => {}
                // With a grace running, the wait above comes first.
                io::ErrorKind::WouldBlock if grace.is_none() => wait_writable(None)?,
                io::ErrorKind::WouldBlock => {}
                _ => return Err(e),
            }
        }
        // Checked only once the write returned short: a report that goes out in one write
        // costs nothing more.
        if grace.is_none() && !buf.is_empty() && stop_requested() {
            grace = Some(Instant::now() + STOP_GRACE);
        }
    }
    Ok(())
}

/// How long the rest of a report may take to go out to a slow reader once a stop came.
const STOP_GRACE: Duration = Duration::from_secs(1);

/// Waits until stdout takes more bytes: without `until`, for as long as it takes unless a stop
/// comes (then returns, to be asked again with a limit); with it, until then at most, after
/// which the error says the run was stopped.
fn wait_writable(until: Option<Instant>) -> io::Result<()> {
    loop {
        let timeout = match until {
            None => -1,
            Some(t) => {
                let left = t.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(io::Error::new(
                        io::ErrorKind::Interrupted,
                        "stopped while the reader was not reading",
                    ));
                }
                i32::try_from(left.as_micros().div_ceil(1000)).unwrap_or(i32::MAX)
            }
        };
        let mut fds = [
            libc::pollfd {
                fd: STDOUT,
                events: libc::POLLOUT,
                revents: 0,
            },
            libc::pollfd {
                // poll skips a negative fd: once stopping, the pipe says nothing new.
                fd: match until {
                    None => STOP_PIPE.load(Ordering::Relaxed),
                    Some(_) => -1,
                },
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: a valid array of pollfds, for the duration of the call.
        if unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) } < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        let fd = fds[0];
        if fd.revents & libc::POLLOUT != 0 || fds[1].revents & libc::POLLIN != 0 {
            return Ok(());
        }
        if fd.revents & HANGUP != 0 {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        if fd.revents & libc::POLLNVAL != 0 {
            return Err(io::Error::from_raw_os_error(libc::EBADF));
        }
    }
}

/// What ended a [`wait`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wake {
    /// The time given passed.
    Elapsed,
    /// The input fd has something to read, or its end.
    Input,
    /// Stdout's reader is gone (`acceptq | head -1` after its line): time to exit quietly.
    StdoutGone,
    /// SIGTERM or SIGINT arrived: time to exit, with status 0, between two reports.
    Stopped,
}

impl Wake {
    /// Whether the run is to end quietly: stdout gone, or asked to stop.
    pub fn ends_run(self) -> bool {
        matches!(self, Wake::StdoutGone | Wake::Stopped)
    }
}

/// SIGTERM and SIGINT blocked on this thread until dropped; one that came meanwhile is then
/// handled. (acceptq is one thread while it starts, so no other thread takes it instead.)
struct HeldStops(libc::sigset_t);

impl HeldStops {
    fn new() -> HeldStops {
        // SAFETY: sigset_t is plain data, filled by sigemptyset/sigaddset; pthread_sigmask
        // reads one live set and writes the other.
        unsafe {
            let mut stops: libc::sigset_t = std::mem::zeroed();
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut stops);
            libc::sigaddset(&mut stops, libc::SIGTERM);
            libc::sigaddset(&mut stops, libc::SIGINT);
            libc::pthread_sigmask(libc::SIG_BLOCK, &stops, &mut old);
            HeldStops(old)
        }
    }
}

impl Drop for HeldStops {
    fn drop(&mut self) {
        // SAFETY: restores the mask saved by `new`, a live set.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.0, std::ptr::null_mut()) };
    }
}

/// Read end of the self-pipe the stop signals write to; -1 until [`stop_on_signals`].
static STOP_PIPE: AtomicI32 = AtomicI32::new(-1);
static STOP_WRITE: AtomicI32 = AtomicI32::new(-1);

/// Until the first report is begun nothing has been written: a stop then ends the process at
/// once, with status 0, even one blocked opening a `--netns` or `--output` path, which a
/// signal caught to wake [`wait`] would leave blocked.
static STARTING: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_: libc::c_int) {
    if STARTING.load(Ordering::SeqCst) {
        // SAFETY: _exit is async-signal-safe; nothing of ours is half written.
        unsafe { libc::_exit(0) };
    }
    let fd = STOP_WRITE.load(Ordering::Relaxed);
    // SAFETY: write(2) is async-signal-safe; a full pipe already says "stop".
    unsafe { libc::write(fd, b"x".as_ptr().cast(), 1) };
}

/// SIGTERM and SIGINT end the run between reports, with status 0, instead of killing it
/// mid-write. They also do so as pid 1 of a container, where the kernel ignores a signal that
/// has no handler. A pipe, not a flag, so that the signal wakes [`wait`] whichever thread the
/// kernel delivers it to.
pub fn stop_on_signals() -> io::Result<()> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the two-element array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
        return Err(io::Error::last_os_error());
    }
    STOP_PIPE.store(fds[0], Ordering::Relaxed);
    STOP_WRITE.store(fds[1], Ordering::Relaxed);
    for sig in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: a zeroed sigaction with a plain handler, no flags, an empty mask.
        let rc = unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_stop_signal as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(sig, &action, std::ptr::null_mut())
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// [`stop_on_signals`] for a run that has written nothing yet: until [`started`], a stop
/// ends the process at once with status 0.
pub fn stop_on_signals_while_starting() -> io::Result<()> {
    STARTING.store(true, Ordering::SeqCst);
    stop_on_signals()
}

/// The run is started: from now on a stop signal ends it between reports (see [`wait`]).
/// Returns whether one came as this was called (earlier ones ended the process).
pub fn started() -> bool {
    STARTING.store(false, Ordering::SeqCst);
    stop_requested()
}

/// Whether SIGTERM or SIGINT came since [`stop_on_signals`]; nothing is taken from the pipe,
/// so [`wait`] still sees it. A write that failed because of it ends the run quietly.
pub fn stop_requested() -> bool {
    let mut fd = libc::pollfd {
        fd: STOP_PIPE.load(Ordering::Relaxed),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd (poll skips a negative fd), for the duration of the call.
    unsafe { libc::poll(&mut fd, 1, 0) > 0 && fd.revents & libc::POLLIN != 0 }
}

/// Waits until `input` is readable, stdout hangs up (when `watch_stdout`), or `limit` passes
/// (`None`: no limit). Without it, a closed stdout would be noticed only at the next report's
/// write, an interval (or a Telegraf newline) later.
pub fn wait(watch_stdout: bool, input: Option<RawFd>, limit: Option<Duration>) -> Wake {
    let deadline = limit.map(|d| Instant::now() + d);
    let mut watch_stdout = watch_stdout;
    loop {
        let timeout = match deadline {
            None => -1,
            Some(t) => {
                let left = t.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Wake::Elapsed;
                }
                // Rounded up: waking before the deadline would only poll again.
                i32::try_from(left.as_micros().div_ceil(1000)).unwrap_or(i32::MAX)
            }
        };
        let mut fds = [
            libc::pollfd {
                // poll skips a negative fd.
                fd: if watch_stdout { STDOUT } else { -1 },
                events: 0,
                revents: 0,
            },
            libc::pollfd {
                fd: input.unwrap_or(-1),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: STOP_PIPE.load(Ordering::Relaxed),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: a valid array of pollfds, for the duration of the call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
        if n < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            // Cannot happen with valid arguments; fall back to a plain sleep.
            if let Some(t) = deadline {
                std::thread::sleep(t.saturating_duration_since(Instant::now()));
            }
            return Wake::Elapsed;
        }
        if fds[2].revents != 0 {
            return Wake::Stopped;
        }
        if fds[0].revents & HANGUP != 0 {
            return Wake::StdoutGone;
        }
        if fds[0].revents & libc::POLLNVAL != 0 {
            // No fd 1 at all: the report's write says so; do not spin on it here.
            watch_stdout = false;
        }
        if fds[1].revents != 0 {
            return Wake::Input;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn check_names_the_output_and_its_directory() {
        let e = Sink::file(Path::new("/nonexistent-dir-acceptq/x.prom"))
            .check()
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(
                "--output /nonexistent-dir-acceptq/x.prom: cannot write a file in /nonexistent-dir-acceptq: "
            ),
            "{e}"
        );
        let dir = std::env::temp_dir();
        let e = Sink::file(&dir).check().unwrap_err().to_string();
        assert!(e.ends_with("is a directory; name a file in it"), "{e}");
        let target = dir.join(format!("acceptq-check-{}.prom", std::process::id()));
        Sink::file(&target).check().unwrap();
        let leftovers = fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .contains(&format!("acceptq-check-{}", std::process::id()))
            })
            .count();
        assert_eq!(leftovers, 0, "the check leaves no file behind");
    }

    /// SIGTERM landing while the check's temp file exists, in a run still starting: the run
    /// ends with status 0 and the operator's directory is as it was.
    #[test]
    fn a_stop_during_the_output_check_leaves_no_temp_file() {
        let dir = Scratch::new("check-stop");
        let target = dir.0.join("x.prom");
        // In a child: the stop ends the process.
        // SAFETY: the child only creates and removes a file, then exits with _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let code = match stop_on_signals_while_starting() {
                Ok(()) => {
                    let sink = Sink::file(&target);
                    let _ = sink.check_held(
                        &target,
                        |e| e,
                        || {
                            // SAFETY: raise sends to this, the child's only thread.
                            unsafe { libc::raise(libc::SIGTERM) };
                        },
                    );
                    // Not reached: the stop, held until the file was gone, ended the process.
                    3
                }
                Err(_) => 4,
            };
            // SAFETY: ends the forked child without running the test harness's exit.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waits for our own child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(libc::WIFEXITED(status), "status {status:#x}");
        assert_eq!(libc::WEXITSTATUS(status), 0);
        let left: Vec<_> = fs::read_dir(&dir.0)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name())
            .collect();
        assert!(left.is_empty(), "left behind: {left:?}");
    }

    /// A fresh folder under the temp dir, removed at the end of the test.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(tag: &str) -> Scratch {
            let dir = std::env::temp_dir().join(format!("acceptq-{tag}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir(&dir).unwrap();
            Scratch(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn mknod(path: &Path, mode: libc::mode_t, dev: libc::dev_t) -> bool {
        use std::os::unix::ffi::OsStrExt;
        let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path for the duration of the call.
        unsafe { libc::mknod(c.as_ptr(), mode, dev) == 0 }
    }

    fn file_type(path: &Path) -> fs::FileType {
        fs::symlink_metadata(path).unwrap().file_type()
    }

    #[test]
    fn a_fifo_or_device_at_the_output_is_refused_and_left_alone() {
        let dir = Scratch::new("out-special");
        let fifo = dir.0.join("ff");
        assert!(mknod(&fifo, libc::S_IFIFO | 0o666, 0));
        let mut sink = Sink::file(&fifo);
        let e = sink.check().unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "--output {}: is a FIFO, not a regular file; acceptq replaces only regular files",
                fifo.display()
            )
        );
        assert!(sink.write(b"x 1\n").is_err());
        assert!(file_type(&fifo).is_fifo(), "the FIFO is still a FIFO");
        // A character device as /dev/null is (1, 3), made here: only root may.
        let null = dir.0.join("nulldev");
        if mknod(&null, libc::S_IFCHR | 0o666, libc::makedev(1, 3)) {
            let mut sink = Sink::file(&null);
            let e = sink.check().unwrap_err().to_string();
            assert!(e.ends_with("nulldev: is a character device, not a regular file; acceptq replaces only regular files"), "{e}");
            assert!(sink.write(b"x 1\n").is_err());
            assert!(
                file_type(&null).is_char_device(),
                "the device is still a device"
            );
        }
        assert_eq!(
            fs::read_dir(&dir.0).unwrap().count(),
            if null.exists() { 2 } else { 1 },
            "no temp file left behind"
        );
    }

    #[test]
    fn a_symlink_is_followed_and_its_target_replaced() {
        let dir = Scratch::new("out-link");
        let real = dir.0.join("real.prom");
        fs::write(&real, "old\n").unwrap();
        let link = dir.0.join("link.prom");
        std::os::unix::fs::symlink("real.prom", &link).unwrap();
        let mut sink = Sink::file(&link);
        sink.check().unwrap();
        sink.write(b"new 1\n").unwrap();
        assert!(file_type(&link).is_symlink(), "the link stays a link");
        assert_eq!(fs::read_to_string(&real).unwrap(), "new 1\n");
        // A link to a FIFO is refused, naming where it leads.
        let fifo = dir.0.join("ff");
        assert!(mknod(&fifo, libc::S_IFIFO | 0o666, 0));
        let to_fifo = dir.0.join("to-fifo.prom");
        std::os::unix::fs::symlink(&fifo, &to_fifo).unwrap();
        let e = Sink::file(&to_fifo).check().unwrap_err().to_string();
        assert!(
            e.contains(&format!("links to {}, which is a FIFO", fifo.display())),
            "{e}"
        );
        // A dangling link: the file it names is created.
        let dangling = dir.0.join("dangling.prom");
        std::os::unix::fs::symlink("later.prom", &dangling).unwrap();
        Sink::file(&dangling).write(b"x 1\n").unwrap();
        assert_eq!(
            fs::read_to_string(dir.0.join("later.prom")).unwrap(),
            "x 1\n"
        );
        let looped = dir.0.join("loop.prom");
        std::os::unix::fs::symlink("loop.prom", &looped).unwrap();
        assert!(Sink::file(&looped).check().is_err());
    }

    #[test]
    fn a_link_in_a_sticky_shared_folder_is_followed_only_when_ours_or_the_folders() {
        let tmp = libc::S_IFDIR | 0o1777;
        let (root, user, owner) = (0, 65534, 1000);
        assert!(!may_follow(user, tmp, root, root), "another's link in /tmp");
        assert!(may_follow(root, tmp, root, root), "our own link");
        assert!(
            may_follow(owner, tmp, owner, root),
            "the folder owner's link"
        );
        assert!(
            may_follow(user, libc::S_IFDIR | 0o777, root, root),
            "not sticky"
        );
        assert!(
            may_follow(user, libc::S_IFDIR | 0o1775, root, root),
            "not writable by anyone"
        );
    }

    #[test]
    fn a_link_planted_at_the_temp_name_is_not_followed() {
        let dir = Scratch::new("out-plant");
        let victim = dir.0.join("victim");
        fs::write(&victim, "precious\n").unwrap();
        let target = dir.0.join("a.prom");
        let planted = dir.0.join(format!(".acceptq.{}.0.tmp", std::process::id()));
        std::os::unix::fs::symlink(&victim, &planted).unwrap();
        Sink::file(&target).write(b"x 1\n").unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious\n");
        assert_eq!(fs::read_to_string(&target).unwrap(), "x 1\n");
        assert!(planted.is_symlink(), "another's file is left alone");
        let left: Vec<_> = fs::read_dir(&dir.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(left.len(), 3, "victim, link and target only: {left:?}");
        let mode = fs::metadata(&target).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & !0o644, 0, "at most rw-r--r--: {mode:o}");
    }

    #[test]
    fn two_writers_with_one_pid_never_take_each_others_temp_file() {
        let dir = Scratch::new("out-samepid");
        let target = dir.0.join("a.prom");
        // Another writer (a container's acceptq with our pid) is mid-write.
        let (theirs, mut their_file) = create_temp(&target).unwrap();
        their_file.write_all(b"theirs 1\n").unwrap();
        Sink::file(&target).write(b"ours 1\n").unwrap();
        assert_eq!(fs::read_to_string(&target).unwrap(), "ours 1\n");
        assert_eq!(
            fs::read_to_string(&theirs).unwrap(),
            "theirs 1\n",
            "untouched"
        );
        fs::rename(&theirs, &target).unwrap();
        assert_eq!(fs::read_to_string(&target).unwrap(), "theirs 1\n");
    }

    #[test]
    fn a_255_byte_file_name_is_writable() {
        let dir = Scratch::new("out-long");
        let name = format!("{}.prom", "n".repeat(250));
        assert_eq!(name.len(), 255);
        let target = dir.0.join(&name);
        let mut sink = Sink::file(&target);
        sink.check().unwrap();
        sink.write(b"x 1\n").unwrap();
        assert_eq!(fs::read_to_string(&target).unwrap(), "x 1\n");
        let (tmp, _) = create_temp(&target).unwrap();
        let tmp_name = tmp.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            tmp_name.len() < 40 && !tmp_name.ends_with(".prom"),
            "{tmp_name}"
        );
    }
}
