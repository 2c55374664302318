//! Draws the model into a ratatui frame: the namespaces' header, one line per listener in
//! columns laid out for the terminal's width, a status line for warnings, the key help.
//! Pure given the model and the UI state, so a frame renders the same on a TestBackend.

use std::time::Duration;

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use super::model::{Key, Model, Namespace, Track, NS_RATES, NS_SYSCTLS};
use crate::cli::show_duration;

/// What the screen shows besides the model.
#[derive(Debug, Default)]
pub struct Ui {
    /// `false` with `NO_COLOR` set: no colour anywhere.
    pub colour: bool,
    /// The filter being typed after `/`, until Enter or Esc.
    pub input: Option<String>,
    /// The latest warning.
    pub status: Option<String>,
    /// First row shown.
    pub scroll: usize,
    /// Rows the table had room for at the last draw: a page, and so how far scrolling goes
    /// (past `rows - page` a key would move nothing on the screen).
    pub page: usize,
    /// Wall-clock time of the latest refresh, so a frozen screen shows.
    pub clock: String,
    pub refresh: Duration,
}

/// Namespaces given header lines; more are summed up in one line.
const MAX_NS_SHOWN: usize = 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Col {
    Netns,
    Listener,
    Process,
    Queue,
    Peak,
    Max,
    Trend,
    DropRate,
    Wait,
    Syn,
}

impl Col {
    fn title(self, width: u16) -> &'static str {
        match self {
            Col::Netns => "NETNS",
            Col::Listener => "LISTENER",
            Col::Process => "PROCESS",
            Col::Queue if width >= 17 => "QUEUE DEPTH/LIMIT",
            Col::Queue => "QUEUE",
            Col::Peak => "PEAK",
            Col::Max => "MAX",
            Col::Trend if width >= 10 => "DEPTH 60s",
            Col::Trend => "60s",
            Col::DropRate => "DROP/s",
            Col::Wait => "WAIT",
            Col::Syn => "SYN",
        }
    }

    fn right_aligned(self) -> bool {
        matches!(
            self,
            Col::Peak | Col::Max | Col::DropRate | Col::Wait | Col::Syn
        )
    }
}

/// The cells of one row, as text, before layout.
struct Cells {
    netns: String,
    listener: String,
    /// `name pid`, as room allows.
    process: String,
    /// The name alone, for when `name pid` is cut.
    process_name: String,
    /// `depth/limit`.
    fill: String,
    peak: String,
    max: String,
    drop_rate: String,
    wait: String,
    syn: String,
}

impl Cells {
    fn of(key: &Key, t: &Track) -> Cells {
        let process = match (&t.now.process, t.now.pid) {
            (Some(p), Some(pid)) => format!("{} {pid}", printable(p)),
            (Some(p), None) => printable(p),
            (None, _) => "-".into(),
        };
        Cells {
            netns: key.netns.as_deref().map_or_else(String::new, printable),
            listener: printable(&key.endpoint()),
            process,
            process_name: t
                .now
                .process
                .as_deref()
                .map_or_else(|| "-".into(), printable),
            fill: format!("{}/{}", t.now.depth, t.now.limit),
            peak: count(t.now.peak),
            max: count(t.peak_since_start),
            drop_rate: rate(t.drops_per_s),
            wait: wait(t.now.wait),
            syn: t.now.syn.map_or_else(|| "-".into(), count),
        }
    }
}

