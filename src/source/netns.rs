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

#[derive(Debug)]
pub struct NetnsError {
    pub spec: String,
    pub path: PathBuf,
    pub source: io::Error,
}

impl std::fmt::Display for NetnsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "--netns {}: cannot open {}: {}",
            self.spec,
            self.path.display(),
            self.source
        )?;
        if self.source.kind() == io::ErrorKind::NotFound && !self.spec.contains('/') {
            write!(f, " (`ip netns list` shows the named namespaces)")?;
        }
        if self.source.raw_os_error() == Some(libc::EPERM) {
            write!(f, " (joining another namespace needs CAP_SYS_ADMIN)")?;
        }
        Ok(())
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
    let err = |source| NetnsError {
        spec: spec.to_string(),
        path: path.clone(),
        source,
    };
    let file = File::open(&path).map_err(err)?;
    // Proves it is a namespace we may join before the first report needs it.
    run_in(Some(&file), || ()).map_err(err)?;
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
