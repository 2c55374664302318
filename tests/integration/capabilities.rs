//! Capabilities kept to what the flags use: a copy of acceptq with file capabilities, run as
//! nobody, holds only the ones its flags need, none of them in effect between the calls that use
//! them, opens the paths it is given with nobody's rights, and cannot be traced by nobody.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::*;

tests![
    a_file_capability_binary_keeps_only_what_its_flags_use,
    ambient_capabilities_are_cleared_and_the_process_made_undumpable,
    paths_the_user_names_are_opened_with_the_users_own_rights,
    nobody_cannot_trace_or_inspect_acceptq_while_it_holds_capabilities,
    root_keeps_only_what_its_flags_use_and_its_own_file_rights,
];

const SYS_ADMIN: u64 = 1 << 21;
const SYS_PTRACE: u64 = 1 << 19;
const DAC_READ_SEARCH: u64 = 1 << 2;
const FILE_CAPS: &str = "cap_sys_admin,cap_sys_ptrace,cap_dac_read_search+ep";
const STEP: Duration = Duration::from_secs(20);

/// Root, setcap, nobody, and a temp folder whose files may carry capabilities (extended
/// attributes, not mounted nosuid): a copy of acceptq there with [`FILE_CAPS`], executable by
/// nobody. None when the test is skipped.
fn capped_binary(test: &str, tmp: &TempDir) -> Option<PathBuf> {
    if !netns_gate(test)
        || !nobody_gate(test)
        || !skip_unless(have("setcap"), test, "needs setcap (libcap2-bin)")
    {
        return None;
    }
    let bin = tmp.join("acceptq-capped");
    std::fs::copy(acceptq(), &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let set = Command::new("setcap")
        .arg(FILE_CAPS)
        .arg(&bin)
        .output()
        .unwrap();
    let granted = set.status.success()
        && Command::new(&bin)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
    skip_unless(
        granted,
        test,
        "needs a temp folder that keeps file capabilities (setcap failed there)",
    )
    .then_some(bin)
}

/// `nobody:nogroup` running `program args`, through an unprivileged shell's exec (setpriv's own
/// execve still holds root's capabilities).
fn as_nobody(extra: &[&str], program: &Path, args: &[&str]) -> Command {
    let mut c = Command::new("setpriv");
    c.args(AS_NOBODY)
        .args(extra)
        .args(["/bin/sh", "-c", "exec \"$@\"", "sh"])
        .arg(program)
        .args(args);
    c
}

/// `bin` as nobody inside `ns`.
fn nobody_in(ns: &Netns, bin: &Path) -> Command {
    let mut c = ns.cmd("setpriv", &AS_NOBODY);
    c.args(["/bin/sh", "-c", "exec \"$@\"", "sh"]).arg(bin);
    c
}

/// `bin` as nobody inside `ns` with `caps` (setpriv's "+sys_ptrace,+dac_read_search") inherited
/// as ambient capabilities, as a systemd unit's AmbientCapabilities= gives them: no AT_SECURE,
/// so the kernel leaves the process dumpable by its user unless acceptq says otherwise.
fn ambient_in(ns: &Netns, bin: &Path, caps: &str) -> Command {
    let mut c = ns.cmd("setpriv", &AS_NOBODY);
    c.args([
        &format!("--inh-caps=-all,{caps}"),
        &format!("--ambient-caps=-all,{caps}"),
        "/bin/sh",
        "-c",
        "exec \"$@\"",
        "sh",
    ])
    .arg(bin);
    c
}

/// A running acceptq answering a newline with a report, as Telegraf drives it.
struct Running {
    proc: Reaped,
    stdin: std::process::ChildStdin,
    stdout: Lines,
}

impl Running {
    fn start(mut cmd: Command, flags: &[&str]) -> Running {
        cmd.args(["--signal", "stdin", "--format", "json"])
            .args(flags)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = Lines::new(child.stdout.take().unwrap());
        Running {
            proc: Reaped(child),
            stdin,
            stdout,
        }
    }

    fn pid(&self) -> u32 {
        self.proc.0.id()
    }

    /// One report's lines (it ends with an acceptq_netns row per namespace; the last one
    /// comes once the output is quiet for a moment).
    fn report(&mut self) -> Vec<String> {
        self.stdin.write_all(b"\n").unwrap();
        self.stdin.flush().unwrap();
        let mut lines = vec![self.stdout.expect(STEP, "a report")];
        while let Some(l) = self.stdout.next(Duration::from_millis(500)) {
            lines.push(l);
        }
        lines
    }
}

/// `CapEff`, `CapPrm`, `CapInh`, `CapAmb` of a `/proc/<pid>[/task/<tid>]/status`.
fn caps_in(status_path: &str) -> [u64; 4] {
    let text = std::fs::read_to_string(status_path).unwrap();
    ["CapEff:", "CapPrm:", "CapInh:", "CapAmb:"].map(|name| {
        let hex = text
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in {status_path}"));
        u64::from_str_radix(hex.trim(), 16).unwrap()
    })
}

/// The sets of every thread of `pid`, after a report (so all its threads have started and the
/// namespaces and owners are looked up): every thread holds `permitted`, nothing else, and
/// none has a capability in effect, inheritable or ambient.
fn assert_holds_only(pid: u32, permitted: u64, what: &str) {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
    let mut n = 0;
    for t in tasks {
        let tid = t.unwrap().file_name().into_string().unwrap();
        let [eff, prm, inh, amb] = caps_in(&format!("/proc/{pid}/task/{tid}/status"));
        assert_eq!(prm, permitted, "{what}: CapPrm of thread {tid}: {prm:#x}");
        assert_eq!(eff, 0, "{what}: CapEff of thread {tid}: {eff:#x}");
        assert_eq!((inh, amb), (0, 0), "{what}: CapInh, CapAmb of thread {tid}");
        n += 1;
    }
    assert!(n >= 2, "{what}: the sampler thread too ({n} threads)");
}

/// Whether the kernel keeps `pid` undumpable: its `/proc/<pid>` files then belong to root.
fn undumpable(pid: u32) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(format!("/proc/{pid}/status"))
        .unwrap()
        .uid()
        == 0
}