/// Column widths for `width` terminal columns: every column at 80 and up, the spare width to
/// the listener, the process, the sparkline and the bar; below 80 the least needed columns go
/// first. `need`: the widest cell of each text column among the rows.
pub fn layout(width: u16, netns: bool, need: &Need) -> Vec<(Col, u16)> {
    let num = |title: &str, n: usize| title.len().max(n) as u16;
    let fill = need.fill.max(3) as u16;
    let mut cols: Vec<(Col, u16)> = Vec::new();
    if netns {
        cols.push((Col::Netns, need.netns.clamp(5, 8) as u16));
    }
    cols.extend([
        (Col::Listener, need.listener.clamp(9, 18) as u16),
        (Col::Process, need.process.clamp(7, 8) as u16),
        (Col::Queue, BAR_MIN + 1 + fill),
        (Col::Peak, num("PEAK", need.peak)),
        (Col::Max, num("MAX", need.max)),
        (Col::Trend, 8),
        (Col::DropRate, num("DROP/s", need.drop_rate)),
        (Col::Wait, num("WAIT", need.wait)),
        (Col::Syn, num("SYN", need.syn)),
    ]);
    let total = |cols: &[(Col, u16)]| -> u16 {
        cols.iter().map(|(_, w)| w).sum::<u16>() + cols.len().saturating_sub(1) as u16
    };
    // Too narrow: first shrink what can be read shorter, then drop whole columns.
    for (col, least) in [(Col::Listener, 15), (Col::Trend, 6), (Col::Netns, 5)] {
        let over = total(&cols).saturating_sub(width);
        if let Some(c) = cols.iter_mut().find(|(c, _)| *c == col) {
            c.1 -= over.min(c.1.saturating_sub(least));
        }
    }
    for col in [
        Col::Trend,
        Col::Max,
        Col::Syn,
        Col::Wait,
        Col::Process,
        Col::Netns,
        Col::Peak,
    ] {
        if total(&cols) <= width {
            break;
        }
        cols.retain(|(c, _)| *c != col);
    }
    // Spare width: to what is cut, then the pictures.
    let mut spare = width.saturating_sub(total(&cols));
    for (col, upto) in [
        (Col::Listener, need.listener.min(46) as u16),
        (Col::Process, need.process.min(24) as u16),
        (Col::Netns, need.netns.min(16) as u16),
        (Col::Trend, 20),
        (Col::Queue, BAR_MAX + 1 + fill),
        (Col::Trend, 60),
    ] {
        if let Some(c) = cols.iter_mut().find(|(c, _)| *c == col) {
            let more = upto.saturating_sub(c.1).min(spare);
            c.1 += more;
            spare -= more;
        }
    }
    cols
}

const BAR_MIN: u16 = 4;
const BAR_MAX: u16 = 12;

/// The widest cell of each column among the rows shown.
#[derive(Debug, Default)]
pub struct Need {
    pub netns: usize,
    pub listener: usize,
    pub process: usize,
    pub fill: usize,
    pub peak: usize,
    pub max: usize,
    pub drop_rate: usize,
    pub wait: usize,
    pub syn: usize,
}

impl Need {
    fn of(cells: &[Cells]) -> Need {
        let w = |f: fn(&Cells) -> &String| cells.iter().map(|c| width(f(c))).max().unwrap_or(0);
        Need {
            netns: w(|c| &c.netns),
            listener: w(|c| &c.listener),
            process: w(|c| &c.process),
            fill: w(|c| &c.fill),
            peak: w(|c| &c.peak),
            max: w(|c| &c.max),
            drop_rate: w(|c| &c.drop_rate),
            wait: w(|c| &c.wait),
            syn: w(|c| &c.syn),
        }
    }
}

