//! The terminal besides its keys: it hangs up, is resized, and the person suspends `top`
//! (Ctrl-Z, SIGTSTP) and resumes it (SIGCONT). Keys are read by crossterm only once poll(2)
//! says the terminal has some: crossterm's reader retries a read that returns 0 or EIO forever,
//! so on a hung-up terminal (its window closed with SIGHUP ignored) it would spin a core.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::Duration;

use ratatui::crossterm::event::{self, Event};

/// What the terminal tells `top`, besides keys.
#[derive(Debug)]
pub enum News {
    Input(Event),
    /// The terminal cannot be read any more.
    InputGone(io::Error),
    /// The terminal is gone (SIGHUP, or hung up under `nohup`).
    HangUp,
    Resize,
    /// SIGTSTP from outside (`kill -TSTP`); Ctrl-Z itself arrives as a key in raw mode.
    Suspend,
    /// SIGCONT: continued after a stop `top` did not ask for (SIGSTOP), when the shell may
    /// have set the terminal back to its own modes.
    Resume,
}

static SIGNAL_WRITE: AtomicI32 = AtomicI32::new(-1);

/// SIGTSTP was not ignored when `top` started: Ctrl-Z may stop it.
static SUSPENDABLE: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(sig: libc::c_int) {
    let fd = SIGNAL_WRITE.load(Ordering::Relaxed);
    let byte = sig as u8;
    // SAFETY: write(2) is async-signal-safe; errno is kept for the code the signal interrupted.
    unsafe {
        let errno = *libc::__errno_location();
        libc::write(fd, (&byte as *const u8).cast(), 1);
        *libc::__errno_location() = errno;
    }
}

/// Points `sig` at [`on_signal`], or back at the default action; SA_RESTART so that a resize
/// does not fail a netlink read in the middle of a refresh.
fn handle(sig: libc::c_int, ours: bool) -> io::Result<()> {
    // SAFETY: a zeroed sigaction with a plain handler or SIG_DFL, an empty mask.
    let rc = unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = if ours {
            on_signal as extern "C" fn(libc::c_int) as usize
        } else {
            libc::SIG_DFL
        };
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(sig, &action, std::ptr::null_mut())
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether `sig` was ignored when `top` started (`nohup` ignores SIGHUP; a shell without job
/// control may ignore SIGTSTP): then it stays ignored.
fn ignored(sig: libc::c_int) -> bool {
    // SAFETY: sigaction with a null new action only reads the current one.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(sig, std::ptr::null(), &mut old) == 0 && old.sa_sigaction == libc::SIG_IGN
    }
}

/// Catches SIGHUP, SIGWINCH, SIGTSTP and SIGCONT; each arrives as one byte on the pipe
/// returned.
fn catch() -> io::Result<File> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the two-element array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fds[0] was just opened and is owned by nothing else.
    let read = unsafe { File::from_raw_fd(fds[0]) };
    SIGNAL_WRITE.store(fds[1], Ordering::Relaxed);
    SUSPENDABLE.store(!ignored(libc::SIGTSTP), Ordering::SeqCst);
    for sig in [libc::SIGHUP, libc::SIGWINCH, libc::SIGTSTP, libc::SIGCONT] {
        if !ignored(sig) {
            handle(sig, true)?;
        }
    }
    Ok(read)
}

/// Stops the process as Ctrl-Z would without raw mode, and returns once it is continued (`fg`)
/// or at once when nothing could continue it: the kernel does not stop an orphaned process
/// group, and SIGTSTP ignored at start stays ignored.
pub fn stop() -> io::Result<()> {
    if !SUSPENDABLE.load(Ordering::SeqCst) {
        return Ok(());
    }
    handle(libc::SIGTSTP, false)?;
    // SAFETY: raise only sends a signal to this thread; its default action stops the process.
    unsafe { libc::raise(libc::SIGTSTP) };
    handle(libc::SIGTSTP, true)
}

/// The terminal crossterm reads keys from: stdin when it is one, else `/dev/tty` (so
/// `acceptq top < /dev/null` still takes keys).
fn open_tty() -> io::Result<(RawFd, Option<File>)> {
    // SAFETY: isatty only looks at the descriptor.
    if unsafe { libc::isatty(libc::STDIN_FILENO) } == 1 {
        return Ok((libc::STDIN_FILENO, None));
    }
    let tty = File::open("/dev/tty")?;
    Ok((tty.as_raw_fd(), Some(tty)))
}

fn news_of(sig: u8) -> Option<News> {
    match libc::c_int::from(sig) {
        libc::SIGHUP => Some(News::HangUp),
        libc::SIGWINCH => Some(News::Resize),
        libc::SIGTSTP => Some(News::Suspend),
        libc::SIGCONT => Some(News::Resume),
        _ => None,
    }
}

/// Reads keys and the signals above until the terminal is gone or `send` fails (the loop has
/// ended). Runs on a thread of its own.
pub fn read(mut send: impl FnMut(News) -> bool) {
    let signals = match catch() {
        Ok(f) => f,
        Err(e) => {
            send(News::InputGone(e));
            return;
        }
    };
    let (tty, _open) = match open_tty() {
        Ok(t) => t,
        Err(e) => {
            send(News::InputGone(e));
            return;
        }
    };
    loop {
        let mut fds = [
            libc::pollfd {
                fd: tty,
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: signals.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: a valid array of pollfds, for the duration of the call.
        if unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) } < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            send(News::InputGone(e));
            return;
        }
        if fds[1].revents & libc::POLLIN != 0 {
            let mut bytes = [0u8; 32];
            // SAFETY: reads into a buffer of its length; the pipe does not block.
            let n = unsafe { libc::read(fds[1].fd, bytes.as_mut_ptr().cast(), bytes.len()) };
            for &sig in &bytes[..usize::try_from(n).unwrap_or(0)] {
                if let Some(news) = news_of(sig) {
                    let last = matches!(news, News::HangUp);
                    if !send(news) || last {
                        return;
                    }
                }
            }
        }
        if fds[0].revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0 {
            send(News::HangUp);
            return;
        }
        if fds[0].revents & libc::POLLIN == 0 {
            continue;
        }
        let mut any = false;
        loop {
            match event::poll(Duration::ZERO).and_then(|ready| ready.then(event::read).transpose())
            {
                Ok(Some(ev)) => {
                    any = true;
                    if !send(News::Input(ev)) {
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    send(News::InputGone(e));
                    return;
                }
            }
        }
        if !any {
            // Half an escape sequence, or bytes crossterm left for a later read: a pause, so
            // the terminal still readable is not polled again at once.
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
