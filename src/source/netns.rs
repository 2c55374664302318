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
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::caps;

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
        open(&escaped(spec), PathBuf::from(spec), spec_tag(spec), 0)
    } else {
        resolve_named(spec)
    }
}

/// The file `--netns NAME|PATH` opens: `/run/netns/NAME`, or the path itself.
pub fn spec_path(spec: &OsStr) -> PathBuf {
    if is_path(spec) {
        PathBuf::from(spec)
    } else {
        Path::new(NAMED_DIR).join(spec)
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
        0,
    )
}

/// Opens the namespace file `path` with the capabilities `raise` added: none for a path the
/// user named, which is opened with the user's own rights (a capability must not answer for a
/// file its user could not read, nor tell whether it exists); [`caps::PROC`] for one found.
fn open(spec: &str, path: PathBuf, name: String, raise: u64) -> Result<Netns, NetnsError> {
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
    let file = caps::with(raise, || open_nsfs(&path)).map_err(|(step, e)| err(step)(e))?;
    // Proves it is a namespace we may join before the first report needs it.
    run_in(Some(&file), || ()).map_err(err(Step::Join))?;
    Ok(Netns {
        name,
        file: Some(Arc::new(file)),
    })
}

/// `statfs`' `f_type` of nsfs, the file system of namespace files (linux/magic.h).
const NSFS_MAGIC: i64 = 0x6e73_6673;

/// Opens `path` for `setns` only when it is a file on nsfs. It is looked at first through
/// `O_PATH`, which opens nothing: a FIFO with no writer would block `open` forever, and a
/// device's own open (a watchdog's, a tape's) must not run for a mistyped `--netns`. Anything
/// else is refused as `setns` refuses a file that is no namespace, with EINVAL at the join step.
fn open_nsfs(path: &Path) -> Result<File, (Step, io::Error)> {
    let not_a_namespace = || (Step::Join, io::Error::from_raw_os_error(libc::EINVAL));
    let probe = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH)
        .open(path)
        .map_err(|e| (Step::Open, e))?;
    if !on_nsfs(&probe) {
        // What opening it would have said first: a file the caller may not read is refused as
        // unreadable, which tells no more than `open` does.
        readable(path).map_err(|e| (Step::Open, e))?;
        return Err(not_a_namespace());
    }
    // Non-blocking too: the path may have been replaced by a FIFO since it was looked at.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| (Step::Open, e))?;
    let id = |f: &File| f.metadata().ok().map(|m| (m.dev(), m.ino()));
    if id(&file).is_none() || id(&file) != id(&probe) {
        return Err(not_a_namespace());
    }
    Ok(file)
}

