//! The integration binary's runner, on libtest-mimic: every test is a plain `fn()` that panics
//! on failure; one that cannot run here calls [`skip_unless`] (or [`netns_gate`]), which ends it
//! as "ignored" with the reason in the runner's own summary, or as a failure naming that reason
//! under `ACCEPTQ_E2E=require`.
//!
//! libtest-mimic captures no output, so tests say what they measured with [`note!`]: kept with
//! the test and shown when it fails, or at once with `--nocapture`/`--show-output`.

use std::any::Any;
use std::cell::RefCell;
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use libtest_mimic::{Arguments, Completion, Failed, Trial};

/// The panic payload of a test that cannot run here: the reason.
struct Skip(String);

/// `ACCEPTQ_E2E=require` turns every skip into a failure (CI).
pub fn required() -> bool {
    std::env::var("ACCEPTQ_E2E").is_ok_and(|v| v == "require")
}

/// Ends the calling test as ignored, with `reason`, unless `ok`; under `ACCEPTQ_E2E=require`
/// the test fails instead. Returns true or does not return: the bool keeps
/// `if !skip_unless(..) { return; }` call sites reading as they did.
#[track_caller]
pub fn skip_unless(ok: bool, test: &str, reason: &str) -> bool {
    if ok {
        return true;
    }
    if required() {
        panic!("{test}: cannot run ({reason}) and ACCEPTQ_E2E=require");
    }
    // resume_unwind skips the panic hook: a skip prints nothing until the summary.
    panic::resume_unwind(Box::new(Skip(reason.to_string())))
}

thread_local! {
    /// What the test running on this thread noted, and how it panicked.
    static CURRENT: RefCell<Option<Captured>> = const { RefCell::new(None) };
}

#[derive(Default)]
struct Captured {
    notes: Vec<String>,
    panic: Option<String>,
}

static SHOW_NOTES: AtomicBool = AtomicBool::new(false);

/// Keeps `text` with the running test (see [`note!`]).
pub fn keep_note(text: String) {
    if SHOW_NOTES.load(Ordering::Relaxed) {
        eprintln!("{text}");
        return;
    }
    let kept = CURRENT.with(|c| match c.borrow_mut().as_mut() {
        Some(captured) => {
            captured.notes.push(text.clone());
            true
        }
        None => false,
    });
    // A thread the test spawned has no test of its own: say it now rather than lose it.
    if !kept {
        eprintln!("{text}");
    }
}

/// What a test measured or saw, shown only when it fails (or with `--nocapture`).
macro_rules! note {
    ($($arg:tt)*) => {
        $crate::support::harness::keep_note(format!($($arg)*))
    };
}
pub(crate) use note;

/// Registers a module's tests: `tests![first_test, second_test];` defines `pub fn trials()`, which
/// main.rs lists. A test function left out is dead code, an error in this binary.
macro_rules! tests {
    ($($name:ident),* $(,)?) => {
        pub fn trials() -> Vec<libtest_mimic::Trial> {
            vec![$($crate::support::harness::trial(module_path!(), stringify!($name), $name)),*]
        }
    };
}
pub(crate) use tests;

/// Tests skipped at run time, with their reasons, for the list after the summary.
static SKIPPED: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

pub fn trial(module: &str, name: &str, test: fn()) -> Trial {
    // `integration::agents::collectd` → `agents::collectd::name`, as the built-in harness names it.
    let module = module.split_once("::").map_or("", |(_, m)| m);
    let full = format!("{module}::{name}");
    Trial::ignorable_test(full.clone(), move || run_one(&full, test))
}

fn run_one(name: &str, test: fn()) -> Result<Completion, Failed> {
    CURRENT.with(|c| *c.borrow_mut() = Some(Captured::default()));
    let result = panic::catch_unwind(AssertUnwindSafe(test));
    let captured = CURRENT.with(|c| c.borrow_mut().take()).unwrap_or_default();
    match result {
        Ok(()) => Ok(Completion::Completed),
        Err(payload) => match payload.downcast::<Skip>() {
            Ok(skip) => {
                SKIPPED
                    .lock()
                    .unwrap()
                    .push((name.to_string(), skip.0.clone()));
                Ok(Completion::ignored_with(skip.0))
            }
            Err(payload) => {
                let mut msg = captured.panic.unwrap_or_else(|| panic_text(&*payload));
                for n in &captured.notes {
                    msg.push_str("\nnote: ");
                    msg.push_str(n);
                }
                Err(msg.into())
            }
        },
    }
}