fn a_file_capability_binary_keeps_only_what_its_flags_use() {
    let test = "capabilities::a_file_capability_binary_keeps_only_what_its_flags_use";
    let tmp = TempDir::new("caps-kept");
    let Some(bin) = capped_binary(test, &tmp) else {
        return;
    };
    let ns = Netns::new("caps-kept");
    // root's listener: nobody names its process only with the capabilities raised.
    let mut d = ns.driver();
    let (_, port) = d.listen("127.0.0.1", 0, 8, false);
    let port = port.to_string();
    let rows_for_port = |lines: &[String]| {
        lines
            .iter()
            .filter(|l| l.contains(&format!("\"port\":\"{port}\"")))
            .cloned()
            .collect::<Vec<_>>()
    };

    // Default flags name processes: ptrace and read-search, no CAP_SYS_ADMIN.
    let mut run = Running::start(nobody_in(&ns, &bin), &[]);
    let rows = rows_for_port(&run.report());
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(
        rows[0].contains("\"process\":\"python3\""),
        "the owner is named with the capabilities raised: {rows:?}"
    );
    assert_holds_only(run.pid(), SYS_PTRACE | DAC_READ_SEARCH, "default flags");
    assert!(undumpable(run.pid()));
    drop(run);

    // --no-process: nothing at all.
    let mut run = Running::start(nobody_in(&ns, &bin), &["--no-process"]);
    assert_eq!(rows_for_port(&run.report()).len(), 1);
    assert_holds_only(run.pid(), 0, "--no-process");
    drop(run);

    // --netns NAME --no-process: CAP_SYS_ADMIN only, and the namespace is read through it.
    let mut run = Running::start(
        as_nobody(&[], &bin, &[]),
        &["--netns", &ns.name, "--no-process"],
    );
    let rows = rows_for_port(&run.report());
    assert_eq!(rows.len(), 1, "joined {}: {rows:?}", ns.name);
    assert_holds_only(run.pid(), SYS_ADMIN, "--netns --no-process");
    drop(run);

    // --all-netns --no-process: joining, and reading other users' /proc/<pid>/ns/net; a
    // namespace made after the start is still found and joined by a later rescan.
    // Only our port is reported: other namespaces of the host may hold more listeners than
    // --max-listeners keeps.
    let mut run = Running::start(
        as_nobody(&[], &bin, &[]),
        &["--all-netns", "--no-process", "--port", &port],
    );
    run.report();
    let later = Netns::new("caps-later");
    let mut d2 = later.driver();
    let port2 = d2.listen("127.0.0.1", port.parse().unwrap(), 8, false).1;
    let found = wait_for(STEP, || {
        let lines = run.report();
        let tagged = format!("\"netns\":\"{}\"", later.name);
        lines
            .iter()
            .any(|l| l.contains(&tagged) && l.contains(&format!("\"port\":\"{port2}\"")))
            .then_some(())
    });
    assert!(
        found.is_some(),
        "--all-netns found {} after the drop",
        later.name
    );
    assert_holds_only(
        run.pid(),
        SYS_ADMIN | SYS_PTRACE | DAC_READ_SEARCH,
        "--all-netns --no-process",
    );
}