/// Returns how many rows the table had room for.
pub fn draw(frame: &mut Frame, model: &Model, ui: &Ui) -> usize {
    let area = frame.area();
    let mut header = header_lines(model, ui);
    // On a short terminal the rows come first: column titles, one row, status and keys stay.
    header.truncate(usize::from(area.height.saturating_sub(4)));
    let [top, table, status, footer] = Layout::vertical([
        Constraint::Length(header.len() as u16),
        Constraint::Min(1),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(area);
    frame.render_widget(Paragraph::new(header), top);
    let shown = draw_table(frame, model, ui, table);
    if let Some(s) = &ui.status {
        frame.render_widget(Paragraph::new(Line::from(printable(s))), status);
    }
    let mut help = footer_line(model, ui, area.width);
    if let Some((first, last, total)) = shown.filter(|(_, _, total)| *total > shown_all(shown)) {
        help.push_span(Span::raw(format!("  rows {first}-{last} of {total}")));
    }
    frame.render_widget(Paragraph::new(help), footer);
    usize::from(table.height.saturating_sub(1)).max(1)
}

fn header_lines(model: &Model, ui: &Ui) -> Vec<Line<'static>> {
    let bold = Style::new().add_modifier(Modifier::BOLD);
    let n = model.listeners();
    let mut title = format!(
        "acceptq top  {n} listener{}  refresh {}",
        if n == 1 { "" } else { "s" },
        show_duration(ui.refresh)
    );
    let omitted: u64 = model.namespaces.iter().map(|n| n.omitted).sum();
    if omitted > 0 {
        // The reading keeps the 1000 most pressing rows, as the report does by default.
        title.push_str(&format!("  (+{omitted} quieter, not shown)"));
    }
    if !ui.clock.is_empty() {
        title.push_str(&format!("  {}", ui.clock));
    }
    let mut lines = vec![Line::styled(title, bold)];
    // The busiest namespaces first: the ones overflowing now are the ones to see.
    let mut namespaces: Vec<&Namespace> = model.namespaces.iter().collect();
    namespaces.sort_by(|a, b| {
        let busy = |n: &Namespace| n.rates[0].unwrap_or(0.0) + n.rates[2].unwrap_or(0.0);
        busy(b).total_cmp(&busy(a))
    });
    for ns in namespaces.iter().take(MAX_NS_SHOWN) {
        let mut counters: Vec<Span> = Vec::new();
        if let Some(name) = &ns.name {
            counters.push(Span::styled(format!("{} ", printable(name)), bold));
        }
        for (i, ((label, _), r)) in NS_RATES.iter().zip(ns.rates).enumerate() {
            if i > 0 {
                counters.push(Span::raw("  "));
            }
            let style = if r.unwrap_or(0.0) > 0.0 {
                hot(ui)
            } else {
                Style::new()
            };
            counters.push(Span::raw(format!("{label} ")));
            counters.push(Span::styled(format!("{}/s", rate(r)), style));
        }
        lines.push(Line::from(counters));
        let sysctls: Vec<String> = NS_SYSCTLS
            .iter()
            .zip(ns.sysctls)
            .map(|(name, v)| format!("{name}={}", v.map_or_else(|| "?".into(), |v| v.to_string())))
            .collect();
        lines.push(Line::from(sysctls.join(" ")));
    }
    if namespaces.len() > MAX_NS_SHOWN {
        lines.push(Line::from(format!(
            "+{} more namespaces (--netns NAME to see one)",
            namespaces.len() - MAX_NS_SHOWN
        )));
    }
    lines
}

fn hot(ui: &Ui) -> Style {
    if ui.colour {
        Style::new().fg(Color::Red).add_modifier(Modifier::BOLD)
    } else {
        Style::new().add_modifier(Modifier::BOLD)
    }
}

/// How many rows a `(first, last, total)` shows.
fn shown_all(shown: Option<(usize, usize, usize)>) -> usize {
    shown.map_or(0, |(first, last, _)| last + 1 - first)
}

/// Draws the rows that fit from `ui.scroll` on; returns which ones (1-based, inclusive) of how
/// many, when there are any.
fn draw_table(
    frame: &mut Frame,
    model: &Model,
    ui: &Ui,
    area: Rect,
) -> Option<(usize, usize, usize)> {
    let rows = model.rows();
    if rows.is_empty() {
        let text = match &model.filter {
            Some(f) => format!(
                "no listener matches {} (Esc clears the filter)",
                f.describe()
            ),
            None if model.listeners() == 0 => {
                "no listener to show (none listening, or none the flags let through)".into()
            }
            None => String::new(),
        };
        frame.render_widget(Paragraph::new(text), area);
        return None;
    }
    let cells: Vec<Cells> = rows.iter().map(|(k, t)| Cells::of(k, t)).collect();
    let netns = cells.iter().any(|c| !c.netns.is_empty());
    let cols = layout(area.width, netns, &Need::of(&cells));
    let mut lines = vec![Line::styled(
        cols.iter()
            .map(|(c, w)| pad(c.title(*w), *w, c.right_aligned()))
            .collect::<Vec<_>>()
            .join(" "),
        Style::new().add_modifier(Modifier::REVERSED),
    )];
    let room = usize::from(area.height.saturating_sub(1));
    let first = ui.scroll.min(rows.len().saturating_sub(room.max(1)));
    for ((_, t), c) in rows.iter().zip(&cells).skip(first).take(room) {
        let mut spans: Vec<Span> = Vec::new();
        for (i, (col, w)) in cols.iter().enumerate() {
            if i > 0 {
                spans.push(Span::raw(" "));
            }
            let w = *w;
            let right = col.right_aligned();
            match col {
                Col::Netns => spans.push(Span::raw(pad(&c.netns, w, false))),
                Col::Listener => spans.push(Span::raw(pad_left_cut(&c.listener, w))),
                Col::Process => {
                    // Cut, the pid goes first: the name says more.
                    let text = if width(&c.process) > usize::from(w) {
                        &c.process_name
                    } else {
                        &c.process
                    };
                    spans.push(Span::raw(pad(text, w, false)));
                }
                Col::Queue => {
                    let numbers = c.fill.chars().count().max(3) as u16;
                    let bar_w = w.saturating_sub(numbers + 1);
                    spans.push(Span::styled(
                        bar(t.now.depth, t.now.limit, bar_w),
                        fill_style(t, ui),
                    ));
                    spans.push(Span::raw(" "));
                    spans.push(Span::raw(pad(&c.fill, numbers, true)));
                }
                Col::Peak => {
                    let style = if t.now.full() { hot(ui) } else { Style::new() };
                    spans.push(Span::styled(pad(&c.peak, w, right), style));
                }
                Col::Max => spans.push(Span::raw(pad(&c.max, w, right))),
                Col::Trend => spans.push(Span::styled(
                    sparkline(
                        &t.history.iter().copied().collect::<Vec<_>>(),
                        model.history_len(),
                        t.now.limit + 1,
                        w,
                    ),
                    fill_style(t, ui),
                )),
                Col::DropRate => {
                    let style = if t.drops_per_s.unwrap_or(0.0) > 0.0 {
                        hot(ui)
                    } else {
                        Style::new()
                    };
                    spans.push(Span::styled(pad(&c.drop_rate, w, right), style));
                }
                Col::Wait => spans.push(Span::raw(pad(&c.wait, w, right))),
                Col::Syn => spans.push(Span::raw(pad(&c.syn, w, right))),
            }
        }
        lines.push(Line::from(spans));
    }
    let drawn = lines.len() - 1;
    frame.render_widget(Paragraph::new(lines), area);
    (drawn > 0).then_some((first + 1, first + drawn, rows.len()))
}

fn fill_style(t: &Track, ui: &Ui) -> Style {
    if !ui.colour {
        return Style::new();
    }
    let s = t.now.saturation();
    Style::new().fg(if s >= 1.0 {
        Color::Red
    } else if s >= 0.5 {
        Color::Yellow
    } else {
        Color::Green
    })
}

/// The key help, or the filter being typed, for a terminal `cols` wide.
fn footer_line(model: &Model, ui: &Ui, cols: u16) -> Line<'static> {
    let key = Style::new().add_modifier(Modifier::REVERSED);
    if let Some(text) = &ui.input {
        let prompt = "filter (port, process or address): ";
        // The end of a long filter, where the typing is, stays in sight.
        let room = usize::from(cols).saturating_sub(width(prompt) + 1);
        let text = if width(text) > room {
            pad_left_cut(text, room as u16)
        } else {
            text.clone()
        };
        return Line::from(vec![
            Span::raw(format!("{prompt}{text}")),
            Span::styled(" ", key),
            Span::raw("  Enter apply  Esc clear"),
        ]);
    }
    let mut spans = vec![
        Span::styled("q", key),
        Span::raw(" quit  "),
        Span::styled("s", key),
        Span::raw(format!(" sort: {}  ", model.sort.name())),
        Span::styled("/", key),
    ];
    match &model.filter {
        Some(f) => {
            spans.push(Span::raw(format!(" filter: {}  ", f.describe())));
            spans.push(Span::styled("Esc", key));
            spans.push(Span::raw(" clear  "));
        }
        None => spans.push(Span::raw(" filter  ")),
    }
    spans.push(Span::styled("↑↓", key));
    spans.push(Span::raw(" scroll"));
    Line::from(spans)
}