/// Whether the caller's effective ids may read `path`, asked without opening it.
fn readable(path: &Path) -> io::Result<()> {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: faccessat reads a valid NUL-terminated path.
    match unsafe { libc::faccessat(libc::AT_FDCWD, c.as_ptr(), libc::R_OK, libc::AT_EACCESS) } {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

fn on_nsfs(file: &File) -> bool {
    // SAFETY: statfs is plain data; fstatfs fills it from a valid fd (O_PATH ones included).
    unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        libc::fstatfs(file.as_raw_fd(), &mut st) == 0 && st.f_type as i64 == NSFS_MAGIC
    }
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

/// Identity of a namespace: the device and inode of its nsfs file. Unique among live
/// namespaces; an inode may be given again once its namespace is freed, which cannot happen to a
/// namespace acceptq watches, as it holds it open.
pub type Identity = (u64, u64);

/// Where `ip netns` keeps its namespaces, and Docker its sandboxes': a name there is the one a
/// person knows (`ip netns list`, a sandbox id), in this order of preference.
const DOCKER_DIR: &str = "/run/docker/netns";

/// A network namespace found on the host, by its bind mounts or its processes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    pub identity: Identity,
    /// Its nsfs bind mounts, visible ones only (a mount hidden under another is not).
    pub mounts: Vec<PathBuf>,
    /// The processes in it (as the host numbers them), ascending.
    pub pids: Vec<u32>,
    /// Its `netns` tag: see [`found_names`].
    pub name: String,
}

/// Every network namespace on the host, as `lsns -t net` finds them.
#[derive(Debug, Default)]
pub struct Discovery {
    pub found: Vec<Found>,
    /// The host's namespace: pid 1's, or ours when pid 1's cannot be read.
    pub host: Option<Identity>,
    /// Processes whose namespace could not be read (another user's, without CAP_SYS_PTRACE).
    pub hidden: usize,
    /// The first of them, and why, for the warning.
    pub hidden_first: Option<(u32, io::Error)>,
    /// Why the scan is not whole (mountinfo or `/proc` could not be read, as when file
    /// descriptors run out): what it lacks must not be taken for namespaces gone.
    pub incomplete: Option<io::Error>,
}

/// The mount points of the network namespaces bind-mounted in a `/proc/self/mountinfo` text:
/// file system `nsfs`, root `net:[INODE]` (other namespace kinds are bind-mounted too). The
/// last mount on a path hides the others there, so each path appears once. Octal escapes
/// (`\040` for a space) are undone; the path may be any bytes.
pub fn nsfs_net_mounts(mountinfo: &[u8]) -> Vec<PathBuf> {
    use std::os::unix::ffi::OsStringExt;
    let mut out: Vec<PathBuf> = Vec::new();
    for line in mountinfo.split(|b| *b == b'\n') {
        let fields: Vec<&[u8]> = line.split(|b| *b == b' ').collect();
        // id parent maj:min root mountpoint options [optional...] - fstype source superopts
        let Some(dash) = fields.iter().position(|f| *f == b"-") else {
            continue;
        };
        if dash < 5 || fields.get(dash + 1) != Some(&&b"nsfs"[..]) {
            continue;
        }
        if !fields[3].starts_with(b"net:[") {
            continue;
        }
        let path = PathBuf::from(OsString::from_vec(unescape_octal(fields[4])));
        out.retain(|p| *p != path);
        out.push(path);
    }
    out
}

/// `\NNN` octal escapes, as the kernel writes space, tab, newline and `\` in mountinfo paths.
fn unescape_octal(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        let digits = text.get(i + 1..i + 4);
        let code = digits
            .filter(|d| text[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)))
            .map(|d| d.iter().fold(0u32, |n, c| n * 8 + u32::from(c - b'0')))
            .filter(|n| *n <= 0xff);
        match code {
            Some(n) => {
                out.push(n as u8);
                i += 4;
            }
            None => {
                out.push(text[i]);
                i += 1;
            }
        }
    }
    out
}

/// Where a bind mount's name comes from, best first.
fn mount_rank(path: &Path) -> (u8, &Path) {
    let rank = match path.parent() {
        Some(dir) if dir == Path::new(NAMED_DIR) => 0,
        Some(dir) if dir == Path::new(DOCKER_DIR) => 1,
        _ => 2,
    };
    (rank, path)
}

/// The `netns` tag a bind mount gives: in `/run/netns` the `ip netns` name ([`named_tag`]);
/// elsewhere the file name (a Docker sandbox id) when it is plain UTF-8 text that cannot be
/// taken for another kind of tag, else the whole path, escaped as [`spec_tag`] does.
fn mount_tag(path: &Path) -> String {
    let file = path.file_name().unwrap_or_default();
    if mount_rank(path).0 == 0 {
        return named_tag(file);
    }
    match file.to_str() {
        Some(f) if plain_name(f) => f.to_string(),
        _ => spec_tag(path.as_os_str()),
    }
}

/// A file name usable as a tag as it is: not our own namespace's name, not an `ino-` name, no
/// `\` (the escapes' mark) and not empty.
fn plain_name(f: &str) -> bool {
    !f.is_empty() && f != OWN_NAME && !f.starts_with("ino-") && !f.contains('\\')
}

