//! `acceptq top`: the report's rows, live, full screen. The terminal is taken (raw mode, the
//! alternate screen) only after the sources are open, and given back on every way out: `q`,
//! Esc, Ctrl-C (a key in raw mode), SIGTERM and SIGINT, a lost terminal, and a panic.

pub mod model;
mod tty;
pub mod view;

use std::io::{self, IsTerminal, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::event::{Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::crossterm::terminal::{
    disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen,
};
use ratatui::crossterm::{cursor, execute};
use ratatui::Terminal;

use crate::cli::TopArgs;
use crate::output::{self, Wake};
use crate::reporter::{Reporter, RunError};
use crate::warn;
use model::{Filter, Model};
use tty::News;
use view::Ui;

/// Warnings said while the screen was up, printed again once it is gone; bounded like the
/// warnings themselves (each is said once).
const MAX_SAID: usize = 256;

pub fn main(args: &TopArgs) -> ExitCode {
    if let Err(msg) = check_terminal(io::stdout().is_terminal(), std::env::var_os("TERM")) {
        warn::error(&msg);
        return ExitCode::from(2);
    }
    if let Err(msg) = check_flags(args) {
        warn::error(&msg);
        return ExitCode::from(2);
    }
    let reporter = match Reporter::for_terminal(&args.select, args.sample, false) {
        Ok(r) => r,
        Err(RunError::Usage(msg)) => {
            warn::error(&msg);
            return ExitCode::from(2);
        }
        Err(RunError::Fatal(msg)) => {
            warn::error(&msg);
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = output::stop_on_signals() {
        warn::warn(&format!(
            "SIGTERM would leave the terminal in raw mode (`reset` restores it): {e}"
        ));
    }
    let mut screen = match Screen::take() {
        Ok(s) => s,
        Err(e) => {
            warn::error(&format!("cannot take the terminal: {e}"));
            return ExitCode::FAILURE;
        }
    };
    let mut app = App::new(reporter, args.refresh);
    let result = app.run(&mut screen);
    drop(screen);
    for line in warn::release_stderr().iter().chain(&app.said) {
        // Said on the screen's status line, which is gone now.
        let _ = writeln!(io::stderr(), "{line}");
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            warn::error(&e);
            ExitCode::FAILURE
        }
    }
}

/// Refuses what cannot show a screen (exit status 2): stdout not a terminal, or a terminal that
/// says it cannot move its cursor (`TERM=dumb`: Emacs's shell, some CI consoles), where the
/// screen would arrive as a stream of escape codes.
fn check_terminal(
    stdout_is_terminal: bool,
    term: Option<std::ffi::OsString>,
) -> Result<(), String> {
    if !stdout_is_terminal {
        return Err(
            "acceptq top draws a live screen and needs a terminal on stdout; in a script or a \
             pipe use `acceptq check` for a verdict or `acceptq --once --window 5s` for a report"
                .into(),
        );
    }
    if term.is_some_and(|t| t == "dumb") {
        return Err(
            "acceptq top draws a live screen, which TERM=dumb says this terminal cannot show; \
             use `acceptq check` for a verdict, or set TERM (TERM=xterm) if it can"
                .into(),
        );
    }
    Ok(())
}

/// Refuses flags that cannot work together (exit status 2).
fn check_flags(args: &TopArgs) -> Result<(), String> {
    match args.sample.filter(|s| *s > args.refresh) {
        Some(sample) => Err(format!(
            "--sample {sample:?} is longer than --refresh {:?}: a refresh would come with no \
             sample of its own; sample at least as often as the screen refreshes",
            args.refresh
        )),
        None => Ok(()),
    }
}

/// The terminal while the screen is up. Dropping it gives the terminal back.
struct Screen {
    term: Terminal<CrosstermBackend<io::Stdout>>,
}

/// The terminal is ours (raw mode, alternate screen): what [`restore`] undoes, once.
static TAKEN: AtomicBool = AtomicBool::new(false);

/// A panic in any thread: the main loop stops (in a debug build only; release aborts).
static PANICKED: AtomicBool = AtomicBool::new(false);

impl Screen {
    fn take() -> io::Result<Screen> {
        // Before raw mode: a panic from here on restores the terminal before its message.
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            PANICKED.store(true, Ordering::SeqCst);
            previous(info);
        }));
        warn::hold_stderr();
        TAKEN.store(true, Ordering::SeqCst);
        let taken = (|| {
            enable_raw_mode()?;
            execute!(io::stdout(), EnterAlternateScreen, cursor::Hide)?;
            Terminal::new(CrosstermBackend::new(io::stdout()))
        })();
        taken.map(|term| Screen { term }).inspect_err(|_| {
            // Half taken: give back what was, and let the error be said on stderr.
            restore();
            for line in warn::release_stderr() {
                let _ = writeln!(io::stderr(), "{line}");
            }
        })
    }

    /// Gives the terminal back and stops, as Ctrl-Z does to a program in cooked mode; takes it
    /// again once continued.
    fn suspend(&mut self) -> Result<(), String> {
        restore();
        tty::stop().map_err(|e| format!("cannot stop for Ctrl-Z: {e}"))?;
        self.retake()
    }

    /// Takes the terminal again and draws the whole screen anew: after a stop the shell has
    /// set its own modes and drawn over the screen.
    fn retake(&mut self) -> Result<(), String> {
        let taken = (|| {
            // Out of raw mode first, so that raw mode starts again from the shell's modes.
            disable_raw_mode()?;
            TAKEN.store(true, Ordering::SeqCst);
            enable_raw_mode()?;
            execute!(io::stdout(), EnterAlternateScreen, cursor::Hide)?;
            self.term.clear()
        })();
        taken.map_err(|e| format!("cannot take the terminal again: {e}"))
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        restore();
    }
}