/// Text a terminal shows as is: a process name may hold control characters, or the Unicode
/// marks that make a terminal with bidirectional text draw the rest of the row right to left
/// (a port of 8080 read as 0808).
fn printable(s: &str) -> String {
    s.chars()
        .map(|c| {
            let bidi = matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
            if c.is_control() || bidi {
                '?'
            } else {
                c
            }
        })
        .collect()
}

/// Columns `s` takes on a terminal: a CJK character takes two, a combining mark none, so a
/// count of characters would shift every column after a process named `日本語`.
fn width(s: &str) -> usize {
    Span::raw(s).width()
}

/// Columns one character takes.
fn char_width(c: char) -> usize {
    let mut buf = [0u8; 4];
    width(c.encode_utf8(&mut buf))
}

fn pad(s: &str, w: u16, right: bool) -> String {
    let w = usize::from(w);
    let n = width(s);
    if n > w {
        if w == 0 {
            return String::new();
        }
        // Cut at the end, marked: a name read short is still read.
        let mut cut = String::new();
        let mut used = 0;
        for c in s.chars() {
            let cw = char_width(c);
            if used + cw > w - 1 {
                break;
            }
            cut.push(c);
            used += cw;
        }
        cut.push('…');
        // A wide character that did not fit leaves a column to fill.
        cut.push_str(&" ".repeat(w - 1 - used));
        return cut;
    }
    let fill = " ".repeat(w - n);
    if right {
        fill + s
    } else {
        s.to_string() + &fill
    }
}