fn panic_text(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panicked".to_string())
}

/// On a test's own thread a panic is kept, with where it happened, for the failure report
/// rather than printed between other tests' results; elsewhere (threads a test spawned) it
/// prints as usual. `RUST_BACKTRACE` prints it as usual too, with the backtrace.
fn install_panic_hook() {
    let default = panic::take_hook();
    let backtrace = std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v != "0");
    panic::set_hook(Box::new(move |info| {
        let text = match info.location() {
            Some(at) => format!("panicked at {at}:\n{}", panic_text(info.payload())),
            None => format!("panicked:\n{}", panic_text(info.payload())),
        };
        let kept = CURRENT.with(|c| match c.try_borrow_mut().ok().as_deref_mut() {
            Some(Some(captured)) => {
                captured.panic.get_or_insert(text);
                true
            }
            _ => false,
        });
        if !kept || backtrace {
            default(info);
        }
    }));
}

/// Runs `trials` as `cargo test` would, then lists the skipped ones with their reasons.
pub fn run(trials: Vec<Trial>) -> ExitCode {
    let args = Arguments::from_args();
    SHOW_NOTES.store(args.nocapture || args.show_output, Ordering::Relaxed);
    install_panic_hook();
    let listing = args.list;
    let mut names: Vec<&str> = trials.iter().map(Trial::name).collect();
    names.sort_unstable();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        eprintln!("{} is listed twice in tests![]", w[0]);
        return ExitCode::FAILURE;
    }
    let conclusion = libtest_mimic::run(&args, trials);
    let mut skipped = SKIPPED.lock().unwrap();
    if !listing && !skipped.is_empty() {
        skipped.sort();
        println!(
            "{} tests could not run here (ACCEPTQ_E2E=require makes each a failure):",
            skipped.len()
        );
        for (name, reason) in skipped.iter() {
            println!("    {name}: {reason}");
        }
        println!();
    }
    conclusion.exit_code()
}

/// Source files of this binary, for [`every_test_is_registered`].
fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().map(Result::unwrap) {
        let path = entry.path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The checks the compiler cannot make: a `#[test]` attribute compiles to nothing here (this
/// binary is built without the built-in harness), so a test written with one would silently
/// never run; a file not declared as a module is not compiled at all; and `println!` or
/// `eprintln!` in a test prints between other tests' results (use `note!`).
fn every_test_is_registered() {
    let root = crate::support::repo().join("tests/integration");
    let mut files = Vec::new();
    sources(&root, &mut files);
    let mut problems = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let rel = file.strip_prefix(&root).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.trim_start();
            if code.starts_with("//") {
                continue;
            }
            let at = format!("{}:{}", rel.display(), n + 1);
            if code.starts_with("#[test]") {
                problems.push(format!(
                    "{at}: #[test] does nothing here: list it in tests![]"
                ));
            }
            if rel != Path::new("support/harness.rs")
                && ["println!(", "print!(", "dbg!("]
                    .iter()
                    .any(|p| code.contains(p))
            {
                problems.push(format!("{at}: prints between results: use note!"));
            }
        }
        // Every file but main.rs is declared by its parent: `mod name;` in main.rs or mod.rs.
        if rel == Path::new("main.rs") {
            continue;
        }
        let stem = file.file_stem().unwrap().to_str().unwrap();
        let (parent_file, name) = if stem == "mod" {
            let dir = file.parent().unwrap();
            let up = dir.parent().unwrap();
            let parent = if up == root {
                root.join("main.rs")
            } else {
                up.join("mod.rs")
            };
            (parent, dir.file_name().unwrap().to_str().unwrap())
        } else {
            let dir = file.parent().unwrap();
            let parent = if dir == root {
                root.join("main.rs")
            } else {
                dir.join("mod.rs")
            };
            (parent, stem)
        };
        let declared = std::fs::read_to_string(&parent_file)
            .unwrap_or_default()
            .lines()
            .map(str::trim)
            .any(|l| l == format!("mod {name};") || l == format!("pub mod {name};"));
        if !declared {
            problems.push(format!(
                "{}: not declared as `mod {name};` in {}",
                rel.display(),
                parent_file.strip_prefix(&root).unwrap().display()
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

tests![every_test_is_registered];
