//! `--all-netns` against what container hosts do to it: bind mounts hidden under later mounts,
//! and unmounted while their namespace is watched. (A namespace freed gives its inode to the
//! next one made: that is tested beside the code, in watch.rs.)

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::*;

tests![
    a_bind_mount_hidden_under_a_later_mount_is_not_taken_for_a_namespace,
    a_watched_namespace_with_a_process_leaves_its_bind_mount_free_to_unmount,
    out_of_file_descriptors_the_namespaces_watched_are_kept_report_after_report,
];

fn inode_of(ns: &Netns) -> u64 {
    fs::metadata(Path::new("/run/netns").join(&ns.name))
        .unwrap()
        .ino()
}

/// A namespace bind-mounted in a directory that is mounted over later (a tmpfs on top) stays in
/// mountinfo, but its path now names a plain file: that file is not a namespace, and nothing is
/// said about it.
fn a_bind_mount_hidden_under_a_later_mount_is_not_taken_for_a_namespace() {
    let test =
        "containers_attack::a_bind_mount_hidden_under_a_later_mount_is_not_taken_for_a_namespace";
    if !netns_gate(test) {
        return;
    }
    let tmp = TempDir::new("atk-hidden");
    let dir = tmp.join("netns");
    fs::create_dir(&dir).unwrap();
    let file = dir.join("sandbox");
    fs::write(&file, "").unwrap();
    let ns = Netns::new("atk-hidden");
    let target = format!("/run/netns/{}", ns.name);
    run_ok(Command::new("mount").arg("--bind").arg(&target).arg(&file));
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _bind = Unmount(file.clone());
    run_ok(
        Command::new("mount")
            .args(["-t", "tmpfs", "none"])
            .arg(&dir),
    );
    let _over = Unmount(dir.clone());
    fs::write(&file, "not a namespace").unwrap();
    let out = Command::new(acceptq())
        .args(["--all-netns", "--once", "--no-process", "--format", "json"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        !err.contains("is not a network namespace") && !err.contains(&*file.to_string_lossy()),
        "{err}"
    );
    // The namespace itself is still found through /run/netns.
    let report = json_lines(&out.stdout);
    assert!(
        report
            .iter()
            .any(|m| m["name"] == "acceptq_netns" && m["tags"]["netns"] == ns.name.as_str()),
        "{err}"
    );
}

/// A namespace with both a process and an `ip netns` bind mount is watched without holding the
/// mount: a plain `umount` (no `-l`) of it succeeds while acceptq runs, and the namespace, still
/// held by its process, goes on being reported under its inode.
fn a_watched_namespace_with_a_process_leaves_its_bind_mount_free_to_unmount() {
    let test = "containers_attack::a_watched_namespace_with_a_process_leaves_its_bind_mount_free_to_unmount";
    if !netns_gate(test) {
        return;
    }
    let tmp = TempDir::new("atk-busy");
    let out_path = tmp.join("stdout");
    let ns = Netns::new("atk-busy");
    let inode = inode_of(&ns);
    let _holder = Reaped(ns.cmd("sleep", &["60"]).spawn().unwrap());
    let child = Command::new(acceptq())
        .args([
            "--all-netns",
            "--interval",
            "1s",
            "--sample",
            "0",
            "--no-process",
        ])
        .args(["--format", "json"])
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out_path).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _child = Reaped(child);
    let reported = |name: &str| {
        let text = fs::read_to_string(&out_path).unwrap_or_default();
        text.contains(&format!("\"netns\":\"{name}\""))
            .then_some(())
    };
    assert!(
        wait_for(Duration::from_secs(10), || reported(&ns.name)).is_some(),
        "{} is reported",
        ns.name
    );
    let mount = format!("/run/netns/{}", ns.name);
    let umount = Command::new("umount").arg(&mount).output().unwrap();
    assert!(
        umount.status.success(),
        "umount {mount}: {}",
        String::from_utf8_lossy(&umount.stderr)
    );
    assert!(
        wait_for(Duration::from_secs(10), || reported(&format!(
            "ino-{inode}"
        )))
        .is_some(),
        "still reported, by its inode, once its mount is gone"
    );
}

/// With too few file descriptors for every namespace, the ones acceptq could open stay watched:
/// a rescan that cannot read `/proc` (no descriptor left) does not drop them all, to open them
/// again a report later with their deltas lost.
fn out_of_file_descriptors_the_namespaces_watched_are_kept_report_after_report() {
    let test = "containers_attack::out_of_file_descriptors_the_namespaces_watched_are_kept_report_after_report";
    if !netns_gate(test) || !skip_unless(have("prlimit"), test, "needs prlimit (util-linux)") {
        return;
    }
    let tmp = TempDir::new("atk-fds");
    let out_path = tmp.join("stdout");
    let many: Vec<Netns> = (0..20).map(|_| Netns::new("atk-fds")).collect();
    let child = Command::new("prlimit")
        .arg("--nofile=120")
        .arg(acceptq())
        .args([
            "--all-netns",
            "--interval",
            "1s",
            "--no-process",
            "--format",
            "json",
        ])
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out_path).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = Reaped(child);
    std::thread::sleep(Duration::from_millis(4500));
    let _ = child.0.kill();
    let _ = child.0.wait();
    drop(many);
    let report = json_lines(&fs::read(&out_path).unwrap());
    let mut per_report: Vec<(u64, usize)> = Vec::new();
    for m in report.iter().filter(|m| m["name"] == "acceptq_netns") {
        let t = m["timestamp"].as_u64().unwrap();
        match per_report.last_mut() {
            Some((last, n)) if *last == t => *n += 1,
            _ => per_report.push((t, 1)),
        }
    }
    note!("namespaces per report: {per_report:?}");
    assert!(per_report.len() >= 3, "{per_report:?}");
    assert!(per_report[0].1 > 1, "some namespaces fit: {per_report:?}");
    // Other tests' namespaces come and go meanwhile; ours stay, so no report falls back to
    // our own namespace alone.
    assert!(
        per_report.iter().all(|r| r.1 > 1),
        "the namespaces opened stay watched: {per_report:?}"
    );
}
