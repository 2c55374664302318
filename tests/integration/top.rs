//! `acceptq top` as a person sees it: run in tmux, read with capture-pane, typed at with
//! send-keys, in a namespace holding a listener whose queue overflows.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::support::*;

tests![
    top_shows_the_overflowing_listener_at_120_and_80_columns_takes_keys_and_q_restores_the_terminal,
    top_answers_keys_at_once_without_colour_under_no_color_and_restores_on_sigterm_and_ctrl_c,
    top_refuses_when_stdout_is_not_a_terminal
];

/// A tmux server of our own (`-L`), killed when the test ends however it ends.
pub(crate) struct Tmux {
    socket: String,
}

impl Tmux {
    /// A detached session of `width` x 30 running `command` under `sh -c`.
    pub(crate) fn start(tag: &str, width: u16, command: &str) -> Tmux {
        // A server of its own per session: one killed just before, still shutting down on the
        // same socket, would take the new session down with it.
        static SERVERS: AtomicUsize = AtomicUsize::new(0);
        let tmux = Tmux {
            socket: format!(
                "aq-{tag}-{}-{}",
                std::process::id(),
                SERVERS.fetch_add(1, Ordering::Relaxed)
            ),
        };
        run_ok(&mut tmux.cmd(&[
            "new-session",
            "-d",
            "-x",
            &width.to_string(),
            "-y",
            "30",
            command,
        ]));
        tmux
    }

    pub(crate) fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("tmux");
        c.args(["-L", &self.socket]).args(args);
        c
    }

    pub(crate) fn screen(&self) -> String {
        output_ok(&mut self.cmd(&["capture-pane", "-p"]))
    }

    pub(crate) fn show(&self, format: &str) -> String {
        output_ok(&mut self.cmd(&["display-message", "-p", format]))
            .trim()
            .to_string()
    }

    /// The screen with its attributes, as escape sequences.
    fn screen_with_attributes(&self) -> String {
        output_ok(&mut self.cmd(&["capture-pane", "-p", "-e"]))
    }

    pub(crate) fn keys(&self, keys: &str) {
        run_ok(&mut self.cmd(&["send-keys", keys]));
    }

    /// Types `keys` and returns how long until the screen shows `want`.
    pub(crate) fn answer(&self, keys: &str, want: &str) -> Duration {
        let start = Instant::now();
        self.keys(keys);
        let shown = wait_for(Duration::from_secs(5), || {
            self.screen().contains(want).then_some(())
        });
        assert!(
            shown.is_some(),
            "{keys:?}: no {want:?} on\n{}",
            self.screen()
        );
        start.elapsed()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .stderr(Stdio::null())
            .status();
    }
}

/// The command tmux runs: acceptq top in the namespace, then the exit status and whether the
/// terminal is back in cooked mode (`stty` prints `icanon` and `echo`, not `-icanon`), written
/// to files; then it stays, so the pane can be read after acceptq is gone.
fn wrapped(ns: &Netns, dir: &TempDir, env: &str, flags: &str) -> String {
    format!(
        "{env} ip netns exec {} {} top {flags}; echo rc=$? > {}; stty -a > {}; exec sleep 60",
        ns.name,
        acceptq(),
        dir.join("rc").display(),
        dir.join("stty").display()
    )
}

/// The status line `wrapped` writes once acceptq has ended (`rc=N`), within 5 s.
fn exit_line(dir: &TempDir) -> Option<String> {
    wait_for(Duration::from_secs(5), || {
        std::fs::read_to_string(dir.join("rc"))
            .ok()
            .filter(|s| s.ends_with('\n'))
    })
}

/// After acceptq ended (by `how`), the terminal `wrapped` saw is cooked again and the pane has
/// left the alternate screen.
fn assert_terminal_back(tmux: &Tmux, dir: &TempDir, how: &str) {
    let stty = wait_for(Duration::from_secs(5), || {
        std::fs::read_to_string(dir.join("stty"))
            .ok()
            .filter(|s| !s.is_empty())
    })
    .unwrap_or_else(|| panic!("{how}: no stty -a within 5 s"));
    assert_cooked(&stty);
    assert_eq!(
        tmux.show("#{alternate_on}"),
        "0",
        "{how}: the alternate screen is left"
    );
}

