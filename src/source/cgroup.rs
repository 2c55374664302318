//! What a process's cgroup path (`/proc/<pid>/cgroup`) says about the container it runs in: the
//! container id, as the runtimes name their cgroups, and whether Kubernetes placed it.
//!
//! Pure: text in, answer out. The layouts, innermost component first:
//! - Docker, cgroupfs driver: `/docker/<64 hex>` (also nested, `/docker/<id>/docker/<id>`);
//! - Docker, systemd driver: `/system.slice/docker-<64 hex>.scope`;
//! - containerd CRI: `/kubepods.slice/.../cri-containerd-<64 hex>.scope`;
//! - CRI-O: `/kubepods.slice/.../crio-<64 hex>.scope`, cgroupfs driver `/kubepods/.../crio-<64 hex>`
//!   (`crio-conmon-…` is its monitor, not the container);
//! - podman: `/machine.slice/libpod-<64 hex>.scope[/container]`, cgroupfs driver
//!   `/libpod_parent/libpod-<64 hex>` (`libpod-conmon-…`: monitor);
//! - Kubernetes, cgroupfs driver: `/kubepods/<qos>/pod<uid>/<64 hex>`.
//!
//! The unified (v2, `0::`) line is read first, then the v1 lines in order; the first path naming
//! a container wins. Any other text gives no id, never a panic.

/// Hex digits of a full container id.
const ID_LEN: usize = 64;
/// Hex digits shown, as `docker ps` shows them.
pub const SHORT_ID: usize = 12;

/// What one process's cgroups say.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Placement {
    /// The container id's first 12 hex digits.
    pub container: Option<String>,
    /// A `kubepods` cgroup: Kubernetes placed the process (its pod names the namespace).
    pub kubernetes: bool,
}

/// Reads `/proc/<pid>/cgroup` text.
pub fn placement(text: &str) -> Placement {
    let paths = || {
        let unified = text.lines().filter_map(|l| l.strip_prefix("0::"));
        let v1 = text
            .lines()
            .filter(|l| !l.starts_with("0::"))
            .filter_map(|l| l.splitn(3, ':').nth(2));
        unified.chain(v1)
    };
    Placement {
        container: paths().find_map(container_of_path),
        kubernetes: paths().any(|p| p.split('/').any(|c| c.starts_with("kubepods"))),
    }
}

/// The container id named by one cgroup path, innermost component first.
pub fn container_of_path(path: &str) -> Option<String> {
    path.split('/').rev().find_map(container_of_component)
}

fn container_of_component(c: &str) -> Option<String> {
    // The systemd drivers name a scope; CRI-O's and podman's cgroupfs drivers the same words
    // without `.scope` (`/kubepods/besteffort/pod<uid>/crio-<id>`).
    let unit = c.strip_suffix(".scope").unwrap_or(c);
    let id = ["docker-", "cri-containerd-", "crio-", "libpod-"]
        .iter()
        .find_map(|p| unit.strip_prefix(p))
        .unwrap_or(c);
    let full = id.len() == ID_LEN && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    full.then(|| id[..SHORT_ID].to_string())
}