/// Leaves the alternate screen, shows the cursor and ends raw mode, if the terminal is ours.
fn restore() {
    if !TAKEN.swap(false, Ordering::SeqCst) {
        return;
    }
    let _ = execute!(io::stdout(), LeaveAlternateScreen, cursor::Show);
    let _ = disable_raw_mode();
}

/// What wakes the main loop besides the refresh.
enum Wakeup {
    Tty(tty::News),
    /// SIGTERM or SIGINT.
    Stop,
}

/// Keys and signals arrive on one channel, so the loop waits for either or the next refresh.
fn listen() -> Receiver<Wakeup> {
    let (tx, rx) = mpsc::channel();
    let keys: Sender<Wakeup> = tx.clone();
    std::thread::spawn(move || tty::read(|news| keys.send(Wakeup::Tty(news)).is_ok()));
    std::thread::spawn(move || {
        // No stdout to watch, no input, no limit: only the stop signals wake it.
        if output::wait(false, None, None) == Wake::Stopped {
            let _ = tx.send(Wakeup::Stop);
        }
    });
    rx
}

/// What a key asks for.
#[derive(Debug, PartialEq, Eq)]
enum Action {
    Quit,
    /// Ctrl-Z: give the terminal back and stop until `fg`.
    Suspend,
    Redraw,
    None,
}

struct App {
    reporter: Reporter,
    model: Model,
    ui: Ui,
    /// When the previous reading was taken: the deltas' span.
    read_at: Option<Instant>,
    said: Vec<String>,
}

impl App {
    fn new(reporter: Reporter, refresh: Duration) -> App {
        App {
            reporter,
            model: Model::new(refresh),
            ui: Ui {
                colour: colour_allowed(std::env::var_os("NO_COLOR")),
                refresh,
                ..Ui::default()
            },
            read_at: None,
            said: Vec::new(),
        }
    }

    fn refresh(&mut self) {
        let now = Instant::now();
        let built = self.reporter.read();
        let elapsed = self.read_at.map(|t| now.duration_since(t));
        self.read_at = Some(now);
        self.model.update(&built.metrics.to_vec(), elapsed);
        self.ui.clock = clock(SystemTime::now());
        self.take_warnings();
    }

    fn take_warnings(&mut self) {
        for line in warn::take_held() {
            if self.said.len() < MAX_SAID {
                self.said.push(line.clone());
            }
            self.ui.status = Some(line);
        }
    }

    fn run(&mut self, screen: &mut Screen) -> Result<(), String> {
        let wakeups = listen();
        let refresh = self.ui.refresh;
        self.refresh();
        let mut next = Instant::now() + refresh;
        loop {
            if PANICKED.load(Ordering::SeqCst) {
                return Err("a thread panicked (said above)".into());
            }
            let mut page = self.ui.page;
            screen
                .term
                .draw(|f| page = view::draw(f, &self.model, &self.ui))
                .map_err(|e| format!("cannot draw on the terminal: {e}"))?;
            self.ui.page = page;
            let left = next.saturating_duration_since(Instant::now());
            match wakeups.recv_timeout(left) {
                Ok(Wakeup::Tty(News::Input(Event::Key(k)))) => {
                    match answer(&mut self.model, &mut self.ui, k) {
                        Action::Quit => return Ok(()),
                        Action::Suspend => screen.suspend()?,
                        Action::Redraw | Action::None => {}
                    }
                }
                Ok(Wakeup::Tty(News::Suspend)) => screen.suspend()?,
                Ok(Wakeup::Tty(News::Resume)) => screen.retake()?,
                // A resize or anything else: drawn again at once.
                Ok(Wakeup::Tty(News::Input(_) | News::Resize)) => {}
                Ok(Wakeup::Tty(News::InputGone(e))) => {
                    return Err(format!("cannot read keys from the terminal: {e}"))
                }
                // Nobody is left to see the screen: as with a closed stdout, end quietly.
                Ok(Wakeup::Tty(News::HangUp)) | Ok(Wakeup::Stop) => return Ok(()),
                Err(RecvTimeoutError::Timeout) => {
                    self.refresh();
                    // A slow reading does not make refreshes pile up.
                    next = (next + refresh).max(Instant::now());
                }
                Err(RecvTimeoutError::Disconnected) => return Err("the key reader stopped".into()),
            }
        }
    }
}