/// Names the namespaces found, each unique: the host's is `default`; one with a bind mount takes
/// the best mount's tag ([`mount_tag`]: `/run/netns` first, then Docker's, then any other by
/// path); one held only by processes is `ino-<inode>`. When two namespaces would share a name,
/// those not named by `/run/netns` are named by their mount's whole path instead (paths differ).
pub fn found_names(found: &mut [Found], host: Option<Identity>) {
    for f in found.iter_mut() {
        f.mounts.sort_by(|a, b| mount_rank(a).cmp(&mount_rank(b)));
    }
    let first: Vec<String> = found
        .iter()
        .map(|f| match f.mounts.first() {
            _ if Some(f.identity) == host => OWN_NAME.to_string(),
            Some(m) => mount_tag(m),
            None => format!("ino-{}", f.identity.1),
        })
        .collect();
    for (i, f) in found.iter_mut().enumerate() {
        let shared = first.iter().filter(|n| **n == first[i]).count() > 1;
        f.name = match f.mounts.first() {
            Some(m) if shared && mount_rank(m).0 > 0 => spec_tag(m.as_os_str()),
            _ => first[i].clone(),
        };
    }
}

/// Finds every network namespace: the nsfs bind mounts of our mount namespace, and the
/// namespace of every process, joined by identity and named ([`found_names`]). Other users'
/// `/proc/<pid>/ns/net` and bind mounts in private folders are read with [`caps::PROC`].
pub fn discover() -> Discovery {
    caps::with(caps::PROC, discover_now)
}

fn discover_now() -> Discovery {
    use std::collections::BTreeMap;
    let mut by_id: BTreeMap<Identity, Found> = BTreeMap::new();
    fn entry(by_id: &mut BTreeMap<Identity, Found>, id: Identity) -> &mut Found {
        by_id.entry(id).or_insert_with(|| Found {
            identity: id,
            mounts: Vec::new(),
            pids: Vec::new(),
            name: String::new(),
        })
    }
    let ours = std::fs::metadata("/proc/self/ns/net")
        .ok()
        .map(|m| (m.dev(), m.ino()));
    let mut incomplete = None;
    let mountinfo = std::fs::read("/proc/self/mountinfo").unwrap_or_else(|e| {
        incomplete = Some(e);
        Vec::new()
    });
    for path in nsfs_net_mounts(&mountinfo) {
        // A bind mount under a directory mounted over later is still listed, but its path now
        // names whatever the upper file system has there: only a file on nsfs is a namespace.
        match std::fs::metadata(&path) {
            Ok(m) if ours.is_some_and(|(nsfs, _)| m.dev() == nsfs) => {
                entry(&mut by_id, (m.dev(), m.ino())).mounts.push(path);
            }
            _ => {}
        }
    }
    let mut hidden = 0;
    let mut hidden_first = None;
    let proc_dir = std::fs::read_dir("/proc")
        .map_err(|e| incomplete = Some(e))
        .ok();
    if let (Some(dir), Some((nsfs, _))) = (proc_dir, ours) {
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else {
                continue;
            };
            // Every namespace is on the one nsfs device: the link's text names the inode, at
            // half the cost of a stat (measured: 3.6 against 6.9 µs a process).
            match std::fs::read_link(format!("/proc/{pid}/ns/net")) {
                Ok(link) => {
                    if let Some(ino) = net_link_inode(link.as_os_str().as_bytes()) {
                        entry(&mut by_id, (nsfs, ino)).pids.push(pid);
                    }
                }
                // A process that ended meanwhile is no news.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    hidden += 1;
                    hidden_first.get_or_insert((pid, e));
                }
            }
        }
    }
    let host = std::fs::metadata("/proc/1/ns/net")
        .ok()
        .map(|m| (m.dev(), m.ino()))
        .or(ours);
    if let Some(id) = ours {
        entry(&mut by_id, id);
    }
    let mut found: Vec<Found> = by_id.into_values().collect();
    for f in &mut found {
        f.pids.sort_unstable();
    }
    found_names(&mut found, host);
    Discovery {
        found,
        host,
        hidden,
        hidden_first,
        incomplete,
    }
}

/// Whether we hold capability number `cap` (`CAP_SYS_PTRACE` is 19): in the permitted set,
/// from which it is raised around the calls that use it.
pub fn have_capability(cap: u32) -> bool {
    cap < 64 && caps::held(cap)
}

