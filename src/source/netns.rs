//! Network namespaces to watch, and running a piece of code inside one.
//!
//! sock_diag sockets and `/proc/.../net` files are bound to the namespace they were opened in, so
//! everything namespace-specific is opened once on a helper thread that joins the namespace
//! (`setns`, needs CAP_SYS_ADMIN) and then used from anywhere.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A namespace being watched: its name (the `netns` tag) and, for any namespace other than the
/// one acceptq runs in, an open handle to it.
///
/// Names are unique by construction: acceptq's own namespace is `default`; one of `ip netns`'
/// is its name, which never has a `/`; one given as a path is that path, which always has one.
/// The two `ip netns` names that cannot be used as they are, `default` (taken) and a name that
/// is not UTF-8, are shown as their path instead (see [`named_tag`]).
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
/// with a `/` a namespace file such as `/proc/PID/ns/net`, named by that path. Either may be
/// any bytes, as `--all-netns` finds them.
pub fn resolve(spec: &OsStr) -> Result<Netns, NetnsError> {
    if is_path(spec) {
        open(&escaped(spec), PathBuf::from(spec), spec_tag(spec))
    } else {
        resolve_named(spec)
    }
}

fn is_path(spec: &OsStr) -> bool {
    spec.as_bytes().contains(&b'/')
}

/// The `netns` tag of `--netns NAME|PATH`: a name as [`named_tag`] says; a path as given, each
/// byte that is not UTF-8 and each `\` written `\xHH` as in names, so no two paths share a tag.
pub fn spec_tag(spec: &OsStr) -> String {
    if is_path(spec) {
        escaped(spec)
    } else {
        named_tag(spec)
    }
}

/// Opens `ip netns`' namespace `name` (`/run/netns/NAME`), named as [`named_tag`] says.
pub fn resolve_named(name: &OsStr) -> Result<Netns, NetnsError> {
    open(
        &escaped(name),
        Path::new(NAMED_DIR).join(name),
        named_tag(name),
    )
}

fn open(spec: &str, path: PathBuf, name: String) -> Result<Netns, NetnsError> {
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
    Ok(Netns {
        name,
        file: Some(Arc::new(file)),
    })
}

/// The `netns` tag of `ip netns`' namespace `name`: the name itself, except for `default`, which
/// is acceptq's own namespace, and a name that is not UTF-8. Those two are named by their path,
/// `/run/netns/NAME`, with each byte that is not UTF-8 and each `\` written `\xHH`
/// (`bad\xffns`): a `/` no `ip netns` name has keeps them apart from every other name, and the
/// escapes from each other.
pub fn named_tag(name: &OsStr) -> String {
    if let Some(n) = name.to_str().filter(|n| *n != OWN_NAME) {
        return n.to_string();
    }
    format!("{NAMED_DIR}/{}", escaped(name))
}

/// `text` with each byte that is not UTF-8 and each `\` written `\xHH`, and `text` as it is
/// when there is neither: lossless, and the same bytes always give the same text.
fn escaped(text: &OsStr) -> String {
    let mut out = String::new();
    for chunk in text.as_bytes().utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '\\' {
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

/// The namespace acceptq runs in.
pub fn own() -> Netns {
    Netns {
        name: OWN_NAME.to_string(),
        file: None,
    }
}

/// The names of `ip netns`' namespaces (`/run/netns`), UTF-8 or not, sorted; none when the
/// folder is missing.
pub fn list_named() -> Vec<OsString> {
    let mut names: Vec<OsString> = match std::fs::read_dir(NAMED_DIR) {
        Ok(dir) => dir.filter_map(|e| e.ok()).map(|e| e.file_name()).collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    names
}

/// Identity (device, inode) of the namespace `/run/netns/NAME` names now: two names for one
/// namespace share it, a name deleted and re-created gets a new one.
pub fn named_identity(name: &OsStr) -> Option<(u64, u64)> {
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
    use std::ffi::OsStr;

    fn tag(bytes: &[u8]) -> String {
        named_tag(OsStr::from_bytes(bytes))
    }

    #[test]
    fn a_named_namespace_never_takes_our_own_name() {
        assert_eq!(tag(b"blue"), "blue");
        assert_eq!(tag(b"default"), "/run/netns/default");
        assert_ne!(tag(b"default"), OWN_NAME);
        assert_eq!(tag(b"Default"), "Default");
    }

    #[test]
    fn names_that_are_not_utf8_are_escaped_apart_from_every_other_name() {
        assert_eq!(tag(b"bad\xffns"), "/run/netns/bad\\xffns");
        // The same text as a valid name has no `/`; a literal `\xff` in a bad name is escaped.
        assert_eq!(tag(b"bad\\xffns"), "bad\\xffns");
        assert_eq!(tag(b"\\xff\xfe"), "/run/netns/\\x5cxff\\xfe");
        assert_ne!(tag(b"\xff\xfe"), tag(b"\\xff\xfe"));
        assert_eq!(tag(b"\xff\xfe"), "/run/netns/\\xff\\xfe");
        assert_eq!(tag(b"caf\xc3\xa9\xff"), "/run/netns/caf\u{e9}\\xff");
    }

    #[test]
    fn a_path_that_is_not_utf8_is_tagged_losslessly() {
        let path = |b: &[u8]| spec_tag(OsStr::from_bytes(b));
        assert_eq!(path(b"/run/netns/bad\xffns"), "/run/netns/bad\\xffns");
        // The same namespace by name or by path has the same tag.
        assert_eq!(path(b"/run/netns/bad\xffns"), tag(b"bad\xffns"));
        // A literal `\xff` in a path is not the byte.
        assert_eq!(path(b"/x/a\\xffb"), "/x/a\\x5cxffb");
        assert_ne!(path(b"/x/a\\xffb"), path(b"/x/a\xffb"));
        assert_eq!(spec_tag(OsStr::from_bytes(b"bad\xffns")), tag(b"bad\xffns"));
    }

    #[test]
    fn a_path_keeps_its_slashes_and_a_name_has_none() {
        assert_eq!(
            spec_tag(OsStr::new("/proc/1234/ns/net")),
            "/proc/1234/ns/net"
        );
        assert_eq!(spec_tag(OsStr::new("./ns")), "./ns");
        assert_eq!(spec_tag(OsStr::new("proc_1234_ns_net")), "proc_1234_ns_net");
        assert_ne!(
            spec_tag(OsStr::new("/proc/1234/ns/net")),
            spec_tag(OsStr::new("proc_1234_ns_net"))
        );
        assert_eq!(spec_tag(OsStr::new("default")), "/run/netns/default");
    }

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