/// Cut at the start, keeping the port, the part that tells listeners apart.
fn pad_left_cut(s: &str, w: u16) -> String {
    let w = usize::from(w);
    let n = width(s);
    if n <= w {
        return pad(s, w as u16, false);
    }
    if w == 0 {
        return String::new();
    }
    let mut kept: Vec<char> = Vec::new();
    let mut used = 0;
    for c in s.chars().rev() {
        let cw = char_width(c);
        if used + cw > w - 1 {
            break;
        }
        kept.push(c);
        used += cw;
    }
    let mut cut = " ".repeat(w - 1 - used);
    cut.push('…');
    cut.extend(kept.into_iter().rev());
    cut
}

const EIGHTHS: [char; 9] = [' ', '▏', '▎', '▍', '▌', '▋', '▊', '▉', '█'];

/// The queue's fill as a bar of `w` cells, in eighths: full width is the capacity (limit + 1).
pub fn bar(depth: u64, limit: u64, w: u16) -> String {
    let cap = limit + 1;
    let eighths = (depth.min(cap) * u64::from(w) * 8).div_ceil(cap);
    (0..u64::from(w))
        .map(|i| EIGHTHS[(eighths.saturating_sub(i * 8)).min(8) as usize])
        .collect()
}

const LEVELS: [char; 9] = [' ', '▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// The history as `w` characters, newest at the right, each covering a fixed share of the
/// `span` entries the history can hold (so a column is always the same number of seconds), the
/// highest of its entries (a peak is never averaged away), scaled to the capacity `cap`; blank
/// is an empty queue, or a time before the view started.
pub fn sparkline(history: &[u64], span: usize, cap: u64, w: u16) -> String {
    let w = usize::from(w);
    if w == 0 {
        return String::new();
    }
    let per = span.div_ceil(w).max(1);
    // Buckets end at the newest entry; at most `w` of them, the newest.
    let mut buckets: Vec<u64> = history
        .rchunks(per)
        .take(w)
        .map(|c| c.iter().copied().max().unwrap_or(0))
        .collect();
    buckets.reverse();
    let level = |v: u64| {
        if v == 0 {
            0
        } else {
            ((v.min(cap) * 8).div_ceil(cap.max(1))).clamp(1, 8) as usize
        }
    };
    let mut s: String = " ".repeat(w - buckets.len());
    s.extend(buckets.into_iter().map(|v| LEVELS[level(v)]));
    s
}

fn count(n: u64) -> String {
    match n {
        0..=99_999 => n.to_string(),
        100_000..=9_999_999 => format!("{}k", n / 1000),
        _ => format!("{}M", n / 1_000_000),
    }
}

/// A rate as a few characters: `-` when unknown.
pub fn rate(r: Option<f64>) -> String {
    match r {
        None => "-".into(),
        Some(0.0) => "0".into(),
        Some(r) if r < 9.95 => format!("{r:.1}"),
        Some(r) if r < 99_999.5 => format!("{r:.0}"),
        Some(r) => format!("{:.0}k", r / 1000.0),
    }
}

/// How long the oldest connection waited: `-` with an empty queue.
pub fn wait(secs: Option<f64>) -> String {
    match secs {
        None => "-".into(),
        Some(s) if s < 1.0 => format!("{:.0}ms", s * 1000.0),
        Some(s) if s < 60.0 => format!("{s:.1}s"),
        Some(s) if s < 3600.0 => format!("{:.0}m", s / 60.0),
        Some(s) => format!("{:.0}h", s / 3600.0),
    }
}

#[cfg(test)]
mod tests {
    use super::super::model::tests::{listener, netns};
    use super::*;
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;

    const SEC: Option<Duration> = Some(Duration::from_secs(1));

    fn screen(model: &Model, ui: &Ui, width: u16, height: u16) -> Vec<String> {
        let mut term = Terminal::new(TestBackend::new(width, height)).unwrap();
        term.draw(|f| {
            draw(f, model, ui);
        })
        .unwrap();
        let buf = term.backend().buffer();
        (0..height)
            .map(|y| (0..width).map(|x| buf[(x, y)].symbol()).collect::<String>())
            .collect()
    }

    fn overflowing() -> Model {
        let mut m = Model::new(Duration::from_secs(1));
        let fields = |drops: u64| {
            vec![
                ("queue_depth", 3),
                ("queue_depth_max", 3),
                ("queue_limit", 2),
                ("drops", drops),
                ("drops_delta", drops / 2),
                ("syn_queue_depth", 0),
                ("pid", 6451),
            ]
        };
        let ns = netns(&[
            ("listen_overflows_delta", 14),
            ("listen_drops_delta", 14),
            ("reqq_full_drop_delta", 0),
            ("syncookies_sent_delta", 0),
            ("somaxconn", 4096),
            ("tcp_max_syn_backlog", 512),
            ("tcp_syncookies", 1),
            ("tcp_abort_on_overflow", 0),
        ]);
        m.update(
            &[listener(8080, Some("gunicorn"), &fields(0)), ns.clone()],
            None,
        );
        let mut quiet = listener(22, Some("sshd"), &[("queue_limit", 128), ("pid", 700)]);
        quiet.tags[0].1 = "0.0.0.0".into();
        m.update(
            &[quiet, listener(8080, Some("gunicorn"), &fields(28)), ns],
            SEC,
        );
        m
    }

    fn ui() -> Ui {
        Ui {
            refresh: Duration::from_secs(1),
            clock: "03:12:09".into(),
            ..Ui::default()
        }
    }

    #[test]
    fn at_80_columns_every_column_shows_and_the_full_listener_is_first() {
        let m = overflowing();
        let s = screen(&m, &ui(), 80, 12);
        let text = s.join("\n");
        assert_eq!(
            s[0].trim_end(),
            "acceptq top  2 listeners  refresh 1s  03:12:09"
        );
        assert_eq!(
            s[1].trim_end(),
            "overflows 14/s  drops 14/s  reqq full drop 0/s  syncookies sent 0/s"
        );
        assert_eq!(
            s[2].trim_end(),
            "somaxconn=4096 tcp_max_syn_backlog=512 tcp_syncookies=1 tcp_abort_on_overflow=0"
        );
        for title in [
            "LISTENER", "PROCESS", "QUEUE", "PEAK", "MAX", "DROP/s", "WAIT", "SYN",
        ] {
            assert!(s[3].contains(title), "{title} in {:?}", s[3]);
        }
        assert!(s[3].contains("60s"), "{:?}", s[3]);
        let row = &s[4];
        assert!(row.starts_with("127.0.0.1:8080 "), "{row:?}");
        assert!(row.contains("gunicorn"), "{row:?}");
        assert!(
            row.contains("████ 3/2"),
            "a full bar, then depth/limit: {row:?}"
        );
        let last: Vec<&str> = row.split_whitespace().rev().take(3).collect();
        assert_eq!(last, ["0", "-", "14"], "drops/s, wait, SYN: {row:?}");
        assert!(s[5].starts_with("0.0.0.0:22 "), "{:?}", s[5]);
        let s = screen(&m, &ui(), 60, 12);
        assert!(
            s[4].contains(" gunicorn "),
            "name kept, pid left out: {:?}",
            s[4]
        );
        assert!(
            s[11].starts_with("q quit  s sort: saturation  / filter"),
            "{text}"
        );
        for line in &s {
            assert!(line.chars().count() <= 80);
        }
    }

    #[test]
    fn narrower_than_80_drops_the_least_needed_columns_first() {
        let m = overflowing();
        let s = screen(&m, &ui(), 60, 10);
        assert!(
            !s[3].contains("60s"),
            "the sparkline goes first: {:?}",
            s[3]
        );
        assert!(
            s[3].contains("DROP/s") && s[3].contains("PEAK"),
            "{:?}",
            s[3]
        );
        assert!(s[4].starts_with("127.0.0.1:8080 "), "{:?}", s[4]);
        assert!(s[4].contains("3/2"), "{:?}", s[4]);
        let s = screen(&m, &ui(), 40, 10);
        assert!(
            s[4].starts_with("127.0.0.1:8080 ") && s[4].contains("3/2"),
            "{:?}",
            s[4]
        );
        assert!(
            s[4].trim_end().ends_with("14"),
            "the drop rate stays: {:?}",
            s[4]
        );
    }

    #[test]
    fn layout_fills_exactly_the_width_it_is_given() {
        let need = Need {
            listener: 40,
            process: 20,
            fill: 9,
            ..Need::default()
        };
        for width in [40u16, 60, 80, 100, 200] {
            for netns in [false, true] {
                let cols = layout(width, netns, &need);
                let total: u16 = cols.iter().map(|(_, w)| w).sum::<u16>() + cols.len() as u16 - 1;
                assert!(total <= width, "{width} {netns}: {cols:?}");
                if width >= 80 {
                    assert_eq!(
                        cols.len(),
                        9 + usize::from(netns),
                        "{width} {netns}: {cols:?}"
                    );
                }
            }
        }
    }

    /// The terminal column where the last `token` of a [`screen`] line ends: one character
    /// per cell there (a wide character's second cell is a blank).
    fn ends_at(line: &str, token: &str) -> usize {
        let at = line
            .rfind(token)
            .unwrap_or_else(|| panic!("{token:?} in {line:?}"));
        line[..at + token.len()].chars().count()
    }

    #[test]
    fn wide_characters_in_a_process_name_keep_the_columns_in_place() {
        let mut m = Model::new(Duration::from_secs(1));
        let fields: &[(&str, u64)] = &[("queue_limit", 5), ("pid", 4242), ("syn_queue_depth", 7)];
        m.update(
            &[
                listener(80, Some("日本語ab"), fields),
                listener(81, Some("nginx"), fields),
            ],
            SEC,
        );
        for w in [120u16, 100, 80] {
            let s = screen(&m, &ui(), w, 8);
            let header = s.iter().find(|l| l.starts_with("LISTENER")).unwrap();
            for port in ["80", "81"] {
                let row = s
                    .iter()
                    .find(|l| l.starts_with(&format!("127.0.0.1:{port} ")))
                    .unwrap();
                assert_eq!(
                    ends_at(row, "7"),
                    ends_at(header, "SYN"),
                    "{w} columns, SYN under its title:\n{header}\n{row}"
                );
            }
        }
        assert_eq!(
            pad("日本語ab", 4, false),
            "日… ",
            "a wide character is not split"
        );
        assert_eq!(pad_left_cut("日本語:80", 6), "…語:80");
        assert_eq!(pad("日本", 6, true), "  日本");
    }

    #[test]
    fn a_long_ipv6_listener_is_cut_at_its_start_keeping_the_port() {
        assert_eq!(
            pad_left_cut("[2001:db8::1234:5678]:8080", 12),
            "…:5678]:8080"
        );
        assert_eq!(pad_left_cut("[::1]:80", 10), "[::1]:80  ");
        assert_eq!(pad("gunicorn-worker", 8, false), "gunicor…");
    }

    #[test]
    fn filter_typing_and_empty_matches_are_said() {
        let mut m = overflowing();
        let mut ui = ui();
        ui.input = Some("80".into());
        let s = screen(&m, &ui, 80, 10);
        assert!(
            s[9].starts_with("filter (port, process or address): 80"),
            "{:?}",
            s[9]
        );
        ui.input = Some(format!("{}END", "a".repeat(60)));
        let s = screen(&m, &ui, 80, 10);
        assert!(
            s[9].trim_end().ends_with("aaaEND"),
            "the end of a long filter, where the typing is: {:?}",
            s[9]
        );
        assert!(s[9].contains("address): …a"), "{:?}", s[9]);
        ui.input = None;
        m.filter = super::super::model::Filter::parse("nginx");
        let s = screen(&m, &ui, 80, 10);
        assert!(
            s[3].starts_with("no listener matches \"nginx\""),
            "{:?}",
            s[3]
        );
        assert!(s[9].contains("filter: \"nginx\"  Esc clear"), "{:?}", s[9]);
    }

    #[test]
    fn rows_past_the_screen_are_scrolled_to_and_counted() {
        let mut m = Model::new(Duration::from_secs(1));
        let metrics: Vec<_> = (1..=30)
            .map(|p| listener(p, None, &[("queue_limit", 8)]))
            .collect();
        m.update(&metrics, SEC);
        m.sort = super::super::model::Sort::Port;
        let mut ui = ui();
        // 12 lines: title (no namespace row in this report), column titles, 8 rows, status,
        // keys.
        let s = screen(&m, &ui, 80, 12);
        assert!(s[2].starts_with("127.0.0.1:1 "), "{:?}", s[2]);
        assert!(s[11].trim_end().ends_with("rows 1-8 of 30"), "{:?}", s[11]);
        ui.scroll = 100;
        let s = screen(&m, &ui, 80, 12);
        assert!(
            s[9].starts_with("127.0.0.1:30 "),
            "the last row, no blank past it: {:?}",
            s[9]
        );
        assert!(
            s[11].trim_end().ends_with("rows 23-30 of 30"),
            "{:?}",
            s[11]
        );
    }

    #[test]
    fn a_tiny_terminal_draws_what_fits_without_panicking() {
        let m = overflowing();
        for (w, h) in [(1, 1), (10, 2), (20, 3), (30, 6), (80, 4)] {
            let s = screen(&m, &ui(), w, h);
            assert_eq!(s.len(), usize::from(h));
        }
        assert!(screen(&m, &ui(), 30, 6).iter().any(|l| l.contains("8080")));
    }

    #[test]
    fn control_characters_and_direction_marks_are_shown_as_question_marks() {
        assert_eq!(printable("\x1b[2J\x1b]2;x\x07"), "?[2J?]2;x?");
        assert_eq!(printable("a\u{9b}b\u{7f}"), "a?b?", "C1 CSI and DEL");
        assert_eq!(
            printable("evil\u{202e}08:1"),
            "evil?08:1",
            "right-to-left override"
        );
        assert_eq!(printable("\u{2067}x\u{2069}\u{200f}"), "?x??");
        assert_eq!(
            printable("日本語 nginx-é"),
            "日本語 nginx-é",
            "the rest kept"
        );
    }

    #[test]
    fn warnings_show_in_the_status_line() {
        let m = overflowing();
        let mut ui = ui();
        ui.status = Some("W! [acceptq] cannot read /proc/1/fd".into());
        let s = screen(&m, &ui, 80, 10);
        assert_eq!(s[8].trim_end(), "W! [acceptq] cannot read /proc/1/fd");
    }

    #[test]
    fn no_colour_when_told() {
        let m = overflowing();
        for colour in [true, false] {
            let mut term = Terminal::new(TestBackend::new(80, 8)).unwrap();
            let ui = Ui { colour, ..ui() };
            term.draw(|f| {
                draw(f, &m, &ui);
            })
            .unwrap();
            let buf = term.backend().buffer();
            let coloured = buf
                .content()
                .iter()
                .any(|c| c.fg != Color::Reset || c.bg != Color::Reset);
            assert_eq!(coloured, colour);
        }
    }

    #[test]
    fn bars_and_sparklines_scale_to_the_capacity() {
        assert_eq!(bar(0, 2, 4), "    ");
        assert_eq!(bar(3, 2, 4), "████", "limit + 1 is full");
        assert_eq!(bar(100, 2, 4), "████", "never past full");
        assert_eq!(bar(1, 1, 4), "██  ");
        assert_eq!(bar(1, 127, 4), "▏   ", "one connection still shows");
        assert_eq!(sparkline(&[0, 3, 1], 5, 3, 5), "   █▃");
        // 60 entries into 6 cells: the highest of each ten.
        let mut h = vec![0u64; 60];
        h[5] = 3;
        assert_eq!(sparkline(&h, 60, 3, 6), "█     ");
        assert_eq!(sparkline(&[], 60, 3, 3), "   ");
        // A column is always the same span: 3 entries into a 60-entry span over 6 cells is
        // one cell, not three.
        assert_eq!(sparkline(&[3, 0, 0], 60, 3, 6), "     █");
        assert_eq!(sparkline(&[3; 11], 60, 3, 6), "    ██");
    }

    #[test]
    fn numbers_stay_short() {
        assert_eq!(rate(None), "-");
        assert_eq!(rate(Some(0.0)), "0");
        assert_eq!(rate(Some(0.5)), "0.5");
        assert_eq!(rate(Some(14.0)), "14");
        assert_eq!(rate(Some(250_000.0)), "250k");
        assert_eq!(wait(Some(0.24)), "240ms");
        assert_eq!(wait(Some(2.43)), "2.4s");
        assert_eq!(wait(Some(600.0)), "10m");
        assert_eq!(count(123_456), "123k");
    }
}