fn ambient_capabilities_are_cleared_and_the_process_made_undumpable() {
    let test = "capabilities::ambient_capabilities_are_cleared_and_the_process_made_undumpable";
    if !netns_gate(test) || !nobody_gate(test) {
        return;
    }
    let tmp = TempDir::new("caps-ambient");
    let bin = binary_for_nobody(&tmp);
    let ns = Netns::new("caps-ambient");
    let caps = "+sys_ptrace,+dac_read_search,+sys_admin";
    let mut run = Running::start(ambient_in(&ns, &bin, caps), &["--no-process"]);
    run.report();
    assert_holds_only(run.pid(), 0, "ambient, --no-process");
    drop(run);

    let mut run = Running::start(ambient_in(&ns, &bin, caps), &[]);
    run.report();
    assert_holds_only(
        run.pid(),
        SYS_PTRACE | DAC_READ_SEARCH,
        "ambient, default flags",
    );
    assert!(
        undumpable(run.pid()),
        "holding capabilities, it must not be traced or dumped by nobody"
    );
}

/// The first stderr line of `acceptq --once FLAGS` as nobody, and its exit status.
fn refusal(bin: &Path, flags: &[&str]) -> (Option<i32>, String) {
    let mut args = vec!["--once", "--format", "json", "--no-process"];
    args.extend_from_slice(flags);
    let out = as_nobody(&[], bin, &args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.stdout.is_empty(), "no report: {err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    (out.status.code(), err.trim_end().to_string())
}

fn paths_the_user_names_are_opened_with_the_users_own_rights() {
    let test = "capabilities::paths_the_user_names_are_opened_with_the_users_own_rights";
    let tmp = TempDir::new("caps-paths");
    let Some(bin) = capped_binary(test, &tmp) else {
        return;
    };
    let ns = Netns::new("caps-paths");

    // A file nobody may not read: the error nobody gets itself, not what a capability would
    // have learned of it (with CAP_DAC_READ_SEARCH: "is not a network namespace").
    let own = as_nobody(
        &[],
        Path::new(SYSTEM_PYTHON),
        &["-c", "open('/etc/shadow', 'rb')"],
    )
    .output()
    .unwrap();
    assert!(
        String::from_utf8_lossy(&own.stderr).contains("[Errno 13] Permission denied"),
        "nobody cannot read /etc/shadow itself"
    );
    assert_eq!(
        refusal(&bin, &["--netns", "/etc/shadow"]),
        (
            Some(2),
            "E! [acceptq] --netns /etc/shadow: cannot open /etc/shadow: Permission denied \
             (os error 13)"
                .to_string()
        )
    );

    // A root-only folder holding a link to a real namespace, and a name it does not hold: the
    // same refusal for both, so neither the namespace is joined nor whether a name exists told.
    let private = tmp.join("private");
    std::fs::create_dir(&private).unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::symlink(format!("/run/netns/{}", ns.name), private.join("ns")).unwrap();
    let refused = |name: &str, flag: &str, code: i32, message: &str| {
        let path = private.join(name);
        let path = path.to_str().unwrap();
        let got = refusal(&bin, &[flag, path]);
        let want = message.replace("{path}", path);
        assert_eq!(got, (Some(code), want), "{flag} {name}");
    };
    let netns_refusal =
        "E! [acceptq] --netns {path}: cannot open {path}: Permission denied (os error 13)";
    refused("ns", "--netns", 2, netns_refusal);
    refused("absent", "--netns", 2, netns_refusal);

    // --output there: refused, and a link there is not followed to tell where it points.
    std::os::unix::fs::symlink("/nonexistent-secret-place/x.prom", private.join("x.prom")).unwrap();
    let output_refusal = "E! [acceptq] --output {path}: Permission denied (os error 13)";
    refused("x.prom", "--output", 1, output_refusal);
    refused("absent.prom", "--output", 1, output_refusal);
    let left: Vec<_> = std::fs::read_dir(&private)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left.len(), 2, "nothing written: {left:?}");
}