/// Whether `comm` is a pod's or a podman pod's infrastructure process, which holds the
/// namespace for the application containers and names nothing a person runs.
pub fn is_infra(comm: &str) -> bool {
    matches!(comm, "pause" | "catatonit")
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f2a9c1b7d4e5f60718293a4b5c6d7e8f90123456789abcdef0123456789abcd";
    const SHORT: &str = "3f2a9c1b7d4e";

    fn v2(path: &str) -> Placement {
        placement(&format!("0::{path}\n"))
    }

    fn v1(path: &str) -> Placement {
        placement(&format!(
            "12:pids:{path}\n9:name=systemd:{path}\n1:cpu,cpuacct:{path}\n0::/\n"
        ))
    }

    fn container(path: &str) -> Option<String> {
        let (a, b) = (v2(path), v1(path));
        assert_eq!(a, b, "v1 and v2 read alike: {path}");
        a.container
    }

    #[test]
    fn docker_layouts_on_both_cgroup_versions() {
        assert_eq!(container(&format!("/docker/{ID}")).as_deref(), Some(SHORT));
        assert_eq!(
            container(&format!("/system.slice/docker-{ID}.scope")).as_deref(),
            Some(SHORT)
        );
        // Docker in Docker: the innermost container is the one the process runs in.
        let other = "ab".repeat(32);
        assert_eq!(
            container(&format!("/docker/{other}/docker/{ID}")).as_deref(),
            Some(SHORT)
        );
        assert!(!v2(&format!("/docker/{ID}")).kubernetes);
    }

    #[test]
    fn kubernetes_runtimes_on_both_cgroup_versions() {
        let uid = "pod0b1c2d3e_4f50_6172_8394_a5b6c7d8e9f0";
        for scope in ["cri-containerd", "crio", "docker"] {
            let path = format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-{uid}.slice/{scope}-{ID}.scope"
            );
            assert_eq!(container(&path).as_deref(), Some(SHORT), "{path}");
            assert!(v2(&path).kubernetes && v1(&path).kubernetes);
        }
        let cgroupfs = format!("/kubepods/burstable/pod0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0/{ID}");
        assert_eq!(container(&cgroupfs).as_deref(), Some(SHORT));
        assert!(v2(&cgroupfs).kubernetes);
        // CRI-O's cgroupfs driver names the container's cgroup without `.scope`; its monitor
        // beside it names nothing.
        let crio =
            format!("/kubepods/besteffort/pod0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0/crio-{ID}");
        assert_eq!(container(&crio).as_deref(), Some(SHORT));
        assert_eq!(container(&crio.replace("crio-", "crio-conmon-")), None);
        // A guaranteed pod has no QoS level in its path.
        let guaranteed = format!("/kubepods/pod0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0/{ID}");
        assert_eq!(container(&guaranteed).as_deref(), Some(SHORT));
        // A pod's own cgroup, with no container below it: Kubernetes, no id.
        let pod = placement("0::/kubepods.slice/kubepods-besteffort.slice\n");
        assert_eq!((pod.container, pod.kubernetes), (None, true));
    }

    #[test]
    fn podman_and_its_monitors() {
        assert_eq!(
            container(&format!("/machine.slice/libpod-{ID}.scope")).as_deref(),
            Some(SHORT)
        );
        // podman's cgroupns puts the payload one level down.
        assert_eq!(
            container(&format!("/machine.slice/libpod-{ID}.scope/container")).as_deref(),
            Some(SHORT)
        );
        // podman's cgroupfs driver: no scope.
        assert_eq!(
            container(&format!("/libpod_parent/libpod-{ID}")).as_deref(),
            Some(SHORT)
        );
        // conmon watches a container from outside it.
        assert_eq!(
            container(&format!("/machine.slice/libpod-conmon-{ID}.scope")),
            None
        );
        assert_eq!(
            container(&format!("/kubepods.slice/crio-conmon-{ID}.scope")),
            None
        );
    }

    #[test]
    fn the_unified_line_is_read_before_v1() {
        let other = "cd".repeat(32);
        let text = format!("4:memory:/docker/{other}\n0::/system.slice/docker-{ID}.scope\n");
        assert_eq!(placement(&text).container.as_deref(), Some(SHORT));
        // No id in v2 (a hybrid host keeps v2 empty): v1 names it.
        let text = format!("4:memory:/docker/{other}\n0::/\n");
        assert_eq!(placement(&text).container.as_deref(), Some("cdcdcdcdcdcd"));
    }

    #[test]
    fn no_container_outside_one() {
        for text in [
            "0::/\n",
            "0::/system.slice/nginx.service\n",
            "0::/user.slice/user-1000.slice/session-2.scope\n",
            "9:name=systemd:/\n0::/\n",
            "",
        ] {
            assert_eq!(placement(text), Placement::default(), "{text:?}");
        }
    }

    #[test]
    fn hostile_text_gives_no_id_and_never_panics() {
        let short = &ID[..63];
        let upper = ID.to_uppercase();
        let long = format!("{ID}0");
        for path in [
            format!("/docker/{short}"),
            format!("/docker/{upper}"),
            format!("/docker/{long}"),
            format!("/system.slice/docker-{short}.scope"),
            format!("/system.slice/docker-{ID}.scop"),
            format!("/system.slice/docker_{ID}.scope"),
            "/docker/zz".repeat(40),
            format!("/docker/{}", "é".repeat(32)),
            "/".repeat(10_000),
        ] {
            assert_eq!(container_of_path(&path), None, "{path}");
        }
        for text in [
            "garbage",
            ":::::",
            "0::",
            "\n\n\n",
            "1:cpu",
            "\u{0}\u{ff}",
            &"x".repeat(1 << 20),
            &format!("0::/{}\n", "a/".repeat(100_000)),
        ] {
            let p = placement(text);
            assert_eq!(p.container, None);
        }
        // A huge line that ends in a real id still finds it.
        let huge = format!("0::/{}docker/{ID}\n", "x/".repeat(100_000));
        assert_eq!(placement(&huge).container.as_deref(), Some(SHORT));
    }

    #[test]
    fn infrastructure_processes() {
        assert!(is_infra("pause") && is_infra("catatonit"));
        assert!(!is_infra("nginx") && !is_infra("pause2") && !is_infra(""));
    }
}

#[cfg(test)]
mod prop {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(crate::prop_config(512))]

        #[test]
        fn any_text_names_no_container_or_one_it_holds(text in "([0-9]{1,2}:[a-z=,]{0,8}:|/|docker-|crio-|libpod-|cri-containerd-|[0-9a-f]{8,64}|\\.scope|kubepods|\n){0,12}") {
            let p = placement(&text);
            if let Some(id) = p.container {
                prop_assert_eq!(id.len(), SHORT_ID);
                prop_assert!(id.bytes().all(|b| b.is_ascii_hexdigit()) && text.contains(&id));
            }
            prop_assert!(!p.kubernetes || text.contains("kubepods"));
        }

        #[test]
        fn any_bytes_never_panic(text in any::<String>()) {
            let _ = placement(&text);
        }

        #[test]
        fn each_runtime_layout_gives_the_id(id in "[0-9a-f]{64}", prefix in proptest::sample::select(vec!["docker-", "cri-containerd-", "crio-", "libpod-", ""]), scope in any::<bool>()) {
            let unit = if scope && !prefix.is_empty() { format!("{prefix}{id}.scope") } else { format!("{prefix}{id}") };
            let p = placement(&format!("0::/some.slice/{unit}\n"));
            prop_assert_eq!(p.container.as_deref(), Some(&id[..SHORT_ID]));
            // One hex digit short is no id.
            let short = format!("0::/some.slice/{prefix}{}\n", &id[1..]);
            prop_assert_eq!(placement(&short).container, None);
        }
    }
}
