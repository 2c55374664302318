//! The sampler's steady state allocates nothing: a counting allocator, ~1 000 listeners of our
//! own on 127.0.0.1, and the same sample / report-time dump the binary runs. Needs no root and
//! no namespace: it reads the namespace the test runs in; but for a sample the gate lets pass,
//! which needs a namespace where no queue holds a connection (the other tests here fill some).
//!
//! The `#[global_allocator]` below serves the whole integration-test binary, so it is a thin
//! wrapper over `System` that only bumps a per-thread counter; each test measures its own thread.
//! Listeners that other processes open or close during a measurement legitimately make the
//! record buffer or the peak tables grow, so a round in which the set of listeners changed is
//! measured again instead of failing (at most [`ROUNDS`] times).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use acceptq::sampler::{sample_once, DeviceTier, Target};
use acceptq::snapshot::Endpoint;
use acceptq::source::inet_diag::{Record, STATE_LISTEN};
use acceptq::source::netdev::{LinkWatch, RxPackets};
use acceptq::source::netns::run_in;
use acceptq::source::snmp::PassiveOpens;
use acceptq::source::sock_diag::DiagSocket;
use acceptq::state::Peaks;

use crate::support::{netns_gate, note, tests, Netns};

tests![
    a_sample_allocates_nothing_in_steady_state,
    a_sample_the_gate_lets_pass_allocates_nothing,
    a_sample_passed_on_received_packets_allocates_nothing_nor_does_a_link_event,
    the_report_dump_with_meminfo_allocates_nothing_after_warm_up
];

struct Counting;

thread_local! {
    /// Allocations (alloc, alloc_zeroed, realloc) made by this thread. Const-initialised and
    /// without a destructor, so touching it never allocates.
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count_one() {
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
}

// SAFETY: every call is forwarded unchanged to `System`; counting touches only a thread-local
// Cell and never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_one();
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count_one();
        System.alloc_zeroed(layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_one();
        System.realloc(ptr, layout, new_size)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

pub(crate) fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

const LISTENERS: usize = 1000;
const WARM_UP: usize = 5;
const MEASURED: usize = 50;
const ROUNDS: usize = 5;
const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Opens up to [`LISTENERS`] listeners (see [`room`]).
pub(crate) fn listeners() -> Vec<TcpListener> {
    (0..room())
        .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0"))
        .collect()
}

/// Raises the soft fd limit to the hard one (allowed to any user) and returns how many
/// listeners a test may open, up to [`LISTENERS`], leaving room for the other tests here.
fn room() -> usize {
    // SAFETY: getrlimit/setrlimit read and write one rlimit we own.
    let soft = unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            if lim.rlim_cur < lim.rlim_max {
                let raised = libc::rlimit {
                    rlim_cur: lim.rlim_max,
                    rlim_max: lim.rlim_max,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                    lim = raised;
                }
            }
            lim.rlim_cur as usize
        } else {
            1024
        }
    };
    // Two of these tests may run at once next to others: each takes at most a third.
    let n = LISTENERS.min(soft / 3);
    assert!(n >= 100, "fd limit {soft} is too low for this test");
    n
}

/// The set of sockets in the last dump, cheaply and without allocating: (count, inode sum).
fn fingerprint(records: &[Record]) -> (usize, u64) {
    (
        records.len(),
        records.iter().map(|r| u64::from(r.inode)).sum(),
    )
}

/// Runs `step` [`MEASURED`] times per round and returns the allocations of the first round in
/// which the listener set (`fingerprint` after each step) stayed as it was before the round.
fn steady_allocations(what: &str, mut step: impl FnMut() -> (usize, u64)) -> (u64, (usize, u64)) {
    // The counter is live: otherwise "0 allocations" would prove nothing.
    let before = allocations();
    drop(std::hint::black_box(Vec::<u8>::with_capacity(16)));
    assert_eq!(
        allocations(),
        before + 1,
        "the counting allocator is not counting"
    );
    for _ in 0..WARM_UP {
        step();
    }
    for round in 0..ROUNDS {
        let before = step();
        let mut stable = true;
        let start = allocations();
        for _ in 0..MEASURED {
            stable &= step() == before;
        }
        let made = allocations() - start;
        if stable {
            return (made, before);
        }
        note!("{what}: round {round}: listeners changed under us, measuring again");
    }
    panic!("{what}: the set of listeners kept changing over {ROUNDS} rounds");
}