/// The row of `endpoint` and its cell under `title` (cells are right-aligned under their
/// title, or start where it starts), from a captured screen.
fn cell(screen: &str, endpoint: &str, title: &str) -> Option<String> {
    let header: Vec<char> = screen
        .lines()
        .find(|l| l.starts_with("LISTENER"))?
        .chars()
        .collect();
    let row: Vec<char> = screen
        .lines()
        .find(|l| l.starts_with(&format!("{endpoint} ")))?
        .chars()
        .collect();
    let t: Vec<char> = title.chars().collect();
    let start = header.windows(t.len()).position(|w| w == t.as_slice())?;
    let end = (start + t.len()).min(row.len());
    let mut from = end;
    while from > 0 && row[from - 1] != ' ' {
        from -= 1;
    }
    let text: String = row[from..end].iter().collect();
    (!text.is_empty()).then_some(text)
}

/// A screen showing `endpoint` with depth `3/2` and a drop rate above 0, every line within
/// `width`; keeps the namespace's clients connecting to the full queue meanwhile, so drops go
/// on rising.
fn wait_for_overflow(
    tmux: &Tmux,
    d: &mut Driver,
    id: usize,
    endpoint: &str,
    width: usize,
) -> String {
    let mut last = String::new();
    let found = wait_for(Duration::from_secs(15), || {
        d.connect(id, 5);
        std::thread::sleep(Duration::from_millis(150));
        last = tmux.screen();
        let row = last.lines().find(|l| l.starts_with(endpoint))?;
        let rate: f64 = cell(&last, endpoint, "DROP/s")?.parse().ok()?;
        let fits = last.lines().all(|l| l.chars().count() <= width);
        (row.contains(" 3/2 ") && rate > 0.0 && fits).then(|| last.clone())
    });
    found.unwrap_or_else(|| panic!("no overflowing row for {endpoint} at {width} columns:\n{last}"))
}

fn top_shows_the_overflowing_listener_at_120_and_80_columns_takes_keys_and_q_restores_the_terminal()
{
    let test =
        "top::top_shows_the_overflowing_listener_at_120_and_80_columns_takes_keys_and_q_restores_the_terminal";
    if !netns_gate(test) || !skip_unless(have("tmux"), test, "needs tmux") {
        return;
    }
    let (ns, mut d, id, port) = queued_listener("top", 2, 10, true);
    let dir = TempDir::new("top");
    let tmux = Tmux::start("top", 120, &wrapped(&ns, &dir, "", ""));
    let endpoint = format!("127.0.0.1:{port}");

    let wide = wait_for_overflow(&tmux, &mut d, id, &endpoint, 120);
    note!("at 120 columns:\n{wide}");
    assert_eq!(
        tmux.show("#{alternate_on}"),
        "1",
        "full screen on the alternate screen"
    );
    assert!(
        wide.lines()
            .any(|l| l.starts_with("overflows ") && !l.starts_with("overflows 0/s")),
        "the namespace's overflows per second: {wide}"
    );
    assert!(wide.contains("somaxconn="), "{wide}");
    assert_eq!(
        cell(&wide, &endpoint, "PEAK").as_deref(),
        Some("3"),
        "{wide}"
    );
    assert!(
        cell(&wide, &endpoint, "PROCESS").is_some_and(|p| p.starts_with("python3")),
        "{wide}"
    );
    assert!(ns.ss_drops(port) > 0, "the kernel counts drops too");

    run_ok(&mut tmux.cmd(&["resize-window", "-x", "80", "-y", "24"]));
    let narrow = wait_for_overflow(&tmux, &mut d, id, &endpoint, 80);
    note!("at 80 columns:\n{narrow}");
    let header = narrow.lines().find(|l| l.starts_with("LISTENER")).unwrap();
    for title in [
        "PROCESS", "QUEUE", "PEAK", "MAX", "60s", "DROP/s", "WAIT", "SYN",
    ] {
        assert!(header.contains(title), "{title} at 80 columns: {header}");
    }

    assert!(
        has_colour(&tmux.screen_with_attributes()),
        "coloured without NO_COLOR"
    );

    tmux.answer("s", "sort: drops");
    tmux.answer("/", "filter (port, process or address): ");
    tmux.keys("1");
    tmux.answer("Enter", "no listener matches port 1");
    tmux.answer("Escape", &format!("{endpoint} "));

    tmux.keys("q");
    assert_eq!(
        exit_line(&dir).as_deref(),
        Some("rc=0\n"),
        "q quits with status 0"
    );
    assert_terminal_back(&tmux, &dir, "q");
    assert!(
        !tmux.screen().contains("LISTENER"),
        "the shell's screen is back"
    );
}