/// The inode in a `/proc/<pid>/ns/net` link's text, `net:[4026531840]`.
fn net_link_inode(link: &[u8]) -> Option<u64> {
    let digits = link.strip_prefix(b"net:[")?.strip_suffix(b"]")?;
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Opens a namespace `--all-netns` found, by one of its processes (the next one when a process
/// ends first), else by its best bind mount; the error is the first way's. A file opened
/// through a bind mount holds that mount: `umount` without `-l` would then fail with "target is
/// busy" for as long as acceptq watches, so the mount is the last way.
pub fn open_found(f: &Found) -> Result<Netns, NetnsError> {
    let mut first = None;
    let ways = f
        .pids
        .iter()
        .map(|p| PathBuf::from(format!("/proc/{p}/ns/net")))
        .chain(f.mounts.iter().cloned());
    for path in ways {
        let spec = f.name.clone();
        match open(&spec, path, f.name.clone(), caps::PROC) {
            Ok(ns) if identity_of(&ns) == Some(f.identity) => return Ok(ns),
            // A process gone and its pid taken by another: not this namespace.
            Ok(_) => continue,
            // The reason to tell is the first that is not a process gone meanwhile.
            Err(e) => {
                let e = e.listed();
                if first.as_ref().map_or(true, |f| is_gone(f) && !is_gone(&e)) {
                    first = Some(e);
                }
            }
        }
    }
    Err(first.unwrap_or_else(|| NetnsError {
        spec: f.name.clone(),
        path: PathBuf::from(format!("/proc/*/ns/net ({})", f.name)),
        step: Step::Open,
        listed: true,
        source: io::Error::from(io::ErrorKind::NotFound),
    }))
}

/// The namespace file vanished: a process that ended, a bind mount removed.
pub fn is_gone(e: &NetnsError) -> bool {
    e.step == Step::Open && e.source.kind() == io::ErrorKind::NotFound
}

/// The host name in the UTS namespace of `pid` (a pod's name, as the kubelet sets it), read by
/// joining it on a short-lived thread (needs CAP_SYS_ADMIN); with the namespace's identity.
pub fn uts_hostname(pid: u32) -> io::Result<(Identity, String)> {
    let file = caps::with(caps::PROC, || File::open(format!("/proc/{pid}/ns/uts")))?;
    let m = file.metadata()?;
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                join(&file, libc::CLONE_NEWUTS)?;
                // The sysctl answers for the reading thread's UTS namespace.
                let name = std::fs::read_to_string("/proc/sys/kernel/hostname")?;
                Ok(((m.dev(), m.ino()), name.trim_end_matches('\n').to_string()))
            })
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("namespace helper thread panicked")))
    })
}