fn a_sample_allocates_nothing_in_steady_state() {
    let held = listeners();
    let ports: Vec<u16> = held
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect();
    // A tenth of them busy (one connection queued, never accepted): those are what the peak
    // tables hold; idle ones must cost no lookup at all.
    let busy: Vec<u16> = ports.iter().copied().take(LISTENERS / 10).collect();
    let _clients: Vec<TcpStream> = busy
        .iter()
        .map(|p| TcpStream::connect((Ipv4Addr::LOCALHOST, *p)).expect("connect"))
        .collect();
    let mut targets = vec![Target::new(
        0,
        "test".to_string(),
        DiagSocket::open(None).expect("open sock_diag"),
    )];
    let mut records: Vec<Record> = Vec::new();
    let peaks = Mutex::new(Peaks::default());
    // A report hands the peaks over between samples (Peaks::take_into); do that twice during
    // warm-up so both tables the swap alternates between have grown, then sample only.
    let mut taken = Peaks::default();
    for _ in 0..2 {
        for _ in 0..WARM_UP {
            sample_once(&mut targets, &mut records, &peaks);
        }
        peaks.lock().unwrap().take_into(&mut taken);
    }

    let (made, (seen, _)) = steady_allocations("sample_once", || {
        sample_once(&mut targets, &mut records, &peaks);
        fingerprint(&records)
    });
    assert!(
        seen >= held.len(),
        "the dump saw {seen} listeners, we hold {}",
        held.len()
    );
    assert_eq!(
        made, 0,
        "{MEASURED} samples of {seen} listeners allocated {made} times"
    );

    // The samples really landed in the peaks: every busy listener of ours at depth 1, never
    // full, over every sample; the idle ones at 0 and never full either.
    let p = peaks.lock().unwrap();
    assert!(
        p.rounds(0) as usize >= MEASURED,
        "{} samples counted",
        p.rounds(0)
    );
    assert!(p.tracked() >= busy.len(), "{} sockets tracked", p.tracked());
    for port in &ports {
        let want = u32::from(busy.contains(port));
        assert_eq!(
            p.listener_max(
                0,
                Endpoint {
                    addr: LOCALHOST,
                    port: *port,
                    ifindex: 0
                }
            ),
            want,
            "listener 127.0.0.1:{port}: peak"
        );
    }
    let ours: Vec<&Record> = records
        .iter()
        .filter(|r| r.addr == LOCALHOST && ports.contains(&r.port))
        .collect();
    assert_eq!(ours.len(), held.len());
    for r in ours {
        assert_eq!(p.socket_max(0, r.inode), u32::from(busy.contains(&r.port)));
        assert_eq!(p.full_ratio(0, r.inode), Some(0.0));
    }
}

fn a_sample_the_gate_lets_pass_allocates_nothing() {
    if !netns_gate("sampler_cost::a_sample_the_gate_lets_pass_allocates_nothing") {
        return;
    }
    let ns = Netns::new("gatecost");
    let file = Arc::new(File::open(format!("/run/netns/{}", ns.name)).expect("netns file"));
    let n = room();
    let held: Vec<TcpListener> = run_in(Some(&file), || {
        (0..n)
            .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0"))
            .collect()
    })
    .expect("join the namespace");
    let counter = run_in(Some(&file), PassiveOpens::open)
        .expect("join the namespace")
        .expect("open /proc/net/snmp");
    let sock = DiagSocket::open(Some(file.clone())).expect("open sock_diag");
    let mut targets = vec![Target::new(0, "gate".to_string(), sock).gated(counter)];
    let mut records: Vec<Record> = Vec::new();
    let peaks = Mutex::new(Peaks::default());
    let mut taken = Peaks::default();
    for _ in 0..2 {
        for _ in 0..WARM_UP {
            sample_once(&mut targets, &mut records, &peaks);
        }
        peaks.lock().unwrap().take_into(&mut taken);
    }
    assert_eq!(records.len(), held.len(), "the dumps saw our listeners");
    let dumps = targets[0].dumps;
    assert!(
        dumps <= 3,
        "{dumps} dumps of a namespace where nothing happens"
    );
    // A round in which one sample dumped is measured again: the fingerprint is the dump count.
    let (made, _) = steady_allocations("sample_once let pass", || {
        sample_once(&mut targets, &mut records, &peaks);
        (targets[0].dumps as usize, 0)
    });
    assert_eq!(
        targets[0].dumps, dumps,
        "the gate let every measured sample pass"
    );
    assert_eq!(
        made, 0,
        "{MEASURED} samples the gate let pass allocated {made} times"
    );
    // Each counted as a sample in which no queue of the namespace was full.
    let p = peaks.lock().unwrap();
    assert!(
        p.rounds(0) as usize > MEASURED,
        "{} samples counted",
        p.rounds(0)
    );
    assert_eq!(p.tracked(), 0);
    drop(held);
}

