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
