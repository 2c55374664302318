//! Capabilities and paths under attack: what a user of the host can make a privileged acceptq
//! (root, or a file-capability copy) do with a path it is given.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use crate::support::*;

tests![root_does_not_follow_another_users_link_in_a_sticky_shared_folder,];

/// nobody's uid, as `id -u nobody` says it.
fn nobody_uid() -> u32 {
    let out = Command::new("id").args(["-u", "nobody"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

fn root_does_not_follow_another_users_link_in_a_sticky_shared_folder() {
    let test =
        "capabilities_attack::root_does_not_follow_another_users_link_in_a_sticky_shared_folder";
    if !netns_gate(test) || !nobody_gate(test) {
        return;
    }
    let tmp = TempDir::new("caps-sticky");
    // A root-only file, and a folder like /tmp where nobody plants a link to it at the name
    // root's --output is given.
    let victim = tmp.join("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).unwrap();
    let shared = tmp.join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let planted = shared.join("acceptq.prom");
    std::os::unix::fs::symlink(&victim, &planted).unwrap();
    std::os::unix::fs::lchown(&planted, Some(nobody_uid()), None).unwrap();

    let ns = Netns::new("caps-sticky");
    let write_to = |path: &std::path::Path| {
        ns.cmd(
            acceptq(),
            &["--once", "--no-process", "--format", "prometheus"],
        )
        .arg("--output")
        .arg(path)
        .output()
        .unwrap()
    };
    let out = write_to(&planted);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    note!("{err}");
    assert_eq!(
        std::fs::read_to_string(&victim).unwrap(),
        "precious\n",
        "root replaced the file another user's link points to"
    );
    assert_eq!(out.status.code(), Some(1), "{err}");
    let p = planted.display();
    assert_eq!(
        err.trim_end(),
        format!(
            "E! [acceptq] --output {p}: {p} is a symbolic link of another user (uid {}) in {}, \
             a sticky folder anyone may write: not followed, as the kernel's \
             fs.protected_symlinks refuses",
            nobody_uid(),
            shared.display()
        )
    );
    assert!(planted.is_symlink(), "the link is left as it was");

    // Root's own link there is followed, as the kernel would.
    let own = shared.join("own.prom");
    let real = tmp.join("real.prom");
    std::os::unix::fs::symlink(&real, &own).unwrap();
    let out = write_to(&own);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(std::fs::read_to_string(&real)
        .unwrap()
        .contains("acceptq_netns"));
}