fn a_sample_passed_on_received_packets_allocates_nothing_nor_does_a_link_event() {
    let name =
        "sampler_cost::a_sample_passed_on_received_packets_allocates_nothing_nor_does_a_link_event";
    if !netns_gate(name) {
        return;
    }
    let ns = Netns::new("devcost");
    let file = Arc::new(File::open(format!("/run/netns/{}", ns.name)).expect("netns file"));
    let (counter, rx, links) = run_in(Some(&file), || {
        (
            PassiveOpens::open().expect("open /proc/net/snmp"),
            RxPackets::open().expect("open /proc/net/dev"),
            LinkWatch::open().expect("open the link socket"),
        )
    })
    .expect("join the namespace");
    let sock = DiagSocket::open(Some(file.clone())).expect("open sock_diag");
    let mut targets = vec![Target::new(0, "devices".to_string(), sock)
        .gated(counter)
        .with_devices(DeviceTier::new(rx, links))];
    let mut records: Vec<Record> = Vec::new();
    let peaks = Mutex::new(Peaks::default());
    for _ in 0..WARM_UP {
        sample_once(&mut targets, &mut records, &peaks);
    }
    let (dumps, passed) = (targets[0].dumps, targets[0].passed_on_devices);
    let (made, _) = steady_allocations("sample_once passed on received packets", || {
        sample_once(&mut targets, &mut records, &peaks);
        (targets[0].dumps as usize, 0)
    });
    assert_eq!(targets[0].dumps, dumps, "no dump while measured");
    assert!(
        targets[0].passed_on_devices > passed + MEASURED as u64,
        "the samples passed on received packets"
    );
    assert_eq!(
        made, 0,
        "samples passed on received packets allocated {made} times"
    );
    // A link event: the next sample reads it, dumps the links again and, the devices' gate
    // being reset, passes on PassiveOpens; all of it without allocating.
    let out = ns
        .cmd("ip", &["link", "set", "lo", "mtu", "65000"])
        .output()
        .expect("ip");
    assert!(out.status.success(), "{out:?}");
    let passed = targets[0].passed_on_devices;
    let start = allocations();
    sample_once(&mut targets, &mut records, &peaks);
    let made = allocations() - start;
    assert_eq!(
        (targets[0].dumps, targets[0].passed_on_devices),
        (dumps, passed),
        "the event turned the devices' proof off for this sample, PassiveOpens let it pass"
    );
    assert_eq!(
        made, 0,
        "a sample after a link event allocated {made} times"
    );
}

fn the_report_dump_with_meminfo_allocates_nothing_after_warm_up() {
    let held = listeners();
    let ports: Vec<u16> = held
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect();
    let mut diag = DiagSocket::open(None).expect("open sock_diag");
    let mut records: Vec<Record> = Vec::new();
    let (made, (seen, _)) = steady_allocations("dump_into with SKMEMINFO", || {
        diag.dump_into(STATE_LISTEN, true, &mut records)
            .expect("LISTEN dump");
        fingerprint(&records)
    });
    assert!(seen >= held.len(), "the dump saw {seen} listeners");
    assert_eq!(
        made, 0,
        "{MEASURED} dumps of {seen} listeners allocated {made} times"
    );
    // The dump that allocated nothing carried what the report needs: our listeners, with drops.
    let ours: Vec<&Record> = records
        .iter()
        .filter(|r| r.addr == LOCALHOST && ports.contains(&r.port))
        .collect();
    assert_eq!(ours.len(), held.len());
    assert!(ours.iter().all(|r| r.drops == Some(0) && r.wqueue > 0));
}