/// Answers one key at once; the screen is drawn again after it.
fn answer(model: &mut Model, ui: &mut Ui, k: KeyEvent) -> Action {
    if k.kind == KeyEventKind::Release {
        return Action::None;
    }
    if k.modifiers.contains(KeyModifiers::CONTROL) {
        match k.code {
            KeyCode::Char('c') => return Action::Quit,
            KeyCode::Char('z') => return Action::Suspend,
            _ => {}
        }
    }
    if let Some(text) = &mut ui.input {
        match k.code {
            KeyCode::Enter => {
                model.filter = Filter::parse(text);
                ui.input = None;
                ui.scroll = 0;
            }
            KeyCode::Esc => {
                model.filter = None;
                ui.input = None;
            }
            KeyCode::Backspace => {
                text.pop();
            }
            KeyCode::Char(c) if text.chars().count() < 64 && !c.is_control() => text.push(c),
            _ => {}
        }
        return Action::Redraw;
    }
    match k.code {
        KeyCode::Char('q') | KeyCode::Char('Q') => return Action::Quit,
        // Esc first takes back a filter, so clearing one never quits by surprise.
        KeyCode::Esc if model.filter.is_some() => model.filter = None,
        KeyCode::Esc => return Action::Quit,
        KeyCode::Char('s') => {
            model.sort = model.sort.next();
            ui.scroll = 0;
        }
        KeyCode::Char('/') => ui.input = Some(String::new()),
        KeyCode::Down | KeyCode::Char('j') => ui.scroll += 1,
        KeyCode::Up | KeyCode::Char('k') => ui.scroll = ui.scroll.saturating_sub(1),
        KeyCode::PageDown => ui.scroll += ui.page.max(1),
        KeyCode::PageUp => ui.scroll = ui.scroll.saturating_sub(ui.page.max(1)),
        KeyCode::Home => ui.scroll = 0,
        _ => return Action::None,
    }
    // Kept where the last page starts, so Up moves the screen at once after many Downs.
    ui.scroll = ui
        .scroll
        .min(model.rows().len().saturating_sub(ui.page.max(1)));
    Action::Redraw
}

/// `NO_COLOR` turns colour off when set to anything but the empty string (no-color.org).
fn colour_allowed(no_color: Option<std::ffi::OsString>) -> bool {
    no_color.map_or(true, |v| v.is_empty())
}

