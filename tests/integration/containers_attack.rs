//! `--all-netns` against what container hosts do to it: namespaces freed and their inode given
//! to the next one made, bind mounts hidden under later mounts.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::*;

tests![
    a_namespace_given_the_inode_of_one_that_failed_is_tried_afresh,
    a_bind_mount_hidden_under_a_later_mount_is_not_taken_for_a_namespace,
    a_watched_namespace_with_a_process_leaves_its_bind_mount_free_to_unmount,
];

fn inode_of(ns: &Netns) -> u64 {
    fs::metadata(Path::new("/run/netns").join(&ns.name))
        .unwrap()
        .ino()
}

/// acceptq as root without CAP_SYS_ADMIN cannot enter namespace A and says so. A goes; the
/// kernel gives A's inode to the next namespace made, B. B is a new namespace: acceptq must try
/// it (and say it cannot enter it), not take it for A and skip it for good.
fn a_namespace_given_the_inode_of_one_that_failed_is_tried_afresh() {
    let test = "containers_attack::a_namespace_given_the_inode_of_one_that_failed_is_tried_afresh";
    if !netns_gate(test) || !skip_unless(have("setpriv"), test, "needs setpriv (util-linux)") {
        return;
    }
    let tmp = TempDir::new("atk-reuse");
    let err_path = tmp.join("stderr");
    let child = Command::new("setpriv")
        .args(["--inh-caps", "-sys_admin", "--bounding-set", "-sys_admin"])
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
        .stdout(Stdio::null())
        .stderr(fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let _child = Reaped(child);
    // Failures of one rescan share a line per reason: the name may be in its list.
    let said = |name: &str| {
        fs::read_to_string(&err_path)
            .unwrap_or_default()
            .lines()
            .any(|l| l.contains("cannot join") && l.contains(name))
    };
    // Other tests make namespaces meanwhile and may take the freed inode first: try again.
    for attempt in 0..3 {
        let a = Netns::new("atk-a");
        let inode = inode_of(&a);
        assert!(
            wait_for(Duration::from_secs(10), || said(&a.name).then_some(())).is_some(),
            "A is said: {}",
            fs::read_to_string(&err_path).unwrap_or_default()
        );
        drop(a);
        // Two reports without A.
        std::thread::sleep(Duration::from_millis(2500));
        let mut b = None;
        let mut others = Vec::new();
        for _ in 0..200 {
            let n = Netns::new("atk-b");
            if inode_of(&n) == inode {
                b = Some(n);
                break;
            }
            others.push(n);
            if others.len() > 8 {
                others.remove(0);
            }
        }
        drop(others);
        let Some(b) = b else {
            note!("attempt {attempt}: inode {inode} was not given to any of 200 namespaces");
            continue;
        };
        note!("{} has the inode {inode} of the namespace gone", b.name);
        assert!(
            wait_for(Duration::from_secs(10), || said(&b.name).then_some(())).is_some(),
            "B, a new namespace with A's inode, is tried and said: {}",
            fs::read_to_string(&err_path).unwrap_or_default()
        );
        return;
    }
    panic!("the kernel never gave a freed namespace inode to a new namespace here");
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
