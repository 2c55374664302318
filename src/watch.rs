//! The namespaces being watched: opening each one's sources (and the sampler's socket there),
//! following `ip netns add` and `del` under `--all-netns`, and reading them all.

use std::collections::HashSet;
use std::ffi::OsString;
use std::io;

use crate::report::NsReading;
use crate::sampler::{Target, Targets};
use crate::snapshot::NetnsSnapshot;
use crate::source::netns::{self, Netns};
use crate::source::sock_diag::DiagSocket;
use crate::source::{NsSources, Options};
use crate::state::NsId;
use crate::warn::Warnings;

/// Unopenable namespaces remembered before the list is forgotten and they are tried again.
const MAX_UNOPENABLE: usize = 1024;

/// A namespace being watched: its sources and its last reading.
struct Watched {
    /// Stable while it is watched: keys its deltas and peaks.
    id: NsId,
    identity: Option<(u64, u64)>,
    src: NsSources,
    snap: NetnsSnapshot,
}

/// A namespace in `/run/netns` now: its `netns` tag, its identity, and its file name there
/// (which may not be UTF-8).
type Named = (String, Option<(u64, u64)>, OsString);

pub struct WatchList {
    watched: Vec<Watched>,
    next_id: NsId,
    /// `--all-netns`: look for namespaces added or removed before each reading.
    follow_named: bool,
    /// Namespaces `--all-netns` could not open, not tried again.
    unopenable: HashSet<(u64, u64)>,
    /// The sampler's namespaces, when it runs: kept in step with `watched`.
    targets: Option<Targets>,
}

impl WatchList {
    /// An empty list; `targets`: the sampler's list to keep in step, when it runs.
    pub fn new(follow_named: bool, targets: Option<Targets>) -> Self {
        WatchList {
            watched: Vec::new(),
            next_id: 0,
            follow_named,
            unopenable: HashSet::new(),
            targets,
        }
    }

    /// Starts watching `ns`: opens its sources, then the sampler's socket there.
    pub fn watch(&mut self, ns: Netns, warnings: &mut Warnings) -> io::Result<()> {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let identity = netns::identity_of(&ns);
        let (name, file) = (ns.name.clone(), ns.file.clone());
        let src = NsSources::open(ns, warnings)?;
        self.watched.push(Watched {
            id,
            identity,
            src,
            snap: NetnsSnapshot::default(),
        });
        if let Some(targets) = &self.targets {
            match DiagSocket::open(file) {
                Ok(sock) => {
                    if let Ok(mut t) = targets.lock() {
                        t.push(Target::new(id, name, sock));
                    }
                }
                Err(e) => warnings.once(
                    &format!("sampler-open-{name}"),
                    format!("sampler: netns {name}: cannot open sock_diag ({e}); peaks come from reports only"),
                ),
            }
        }
        Ok(())
    }

    /// Takes one reading of every namespace, after following `/run/netns` under `--all-netns`.
    pub fn read(&mut self, opts: &Options, warnings: &mut Warnings) {
        if self.follow_named {
            self.rescan(warnings);
        }
        for w in &mut self.watched {
            w.src.read(opts, warnings, &mut w.snap);
        }
    }

    /// The last readings, with the ids and names the report needs.
    pub fn readings(&self) -> Vec<NsReading<'_>> {
        self.watched
            .iter()
            .map(|w| NsReading {
                id: w.id,
                name: w.src.netns.name.as_str(),
                snap: &w.snap,
            })
            .collect()
    }

    /// `--all-netns`: follows `ip netns add` and `del`. A watched namespace is dropped when its
    /// name is gone or now names another namespace (deleted and re-created); names not watched
    /// yet are opened, except those that failed before (each namespace's failure said once).
    fn rescan(&mut self, warnings: &mut Warnings) {
        let now: Vec<Named> = netns::list_named()
            .into_iter()
            .map(|n| (netns::named_tag(&n), netns::named_identity(&n), n))
            .collect();
        self.forget_gone(&now);
        if self.unopenable.len() > MAX_UNOPENABLE {
            self.unopenable.clear();
        }
        for entry in &now {
            let (name, identity, raw) = entry;
            let watched = self
                .watched
                .iter()
                .any(|w| same(w, entry) || (identity.is_some() && w.identity == *identity));
            if watched || identity.is_some_and(|i| self.unopenable.contains(&i)) {
                continue;
            }
            let opened = netns::resolve_named(raw)
                .map_err(|e| (e.source.kind(), e.listed().to_string()))
                .and_then(|ns| {
                    self.watch(ns, warnings).map_err(|e| {
                        (
                            e.kind(),
                            format!("netns {name}: cannot open its sources: {e}"),
                        )
                    })
                });
            if let Err((kind, msg)) = opened {
                if let Some(i) = identity {
                    self.unopenable.insert(*i);
                }
                // Keyed by namespace too: a second namespace failing the same way is said,
                // once, as it is not retried.
                warnings.once(
                    &format!("netns-open-{kind:?} {name}"),
                    format!("{msg} (not retried)"),
                );
            }
        }
    }

    /// What the sampler has to say since the last call (its failures, one per streak).
    pub fn sampler_news(&self) -> Vec<String> {
        match self.targets.as_ref().map(|t| t.lock()) {
            Some(Ok(mut t)) => t.iter_mut().filter_map(|x| x.news.take()).collect(),
            _ => Vec::new(),
        }
    }

    /// Drops the named namespaces that are no longer in `now` as they were, from the sampler too.
    fn forget_gone(&mut self, now: &[Named]) {
        let before = self.watched.len();
        self.watched
            .retain(|w| w.src.netns.file.is_none() || now.iter().any(|n| same(w, n)));
        if self.watched.len() != before {
            let live: Vec<NsId> = self.watched.iter().map(|w| w.id).collect();
            if let Some(Ok(mut t)) = self.targets.as_ref().map(|t| t.lock()) {
                t.retain(|x| live.contains(&x.id));
            }
        }
    }
}

/// Whether `w` is the namespace `/run/netns` lists as `entry`: same tag, same identity.
fn same(w: &Watched, (name, identity, _): &Named) -> bool {
    &w.src.netns.name == name && w.identity == *identity
}
