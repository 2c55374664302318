//! `acceptq top` against what happens to terminals: the window closed under it, Ctrl-Z and
//! `fg`, a process whose name is a terminal escape sequence. Driven in tmux, as top.rs is.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::*;
use crate::top::{assert_cooked, descendant, Tmux};

tests![
    top_ends_at_once_without_spinning_when_its_terminal_closes_with_sighup_ignored,
    ctrl_z_gives_the_shell_its_terminal_back_and_fg_takes_it_again,
    after_sigstop_and_fg_top_takes_raw_mode_back_from_the_shell,
    a_process_named_with_escape_sequences_cannot_drive_the_terminal
];

/// A namespace with one listener that never accepts, and its port.
fn one_listener(tag: &str) -> (Netns, Driver, u16) {
    let ns = Netns::new(tag);
    let mut d = ns.driver();
    let (_, port) = d.listen("127.0.0.1", 0, 8, false);
    (ns, d, port)
}

fn wait_for_row(tmux: &Tmux, port: u16) {
    let shown = wait_for(Duration::from_secs(10), || {
        tmux.screen()
            .contains(&format!("127.0.0.1:{port} "))
            .then_some(())
    });
    assert!(shown.is_some(), "no row for {port}:\n{}", tmux.screen());
}

/// utime + stime of `pid` in clock ticks, and whether it still runs (not gone, not a zombie).
fn cpu_and_alive(pid: u32) -> (u64, bool) {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return (0, false);
    };
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..]
        .split_whitespace()
        .collect();
    let ticks = rest[11].parse::<u64>().unwrap() + rest[12].parse::<u64>().unwrap();
    (ticks, rest[0] != "Z")
}

fn top_ends_at_once_without_spinning_when_its_terminal_closes_with_sighup_ignored() {
    let test =
        "top_attack::top_ends_at_once_without_spinning_when_its_terminal_closes_with_sighup_ignored";
    if !netns_gate(test) || !skip_unless(have("tmux"), test, "needs tmux") {
        return;
    }
    let (ns, _d, port) = one_listener("tophup");
    // SIGHUP ignored (as under nohup): only the terminal itself can say it is gone. A long
    // refresh, so a failing draw cannot be what ends it.
    let tmux = Tmux::start(
        "tophup",
        100,
        &format!(
            "trap '' HUP; exec ip netns exec {} {} top --refresh 10s",
            ns.name,
            acceptq()
        ),
    );
    wait_for_row(&tmux, port);
    let pid: u32 = tmux.show("#{pane_pid}").parse().unwrap();
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .unwrap()
            .trim(),
        "acceptq"
    );
    let (before, _) = cpu_and_alive(pid);
    let start = Instant::now();
    drop(tmux);
    let mut ticks = before;
    let gone = wait_for(Duration::from_secs(5), || {
        let (t, alive) = cpu_and_alive(pid);
        ticks = ticks.max(t);
        (!alive).then_some(())
    });
    note!(
        "gone after {:?}, {} ticks of CPU since the window closed",
        start.elapsed(),
        ticks - before
    );
    assert!(
        gone.is_some() && start.elapsed() < Duration::from_secs(3),
        "still running {:?} after its terminal went away",
        start.elapsed()
    );
    assert!(
        ticks - before < 50,
        "{} ticks of CPU after the terminal went away: spinning",
        ticks - before
    );
}

/// `acceptq top` started from an interactive shell with job control, as a person has; no line
/// editing, so the terminal at its prompt is in the cooked mode a program finds it in.
fn top_in_a_shell(tag: &str, ns: &Netns, port: u16) -> Tmux {
    let tmux = Tmux::start(
        tag,
        100,
        &format!(
            "env -i PATH={} TERM=screen PS1='$ ' bash --norc --noprofile --noediting -i",
            std::env::var("PATH").unwrap_or_default()
        ),
    );
    tmux.keys(&format!("ip netns exec {} {} top", ns.name, acceptq()));
    tmux.keys("Enter");
    wait_for_row(&tmux, port);
    tmux
}

/// The pane's terminal modes, as `stty -a` prints them.
fn pane_modes(tmux: &Tmux) -> String {
    output_ok(Command::new("stty").args(["-a", "-F", &tmux.show("#{pane_tty}")]))
}

/// Whether the shell in the pane said, within 5 s, that its job stopped.
fn shell_says_stopped(tmux: &Tmux) -> bool {
    wait_for(Duration::from_secs(5), || {
        tmux.screen().contains("Stopped").then_some(())
    })
    .is_some()
}

