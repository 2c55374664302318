//! Which listeners are reported: `--port`, `--exclude-port`, `--address`, `--process`.

use std::net::IpAddr;

#[derive(Debug, Default, Clone)]
pub struct Filter {
    pub ports: Vec<u16>,
    pub exclude_ports: Vec<u16>,
    /// Globs over the canonical address text (`127.0.0.1`, `::`, `10.*`); a device-bound
    /// listener also matches as `ADDRESS%INTERFACE` (`fe80::1%eth0`, `*%eth0`).
    pub addresses: Vec<String>,
    /// Globs over the process name; a listener whose process is unknown does not match.
    pub processes: Vec<String>,
}

impl Filter {
    pub fn matches(
        &self,
        addr: &IpAddr,
        interface: Option<&str>,
        port: u16,
        process: Option<&str>,
    ) -> bool {
        if !self.may_match(addr, interface, port) {
            return false;
        }
        if !self.processes.is_empty() {
            match process {
                Some(p) if self.processes.iter().any(|g| glob(g, p)) => {}
                _ => return false,
            }
        }
        true
    }
}

impl Filter {
    /// Whether a listener may be reported, by what is known of it when the namespace is read:
    /// its address, device and port. Its process is found later and is not asked here.
    pub fn may_match(&self, addr: &IpAddr, interface: Option<&str>, port: u16) -> bool {
        if !self.ports.is_empty() && !self.ports.contains(&port) {
            return false;
        }
        if self.exclude_ports.contains(&port) {
            return false;
        }
        if !self.addresses.is_empty() {
            let text = addr.to_string();
            let scoped = interface.map(|i| format!("{text}%{i}"));
            let hit = |g: &String| glob(g, &text) || scoped.as_ref().is_some_and(|s| glob(g, s));
            if !self.addresses.iter().any(hit) {
                return false;
            }
        }
        true
    }
}

/// Shell-style match with `*` (any run) and `?` (one character); everything else literal.
pub fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        // A `*` is always the wildcard, also where the text holds a `*`: taken as a literal
        // there, it would leave no star to fall back on.
        if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matches_like_a_shell() {
        assert!(glob("nginx", "nginx"));
        assert!(glob("ngi*", "nginx"));
        assert!(glob("*x", "nginx"));
        assert!(glob("n?inx", "nginx"));
        assert!(glob("*", ""));
        assert!(glob("10.*.1", "10.0.0.1"));
        assert!(!glob("ngi", "nginx"));
        assert!(!glob("*y", "nginx"));
        assert!(glob("::*", "::1"));
    }

    #[test]
    fn a_star_stays_a_wildcard_where_the_text_has_a_star() {
        // Found by fuzzing: the star was matched as a literal `*` and then nothing was left.
        assert!(glob("*", "*x"));
        assert!(glob("**", "**\u{17}*"));
        assert!(glob("a*", "a*b"));
        assert!(!glob("*b", "*x"));
    }

    #[test]
    fn filters_combine() {
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let f = Filter {
            ports: vec![80, 443],
            exclude_ports: vec![443],
            ..Default::default()
        };
        assert!(f.matches(&lo, None, 80, None));
        assert!(!f.matches(&lo, None, 443, None));
        assert!(!f.matches(&lo, None, 22, None));
        let f = Filter {
            addresses: vec!["127.*".into()],
            processes: vec!["py*".into()],
            ..Default::default()
        };
        assert!(f.matches(&lo, None, 1, Some("python3")));
        assert!(!f.matches(&lo, None, 1, Some("nginx")));
        assert!(
            !f.matches(&lo, None, 1, None),
            "unknown process does not match --process"
        );
        assert!(!f.matches(&"::1".parse().unwrap(), None, 1, Some("python3")));
    }

    #[test]
    fn a_device_bound_listener_matches_by_address_or_address_and_device() {
        let ll: IpAddr = "fe80::1".parse().unwrap();
        let on = |glob: &str, interface| {
            Filter {
                addresses: vec![glob.into()],
                ..Default::default()
            }
            .matches(&ll, interface, 1, None)
        };
        assert!(on("fe80::1", Some("v0")));
        assert!(on("fe80::1%v0", Some("v0")));
        assert!(on("*%v0", Some("v0")));
        assert!(!on("fe80::1%v0", Some("v2")));
        assert!(!on("*%v0", None));
    }
}

#[cfg(test)]
mod prop {
    use proptest::prelude::*;

    use super::*;

    /// Shell-style matching written the obvious way, recursing over both strings.
    fn model(p: &[char], t: &[char]) -> bool {
        match (p.first(), t.first()) {
            (None, _) => t.is_empty(),
            (Some('*'), _) => model(&p[1..], t) || (!t.is_empty() && model(p, &t[1..])),
            (Some(_), None) => false,
            (Some(&c), Some(&d)) => (c == '?' || c == d) && model(&p[1..], &t[1..]),
        }
    }

    proptest! {
        #![proptest_config(crate::prop_config(1024))]

        /// Over a small alphabet holding the wildcards themselves, where matches are frequent.
        #[test]
        fn glob_agrees_with_the_model(pattern in "[ab*?.]{0,8}", text in "[ab*?.]{0,12}") {
            let p: Vec<char> = pattern.chars().collect();
            let t: Vec<char> = text.chars().collect();
            prop_assert_eq!(glob(&pattern, &text), model(&p, &t));
        }

        #[test]
        fn glob_never_panics(pattern in any::<String>(), text in any::<String>()) {
            let _ = glob(&pattern, &text);
            prop_assert!(glob(&pattern.replace(['*', '?'], ""), &pattern.replace(['*', '?'], "")));
        }
    }
}