/// Whether a screen captured with its attributes sets any colour (SGR 30-37, 38, 40-47, 48,
/// 90-97, 100-107; 39 and 49 are the default colours).
fn has_colour(screen: &str) -> bool {
    screen.split("\x1b[").skip(1).any(|seq| {
        let Some(end) = seq.find('m') else {
            return false;
        };
        seq[..end].split(';').any(|p| {
            matches!(
                p.parse::<u32>(),
                Ok(30..=38 | 40..=48 | 90..=97 | 100..=107)
            )
        })
    })
}

/// The terminal left as a shell wants it: line editing and echo on.
pub(crate) fn assert_cooked(stty: &str) {
    let words: Vec<&str> = stty.split_whitespace().collect();
    for flag in ["icanon", "echo", "isig"] {
        assert!(words.contains(&flag), "{flag} back on: {stty}");
    }
}

/// The pid of the process named `comm` under `pid` (tmux's shell runs `ip netns exec`, which
/// becomes acceptq).
pub(crate) fn descendant(pid: u32, comm: &str) -> Option<u32> {
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
    children
        .split_whitespace()
        .filter_map(|c| c.parse().ok())
        .find_map(|c: u32| {
            let name = std::fs::read_to_string(format!("/proc/{c}/comm")).unwrap_or_default();
            if name.trim() == comm {
                Some(c)
            } else {
                descendant(c, comm)
            }
        })
}

fn top_answers_keys_at_once_without_colour_under_no_color_and_restores_on_sigterm_and_ctrl_c() {
    let test = "top::top_answers_keys_at_once_without_colour_under_no_color_and_restores_on_sigterm_and_ctrl_c";
    if !netns_gate(test) || !skip_unless(have("tmux"), test, "needs tmux") {
        return;
    }
    let (ns, _d, _id, port) = queued_listener("topsig", 2, 10, false);
    for how in ["sigterm", "ctrl-c"] {
        let dir = TempDir::new("topsig");
        let tmux = Tmux::start(
            "topsig",
            100,
            &wrapped(&ns, &dir, "NO_COLOR=1", "--refresh 10s"),
        );
        let shown = wait_for(Duration::from_secs(10), || {
            tmux.screen()
                .contains(&format!("127.0.0.1:{port} "))
                .then_some(())
        });
        assert!(shown.is_some(), "{how}: no row:\n{}", tmux.screen());
        let attributes = tmux.screen_with_attributes();
        assert!(
            !has_colour(&attributes),
            "NO_COLOR=1: no colour\n{attributes:?}"
        );
        let start = Instant::now();
        match how {
            "sigterm" => {
                let shell: u32 = tmux.show("#{pane_pid}").parse().unwrap();
                let pid = descendant(shell, "acceptq").expect("acceptq under the pane's shell");
                // SAFETY: kill has no memory preconditions; the pid is our acceptq.
                assert_eq!(unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) }, 0);
            }
            _ => tmux.keys("C-c"),
        }
        assert_eq!(
            exit_line(&dir).as_deref(),
            Some("rc=0\n"),
            "{how}: status 0"
        );
        note!("{how}: gone after {:?}", start.elapsed());
        assert_terminal_back(&tmux, &dir, how);
    }
}

fn top_refuses_when_stdout_is_not_a_terminal() {
    let out = Command::new(acceptq())
        .args(["top", "--no-process"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(out.stdout.is_empty(), "no escape codes into a pipe");
    assert!(
        err.starts_with(
            "E! [acceptq] acceptq top draws a live screen and needs a terminal on stdout"
        ),
        "{err}"
    );
    assert!(
        err.contains("acceptq check"),
        "says what to use instead: {err}"
    );
}