fn nobody_cannot_trace_or_inspect_acceptq_while_it_holds_capabilities() {
    let test = "capabilities::nobody_cannot_trace_or_inspect_acceptq_while_it_holds_capabilities";
    let tmp = TempDir::new("caps-trace");
    let Some(capped) = capped_binary(test, &tmp) else {
        return;
    };
    let plain = binary_for_nobody(&tmp);
    let ns = Netns::new("caps-trace");
    let probe = r#"
import ctypes, errno, os, sys
pid = int(sys.argv[1])
libc = ctypes.CDLL(None, use_errno=True)
PTRACE_ATTACH, PTRACE_SEIZE = 16, 0x4206
for req in (PTRACE_ATTACH, PTRACE_SEIZE):
    r = libc.ptrace(req, pid, None, None)
    print("ptrace", req, r, errno.errorcode.get(ctypes.get_errno(), ctypes.get_errno()))
for f in ("environ", "mem", "fd/0"):
    try:
        open("/proc/%d/%s" % (pid, f), "rb").close()
        print(f, "opened")
    except OSError as e:
        print(f, errno.errorcode[e.errno])
try:
    print("fd listed", len(os.listdir("/proc/%d/fd" % pid)))
except OSError as e:
    print("fd", errno.errorcode[e.errno])
"#;
    let ways = [
        ("file capabilities", nobody_in(&ns, &capped)),
        (
            "ambient capabilities",
            ambient_in(&ns, &plain, "+sys_ptrace,+dac_read_search"),
        ),
    ];
    for (how, cmd) in ways {
        let mut run = Running::start(cmd, &[]);
        run.report();
        let pid = run.pid().to_string();
        let out = as_nobody(&[], Path::new(SYSTEM_PYTHON), &["-c", probe, &pid])
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stdout).to_string();
        note!("{how}: {said}{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(
            said.lines().collect::<Vec<_>>(),
            [
                "ptrace 16 -1 EPERM",
                "ptrace 16902 -1 EPERM",
                "environ EACCES",
                "mem EACCES",
                "fd/0 EACCES",
                "fd EACCES",
            ],
            "{how}"
        );
        // Still working: a report after the probe.
        assert!(run.report().iter().any(|l| l.contains("acceptq_netns")));
    }
}

fn root_keeps_only_what_its_flags_use_and_its_own_file_rights() {
    let test = "capabilities::root_keeps_only_what_its_flags_use_and_its_own_file_rights";
    if !netns_gate(test) || !nobody_gate(test) {
        return;
    }
    let ns = Netns::new("caps-root");
    // A listener of nobody's: root names its process only with CAP_DAC_READ_SEARCH and
    // CAP_SYS_PTRACE, raised from the permitted set.
    let hold = "import socket, time\n\
                s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(4)\n\
                print(s.getsockname()[1], flush=True); time.sleep(120)";
    let mut cmd = ns.cmd("setpriv", &AS_NOBODY);
    cmd.args([SYSTEM_PYTHON, "-c", hold]).stdout(Stdio::piped());
    let mut holder = Reaped(cmd.spawn().unwrap());
    let holder_out = Lines::new(holder.0.stdout.take().unwrap());
    let port = holder_out.expect(STEP, "the holder's port");

    let mut run = Running::start(ns.cmd(acceptq(), &[]), &["--port", &port]);
    let rows = run.report();
    assert!(
        rows.iter()
            .any(|l| l.contains(&format!("\"port\":\"{port}\""))
                && l.contains("\"process\":\"python3\"")),
        "{rows:?}"
    );
    assert_holds_only(
        run.pid(),
        SYS_PTRACE | DAC_READ_SEARCH,
        "root, default flags",
    );
    drop(run);
    let mut run = Running::start(ns.cmd(acceptq(), &[]), &["--no-process"]);
    run.report();
    assert_holds_only(run.pid(), 0, "root, --no-process");
    drop(run);

    // Root's own file access for the paths it names: a folder of nobody's that only nobody
    // may enter, and the namespace file of nobody's process.
    let tmp = TempDir::new("caps-root");
    let private = tmp.join("nobodys");
    std::fs::create_dir(&private).unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    run_ok(Command::new("chown").arg("nobody").arg(&private));
    let target = private.join("x.prom");
    let ns_path = format!("/proc/{}/ns/net", holder.0.id());
    let out = Command::new(acceptq())
        .args([
            "--once",
            "--no-process",
            "--format",
            "prometheus",
            "--output",
        ])
        .arg(&target)
        .args(["--netns", &ns_path, "--port", &port])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let written = std::fs::read_to_string(&target).unwrap();
    assert!(
        written.contains(&format!("port=\"{port}\"")),
        "the namespace of nobody's process, through its /proc path: {written}"
    );
}
