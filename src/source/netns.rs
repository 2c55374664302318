//! Network namespaces to watch, and running a piece of code inside one.
//!
//! sock_diag sockets and `/proc/.../net` files are bound to the namespace they were opened in, so
//! everything namespace-specific is opened once on a helper thread that joins the namespace
//! (`setns`, needs CAP_SYS_ADMIN) and then used from anywhere.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A namespace being watched: its display name (the `netns` tag) and, for any namespace other
/// than the one acceptq runs in, an open handle to it.
#[derive(Clone, Debug)]
pub struct Netns {
    pub name: String,
    pub file: Option<Arc<File>>,
}

/// The name of the namespace acceptq runs in, when other namespaces are watched too.
pub const OWN_NAME: &str = "default";
const NAMED_DIR: &str = "/run/netns";

/// What failed about a namespace file: opening it, or joining the namespace it names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Open,
    Join,
}

#[derive(Debug)]
pub struct NetnsError {
    pub spec: String,
    pub path: PathBuf,
    pub step: Step,
    /// Found by `--all-netns` in /run/netns rather than given with `--netns`.
    pub listed: bool,
    pub source: io::Error,
}

impl NetnsError {
    /// The same failure, for a namespace `--all-netns` found.
    pub fn listed(self) -> Self {
        NetnsError {
            listed: true,
            ..self
        }
    }
}

impl std::fmt::Display for NetnsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.listed {
            write!(f, "--all-netns: netns {}: ", self.spec)?;
        } else {
            write!(f, "--netns {}: ", self.spec)?;
        }
        let path = self.path.display();
        let errno = self.source.raw_os_error();
        match self.step {
            // setns refuses a file that is no namespace (or another kind of namespace) with
            // EINVAL before it checks any privilege.
            Step::Join if errno == Some(libc::EINVAL) => {
                write!(f, "{path} is not a network namespace")
            }
            Step::Join if errno == Some(libc::EPERM) => write!(
                f,
                "cannot join {path}: {} (joining another network namespace needs CAP_SYS_ADMIN)",
                self.source
            ),
            Step::Join => write!(f, "cannot join {path}: {}", self.source),
            Step::Open => {
                write!(f, "cannot open {path}: {}", self.source)?;
                if self.source.kind() == io::ErrorKind::NotFound && !self.spec.contains('/') {
                    write!(f, " (`ip netns list` shows the named namespaces)")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for NetnsError {}

/// Resolves `--netns NAME|PATH`: a bare name is one of `ip netns`' (`/run/netns/NAME`), anything
/// with a `/` a namespace file such as `/proc/PID/ns/net`.
pub fn resolve(spec: &str) -> Result<Netns, NetnsError> {
    let path = if spec.contains('/') {
        PathBuf::from(spec)
    } else {
        Path::new(NAMED_DIR).join(spec)
    };
    let err = |step| {
        let path = path.clone();
        move |source| NetnsError {
            spec: spec.to_string(),
            path,
            step,
            listed: false,
            source,
        }
    };
    let file = File::open(&path).map_err(err(Step::Open))?;
    // Proves it is a namespace we may join before the first report needs it.
    run_in(Some(&file), || ()).map_err(err(Step::Join))?;
    let name = if spec.contains('/') {
        spec.trim_matches('/').replace('/', "_")
    } else {
        spec.to_string()
    };
    Ok(Netns {
        name,
        file: Some(Arc::new(file)),
    })
}

/// The namespace acceptq runs in.
pub fn own() -> Netns {
    Netns {
        name: OWN_NAME.to_string(),
        file: None,
    }
}

/// The names of `ip netns`' namespaces (`/run/netns`), sorted; none when the folder is missing.
pub fn list_named() -> Vec<String> {
    let mut names: Vec<String> = match std::fs::read_dir(NAMED_DIR) {
        Ok(dir) => dir
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    names
}

/// Identity (device, inode) of the namespace `/run/netns/NAME` names now: two names for one
/// namespace share it, a name deleted and re-created gets a new one.
pub fn named_identity(name: &str) -> Option<(u64, u64)> {
    std::fs::metadata(Path::new(NAMED_DIR).join(name))
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

/// Identity of a watched namespace.
pub fn identity_of(ns: &Netns) -> Option<(u64, u64)> {
    match &ns.file {
        Some(f) => f.metadata().ok().map(|m| (m.dev(), m.ino())),
        None => std::fs::metadata("/proc/self/ns/net")
            .ok()
            .map(|m| (m.dev(), m.ino())),
    }
}

/// Runs `f` with the calling context in namespace `ns` (`None`: ours, on this thread).
pub fn run_in<T: Send>(ns: Option<&File>, f: impl FnOnce() -> T + Send) -> io::Result<T> {
    let Some(ns) = ns else { return Ok(f()) };
    // A scoped thread joins the namespace and ends, so no thread of ours is left in it.
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                // SAFETY: setns on a valid fd we own; it changes only this short-lived thread.
                if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(f())
            })
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("namespace helper thread panicked")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(spec: &str, step: Step, errno: i32) -> NetnsError {
        let path = if spec.contains('/') {
            PathBuf::from(spec)
        } else {
            Path::new(NAMED_DIR).join(spec)
        };
        NetnsError {
            spec: spec.into(),
            path,
            step,
            listed: false,
            source: io::Error::from_raw_os_error(errno),
        }
    }

    #[test]
    fn messages_say_which_step_failed_and_why() {
        let e = error("web", Step::Join, libc::EPERM).to_string();
        assert!(
            e.starts_with("--netns web: cannot join /run/netns/web: Operation not permitted"),
            "{e}"
        );
        assert!(e.contains("needs CAP_SYS_ADMIN"), "{e}");
        assert!(!e.contains("cannot open"), "{e}");
        assert_eq!(
            error("/etc/passwd", Step::Join, libc::EINVAL).to_string(),
            "--netns /etc/passwd: /etc/passwd is not a network namespace"
        );
        let e = error("gone", Step::Open, libc::ENOENT).to_string();
        assert!(
            e.starts_with("--netns gone: cannot open /run/netns/gone: No such file"),
            "{e}"
        );
        assert!(
            e.ends_with("(`ip netns list` shows the named namespaces)"),
            "{e}"
        );
        let e = error("/proc/1/ns/net", Step::Open, libc::EACCES).to_string();
        assert!(!e.contains("ip netns list"), "{e}");
        assert!(!e.contains("CAP_SYS_ADMIN"), "{e}");
    }

    #[test]
    fn all_netns_failures_do_not_name_a_flag_never_given() {
        let e = error("web", Step::Join, libc::EPERM).listed().to_string();
        assert!(e.starts_with("--all-netns: netns web: cannot join"), "{e}");
        assert!(!e.contains("--netns"), "{e}");
    }
}