/// `HH:MM:SS UTC` of a wall-clock time.
fn clock(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) % 86_400;
    format!(
        "{:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_is_utc_time_of_day() {
        let t = UNIX_EPOCH + Duration::from_secs(3 * 86_400 + 3 * 3600 + 12 * 60 + 9);
        assert_eq!(clock(t), "03:12:09 UTC");
    }

    #[test]
    fn a_pipe_or_a_dumb_terminal_is_refused() {
        let e = check_terminal(false, Some("xterm".into())).unwrap_err();
        assert!(e.contains("needs a terminal on stdout"), "{e}");
        let e = check_terminal(true, Some("dumb".into())).unwrap_err();
        assert!(
            e.contains("TERM=dumb") && e.contains("acceptq check"),
            "{e}"
        );
        assert!(check_terminal(true, Some("xterm-256color".into())).is_ok());
        assert!(
            check_terminal(true, None).is_ok(),
            "no TERM (a bare docker exec -t) still draws"
        );
    }

    #[test]
    fn an_empty_no_color_is_unset() {
        assert!(colour_allowed(None));
        assert!(colour_allowed(Some("".into())));
        assert!(!colour_allowed(Some("1".into())));
    }

    #[test]
    fn a_sample_longer_than_the_refresh_is_refused() {
        use clap::Parser;
        let top = |flags: &[&str]| {
            let args =
                crate::cli::Args::try_parse_from([&["acceptq", "top"], flags].concat()).unwrap();
            match args.command {
                Some(crate::cli::Command::Top(t)) => check_flags(&t),
                _ => unreachable!(),
            }
        };
        let e = top(&["--sample", "2s"]).unwrap_err();
        assert!(
            e.starts_with("--sample 2s is longer than --refresh 1s"),
            "{e}"
        );
        assert!(top(&["--sample", "1s"]).is_ok());
        assert!(
            top(&["--sample", "0"]).is_ok(),
            "0: no sampler, peaks from each reading"
        );
        assert!(top(&["--sample", "2s", "--refresh", "5s"]).is_ok());
    }

    fn press(model: &mut Model, ui: &mut Ui, code: KeyCode) -> Action {
        answer(model, ui, KeyEvent::new(code, KeyModifiers::NONE))
    }

    /// The footer of `model` drawn on an 80 x 12 terminal; records the page in `ui`.
    fn footer(model: &Model, ui: &mut Ui) -> String {
        use ratatui::backend::TestBackend;
        let mut term = Terminal::new(TestBackend::new(80, 12)).unwrap();
        let mut page = 0;
        term.draw(|f| page = view::draw(f, model, ui)).unwrap();
        ui.page = page;
        let buf = term.backend().buffer();
        (0..80).map(|x| buf[(x, 11)].symbol()).collect::<String>()
    }

    #[test]
    fn up_after_paging_past_the_end_moves_the_screen_at_once() {
        let mut m = Model::new(Duration::from_secs(1));
        let rows: Vec<_> = (1..=30)
            .map(|p| model::tests::listener(p, None, &[("queue_limit", 8)]))
            .collect();
        m.update(&rows, Some(Duration::from_secs(1)));
        m.sort = model::Sort::Port;
        let mut ui = Ui::default();
        assert!(footer(&m, &mut ui).trim_end().ends_with("rows 1-8 of 30"));
        assert_eq!(ui.page, 8);
        press(&mut m, &mut ui, KeyCode::PageDown);
        assert!(
            footer(&m, &mut ui).trim_end().ends_with("rows 9-16 of 30"),
            "a page is what the screen shows"
        );
        for _ in 0..5 {
            press(&mut m, &mut ui, KeyCode::PageDown);
        }
        assert!(footer(&m, &mut ui).trim_end().ends_with("rows 23-30 of 30"));
        press(&mut m, &mut ui, KeyCode::Up);
        let f = footer(&m, &mut ui);
        assert!(f.trim_end().ends_with("rows 22-29 of 30"), "{f}");
    }

    #[test]
    fn keys_quit_sort_and_filter_at_once() {
        let mut m = Model::new(Duration::from_secs(1));
        let mut ui = Ui::default();
        assert_eq!(press(&mut m, &mut ui, KeyCode::Char('s')), Action::Redraw);
        assert_eq!(m.sort, model::Sort::Drops);
        press(&mut m, &mut ui, KeyCode::Char('/'));
        for c in "80q".chars() {
            assert_eq!(
                press(&mut m, &mut ui, KeyCode::Char(c)),
                Action::Redraw,
                "typed, not a command"
            );
        }
        press(&mut m, &mut ui, KeyCode::Backspace);
        assert_eq!(m.filter, None, "not applied before Enter");
        press(&mut m, &mut ui, KeyCode::Enter);
        assert_eq!(m.filter, Some(Filter::Port(80)));
        assert_eq!(ui.input, None);
        assert_eq!(
            press(&mut m, &mut ui, KeyCode::Esc),
            Action::Redraw,
            "Esc takes the filter back first"
        );
        assert_eq!(m.filter, None);
        press(&mut m, &mut ui, KeyCode::Char('/'));
        press(&mut m, &mut ui, KeyCode::Char('x'));
        press(&mut m, &mut ui, KeyCode::Esc);
        assert_eq!(
            (m.filter.clone(), ui.input.clone()),
            (None, None),
            "Esc while typing clears"
        );
        assert_eq!(press(&mut m, &mut ui, KeyCode::Esc), Action::Quit);
        assert_eq!(press(&mut m, &mut ui, KeyCode::Char('q')), Action::Quit);
        ui.input = Some(String::new());
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(
            answer(&mut m, &mut ui, ctrl_c),
            Action::Quit,
            "Ctrl-C quits even while typing"
        );
        let ctrl_z = KeyEvent::new(KeyCode::Char('z'), KeyModifiers::CONTROL);
        assert_eq!(
            answer(&mut m, &mut ui, ctrl_z),
            Action::Suspend,
            "Ctrl-Z suspends, as it would without raw mode"
        );
    }
}