/// Moves the calling thread into the namespace `ns` of kind `kind`, with CAP_SYS_ADMIN raised
/// for that call only: what runs there afterwards has the thread's usual capabilities.
fn join(ns: &File, kind: libc::c_int) -> io::Result<()> {
    let _raised = caps::raise(caps::JOIN);
    // SAFETY: setns on a valid fd the caller owns; it changes only this short-lived thread.
    if unsafe { libc::setns(ns.as_raw_fd(), kind) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Runs `f` with the calling context in namespace `ns` (`None`: ours, on this thread).
pub fn run_in<T: Send>(ns: Option<&File>, f: impl FnOnce() -> T + Send) -> io::Result<T> {
    let Some(ns) = ns else { return Ok(f()) };
    // A scoped thread joins the namespace and ends, so no thread of ours is left in it.
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                join(ns, libc::CLONE_NEWNET)?;
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

    /// `--netns PATH` of a file that is no namespace fails at once, saying so, whatever it is.
    #[test]
    fn a_fifo_device_or_directory_as_netns_is_refused_at_once() {
        let dir = std::env::temp_dir().join(format!("acceptq-netns-kinds-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_bytes()).unwrap();
        // SAFETY: mkfifo reads a valid C string.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        std::fs::write(dir.join("file"), b"not a namespace").unwrap();
        let paths = [
            fifo,
            dir.join("file"),
            dir.clone(),
            PathBuf::from("/dev/zero"),
        ];
        for path in paths {
            let (tx, rx) = std::sync::mpsc::channel();
            let p = path.clone();
            // On a thread: an open that blocks must fail the test, not hang it.
            std::thread::spawn(move || {
                tx.send(
                    resolve(p.as_os_str())
                        .map(|_| ())
                        .map_err(|e| e.to_string()),
                )
            });
            let got = rx.recv_timeout(std::time::Duration::from_secs(5));
            let shown = path.display().to_string();
            match got {
                Ok(Err(msg)) => assert_eq!(
                    msg,
                    format!("--netns {shown}: {shown} is not a network namespace")
                ),
                Ok(Ok(())) => panic!("{shown} was taken for a namespace"),
                Err(_) => panic!("--netns {shown} still opening after 5 s"),
            }
        }
        // The real thing passes the check (joining it is another matter: CAP_SYS_ADMIN).
        assert!(open_nsfs(Path::new("/proc/self/ns/net")).is_ok());
        assert!(open_nsfs(Path::new("/proc/self/ns/uts")).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }

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

    fn found(ino: u64, mounts: &[&str], pids: &[u32]) -> Found {
        Found {
            identity: (4, ino),
            mounts: mounts.iter().map(PathBuf::from).collect(),
            pids: pids.to_vec(),
            name: String::new(),
        }
    }

    fn names(mut f: Vec<Found>, host: Option<Identity>) -> Vec<String> {
        found_names(&mut f, host);
        f.into_iter().map(|f| f.name).collect()
    }

    #[test]
    fn mountinfo_gives_the_network_namespaces_bind_mounted() {
        let text = b"\
22 1 0:21 / /proc rw,nosuid - proc proc rw
611 25 0:4 net:[4026532281] /run/netns/blue rw shared:5 - nsfs nsfs rw
612 25 0:4 net:[4026532282] /run/docker/netns/1a2b3c4d5e6f rw - nsfs nsfs rw
613 25 0:4 mnt:[4026532283] /run/snapd/ns/lxd.mnt rw - nsfs nsfs rw
614 25 0:4 net:[4026532284] /tmp/with\\040space rw - nsfs nsfs rw
615 25 0:4 net:[4026532285] /run/netns/blue rw - nsfs nsfs rw
garbage line
616 25 0:4 net:[1] - nsfs
";
        let mounts = nsfs_net_mounts(text);
        assert_eq!(
            mounts,
            [
                "/run/docker/netns/1a2b3c4d5e6f",
                "/tmp/with space",
                "/run/netns/blue"
            ]
            .map(PathBuf::from)
        );
        assert_eq!(unescape_octal(b"a\\134b\\012\\0"), b"a\\b\n\\0");
        assert_eq!(unescape_octal(b"\\777"), b"\\777");
        assert!(nsfs_net_mounts(&[0xff; 5000]).is_empty());
    }

    #[test]
    fn a_namespace_link_names_its_inode() {
        assert_eq!(net_link_inode(b"net:[4026531840]"), Some(4026531840));
        for bad in [
            &b"mnt:[4026531840]"[..],
            b"net:[]",
            b"net:[12",
            b"net:[-1]",
            b"",
            b"net:[\xff]",
        ] {
            assert_eq!(net_link_inode(bad), None, "{bad:?}");
        }
        // The same identity as a stat of the link gives.
        let link = std::fs::read_link("/proc/self/ns/net").unwrap();
        let m = std::fs::metadata("/proc/self/ns/net").unwrap();
        assert_eq!(net_link_inode(link.as_os_str().as_bytes()), Some(m.ino()));
    }

    #[test]
    fn namespaces_are_named_by_their_best_mount_else_their_inode() {
        let got = names(
            vec![
                found(1, &[], &[1, 2]),
                found(
                    2,
                    &["/run/docker/netns/1a2b3c4d5e6f", "/run/netns/blue"],
                    &[],
                ),
                found(3, &["/run/docker/netns/1a2b3c4d5e6f0"], &[40]),
                found(4, &[], &[50]),
                found(5, &["/var/run/x/default"], &[]),
                found(6, &["/var/run/x/ino-4"], &[]),
            ],
            Some((4, 1)),
        );
        assert_eq!(
            got,
            [
                "default",
                "blue",
                "1a2b3c4d5e6f0",
                "ino-4",
                "/var/run/x/default",
                "/var/run/x/ino-4"
            ]
        );
    }

    #[test]
    fn a_name_two_namespaces_would_share_goes_to_the_one_from_ip_netns() {
        let got = names(
            vec![
                found(1, &["/run/netns/web"], &[]),
                found(2, &["/run/docker/netns/web"], &[]),
                found(3, &["/srv/ns/web"], &[]),
            ],
            None,
        );
        assert_eq!(got, ["web", "/run/docker/netns/web", "/srv/ns/web"]);
        let got = names(
            vec![
                found(2, &["/run/docker/netns/a"], &[]),
                found(3, &["/srv/a"], &[]),
            ],
            None,
        );
        assert_eq!(got, ["/run/docker/netns/a", "/srv/a"]);
    }
}

#[cfg(test)]
mod prop {
    use std::os::unix::ffi::OsStrExt;

    use proptest::prelude::*;

    use super::*;

    /// A path as the kernel writes it in mountinfo: space, tab, newline and `\` as `\NNN`.
    fn escaped_path(path: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for &b in path {
            if matches!(b, b' ' | b'\t' | b'\n' | b'\\') {
                out.extend_from_slice(format!("\\{b:03o}").as_bytes());
            } else {
                out.push(b);
            }
        }
        out
    }

    fn line(path: &[u8], fstype: &str, root: &str, optional: usize) -> Vec<u8> {
        let mut l = format!("412 30 0:4 {root} ").into_bytes();
        l.extend_from_slice(&escaped_path(path));
        l.extend_from_slice(b" rw,nosuid");
        for i in 0..optional {
            l.extend_from_slice(format!(" shared:{i}").as_bytes());
        }
        l.extend_from_slice(format!(" - {fstype} nsfs rw\n").as_bytes());
        l
    }

    proptest! {
        #![proptest_config(crate::prop_config(256))]

        #[test]
        fn any_bytes_give_mount_points_each_once(bytes in proptest::collection::vec(prop_oneof![any::<u8>(), Just(b' '), Just(b'\n'), Just(b'-'), Just(b'\\')], 0..300)) {
            let mounts = nsfs_net_mounts(&bytes);
            for (i, m) in mounts.iter().enumerate() {
                prop_assert!(!mounts[..i].contains(m));
            }
        }

        /// Any path bytes (but NUL, which no path holds) come back as they were, other
        /// namespace kinds and file systems are not taken, and a path mounted twice is one.
        #[test]
        fn network_namespace_mounts_read_back_exactly(paths in proptest::collection::vec(proptest::collection::vec(1u8..=255, 1..20), 1..5), optional in 0usize..3) {
            let mut text = Vec::new();
            for p in &paths {
                text.extend_from_slice(&line(p, "nsfs", "net:[4026532000]", optional));
                text.extend_from_slice(&line(p, "nsfs", "uts:[4026532001]", optional));
                text.extend_from_slice(&line(p, "tmpfs", "net:[4026532000]", optional));
            }
            let mut want: Vec<PathBuf> = Vec::new();
            for p in &paths {
                let p = PathBuf::from(OsStr::from_bytes(p));
                want.retain(|w| *w != p);
                want.push(p);
            }
            prop_assert_eq!(nsfs_net_mounts(&text), want);
        }

        #[test]
        fn a_namespace_link_gives_its_inode_or_none(ino in any::<u64>(), junk in proptest::collection::vec(any::<u8>(), 0..12)) {
            prop_assert_eq!(net_link_inode(format!("net:[{ino}]").as_bytes()), Some(ino));
            if net_link_inode(&junk).is_some() {
                prop_assert!(junk.starts_with(b"net:[") && junk.ends_with(b"]"));
            }
        }
    }
}