fn ctrl_z_gives_the_shell_its_terminal_back_and_fg_takes_it_again() {
    let test = "top_attack::ctrl_z_gives_the_shell_its_terminal_back_and_fg_takes_it_again";
    if !netns_gate(test) || !skip_unless(have("tmux") && have("bash"), test, "needs tmux and bash")
    {
        return;
    }
    let (ns, _d, port) = one_listener("topz");
    let tmux = top_in_a_shell("topz", &ns, port);
    let stty = || pane_modes(&tmux);
    let alternate = |want: &str| {
        wait_for(Duration::from_secs(5), || {
            (tmux.show("#{alternate_on}") == want).then_some(())
        })
        .is_some()
    };

    tmux.keys("C-z");
    assert!(
        alternate("0"),
        "Ctrl-Z leaves the alternate screen:\n{}",
        tmux.screen()
    );
    assert!(
        shell_says_stopped(&tmux),
        "the shell says it stopped:\n{}",
        tmux.screen()
    );
    assert_cooked(&stty());

    tmux.keys("fg");
    tmux.keys("Enter");
    assert!(
        alternate("1"),
        "fg takes the screen again:\n{}",
        tmux.screen()
    );
    wait_for_row(&tmux, port);
    assert!(
        stty().split_whitespace().any(|w| w == "-icanon"),
        "raw mode again"
    );
    tmux.answer("s", "sort: drops");

    tmux.keys("q");
    assert!(alternate("0"), "{}", tmux.screen());
    tmux.keys("echo rc=$?");
    tmux.keys("Enter");
    let rc = wait_for(Duration::from_secs(5), || {
        tmux.screen().contains("rc=0").then_some(())
    });
    assert!(rc.is_some(), "q after fg: status 0\n{}", tmux.screen());
    assert_cooked(&stty());
}

fn a_process_named_with_escape_sequences_cannot_drive_the_terminal() {
    let test = "top_attack::a_process_named_with_escape_sequences_cannot_drive_the_terminal";
    if !netns_gate(test) || !skip_unless(have("tmux"), test, "needs tmux") {
        return;
    }
    let ns = Netns::new("topesc");
    // OSC 2 sets the window title: shown raw, the name would rename the pane.
    let name = b"\x1b]2;PWNED\x07";
    let hex: String = name.iter().map(|b| format!("{b:02x}")).collect();
    let script = repo().join("tests/support/named_listeners.py");
    let mut named = Helper::spawn(ns.cmd("python3", &[script.to_str().unwrap(), &hex]));
    let port: u16 = named.expect("ok")[0].parse().unwrap();
    let tmux = Tmux::start(
        "topesc",
        100,
        &format!("exec ip netns exec {} {} top", ns.name, acceptq()),
    );
    let title_before = tmux.show("#{pane_title}");
    wait_for_row(&tmux, port);
    let screen = tmux.screen();
    note!("{screen}");
    assert!(
        screen.contains("?]2;PWNED?"),
        "shown, made harmless: {screen}"
    );
    assert_eq!(
        tmux.show("#{pane_title}"),
        title_before,
        "the title untouched"
    );
    // Its children end when its stdin closes.
    named.stdin.take();
    wait_or_kill(&mut named.child, Duration::from_secs(10));
}

fn after_sigstop_and_fg_top_takes_raw_mode_back_from_the_shell() {
    let test = "top_attack::after_sigstop_and_fg_top_takes_raw_mode_back_from_the_shell";
    if !netns_gate(test) || !skip_unless(have("tmux") && have("bash"), test, "needs tmux and bash")
    {
        return;
    }
    let (ns, _d, port) = one_listener("topcont");
    let tmux = top_in_a_shell("topcont", &ns, port);
    let shell: u32 = tmux.show("#{pane_pid}").parse().unwrap();
    let pid = wait_for(Duration::from_secs(5), || descendant(shell, "acceptq"))
        .expect("acceptq under the shell");
    // SIGSTOP cannot be caught: top gets no chance to give the terminal back, and the shell,
    // seeing its job stopped, sets the terminal to its own (cooked) modes.
    // SAFETY: kill has no memory preconditions; the pid is our acceptq.
    assert_eq!(unsafe { libc::kill(pid as libc::pid_t, libc::SIGSTOP) }, 0);
    assert!(shell_says_stopped(&tmux), "{}", tmux.screen());
    tmux.keys("fg");
    tmux.keys("Enter");
    let raw = wait_for(Duration::from_secs(5), || {
        pane_modes(&tmux)
            .split_whitespace()
            .any(|w| w == "-icanon")
            .then_some(())
    });
    assert!(
        raw.is_some(),
        "raw mode again after fg, so keys need no Enter"
    );
    tmux.answer("s", "sort: drops");
    tmux.keys("q");
    let back = wait_for(Duration::from_secs(5), || {
        (tmux.show("#{alternate_on}") == "0").then_some(())
    });
    assert!(back.is_some(), "{}", tmux.screen());
}
