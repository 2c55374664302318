//! The peak sampler: between reports, dumps LISTEN sockets every `--sample` and records each
//! socket's depth into the shared [`Peaks`], so a queue that filled for 200 ms between two
//! scrapes still shows in `queue_depth_max` and `queue_full_ratio`.
//!
//! It runs on its own thread with its own sock_diag sockets, so a slow sample never delays a
//! report. It asks for no extension (depth and limit are in the message header), touches no
//! `/proc/<pid>`, and reuses its sockets, record buffer and table slots: in steady state a
//! sample allocates nothing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::source::inet_diag::{Record, FAMILIES, STATE_LISTEN};
use crate::source::sock_diag::{DiagError, DiagSocket};
use crate::state::{NsId, Peaks};

/// One namespace the sampler watches: its stable id (the key of its peaks), its name for
/// warnings, and the sampler's own sock_diag socket there.
pub struct Target {
    pub id: NsId,
    pub name: String,
    pub sock: DiagSocket,
    /// The last sample of this namespace failed (and that was said).
    pub failing: bool,
    /// Per address family: no listener in the last complete sample. Such a family is dumped
    /// only every [`FULL_EVERY`] samples: each dump walks the kernel's whole listening hash,
    /// listeners or not (measured: 0.03-0.06 ms of a 0.65 ms sample with 1 000 listeners).
    pub empty: [bool; 2],
    /// Samples taken of this namespace.
    pub samples: u64,
    /// A failure to say, waiting for the report thread: it says it through its own warnings,
    /// which go where the format wants them (stderr, or collectd notifications). One at most:
    /// said once per failure streak.
    pub news: Option<String>,
}

impl Target {
    pub fn new(id: NsId, name: String, sock: DiagSocket) -> Self {
        Target {
            id,
            name,
            sock,
            failing: false,
            empty: [false; 2],
            samples: 0,
            news: None,
        }
    }
}

/// Every this many samples all families are dumped, so a first IPv6 (or IPv4) listener is
/// sampled within a second at the default period.
pub const FULL_EVERY: u64 = 10;

/// The sampler's namespaces; the report thread adds and removes entries when `--all-netns`
/// finds namespaces coming and going.
pub type Targets = Arc<Mutex<Vec<Target>>>;

pub struct Sampler {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Sampler {
    /// Starts sampling `targets` every `every`.
    pub fn start(
        targets: Targets,
        every: Duration,
        peaks: Arc<Mutex<Peaks>>,
    ) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("acceptq-sampler".into())
            .spawn(move || {
                let mut records: Vec<Record> = Vec::with_capacity(1024);
                let mut next = Instant::now() + every;
                while !flag.load(Ordering::Relaxed) {
                    let now = Instant::now();
                    if next > now {
                        std::thread::park_timeout(next - now);
                        continue;
                    }
                    // After a stall, skip the missed ticks instead of sampling in a burst.
                    while next <= now {
                        next += every;
                    }
                    let Ok(mut targets) = targets.lock() else {
                        return;
                    };
                    sample_once(&mut targets, &mut records, &peaks);
                }
            })?;
        Ok(Sampler {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

/// Dumps the listeners of one namespace into `records`, skipping families known to be empty
/// except on every [`FULL_EVERY`]th sample.
fn sample_target(t: &mut Target, records: &mut Vec<Record>) -> Result<(), DiagError> {
    records.clear();
    let full = t.samples % FULL_EVERY == 0;
    t.samples += 1;
    for (i, family) in FAMILIES.into_iter().enumerate() {
        if t.empty[i] && !full {
            continue;
        }
        let before = records.len();
        t.sock.append_family(family, STATE_LISTEN, false, records)?;
        t.empty[i] = records.len() == before;
    }
    Ok(())
}

/// One sample of every namespace: dump outside the peaks lock, record under it.
pub fn sample_once(targets: &mut [Target], records: &mut Vec<Record>, peaks: &Mutex<Peaks>) {
    let mut first = true;
    for t in targets.iter_mut() {
        if let Err(e) = sample_target(t, records) {
            // Said once per failure streak, and nothing formatted while it lasts.
            if !t.failing {
                t.failing = true;
                t.news = Some(format!(
                    "sampler: netns {}: {e}; peaks come from reports only until it recovers",
                    t.name
                ));
            }
            continue;
        }
        t.failing = false;
        let Ok(mut p) = peaks.lock() else { return };
        if first {
            p.begin_sample();
            first = false;
        }
        p.count_round(t.id);
        for r in records.iter() {
            p.observe(t.id, r.endpoint(), r.inode, r.rqueue, Some(r.wqueue));
        }
    }
}
