use std::process::ExitCode;

use clap::Parser;

use acceptq::caps::{self, Needs};
use acceptq::cli::{Args, Command};
use acceptq::run::{run, RunError};
use acceptq::warn;

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) if !e.use_stderr() => {
            // --help and --version: to stdout, status 0.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let text = e.render().to_string();
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                warn::error(line.trim_start_matches("error: "));
            }
            return ExitCode::from(2);
        }
    };
    let needs = match &args.command {
        Some(Command::Check(check)) => Needs::of(&check.select, false),
        Some(Command::Top(top)) => Needs::of(&top.select, false),
        None => Needs::of(&args.select, args.output.is_some()),
    };
    if let Err(e) = caps::limit(&needs) {
        warn::error(&e);
        return ExitCode::FAILURE;
    }
    match args.command {
        Some(Command::Check(check)) => return acceptq::check::main(&check),
        Some(Command::Top(top)) => return acceptq::top::main(&top),
        None => {}
    }
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(RunError::Usage(msg)) => {
            warn::error(&msg);
            ExitCode::from(2)
        }
        Err(RunError::Fatal(msg)) => {
            warn::error(&msg);
            ExitCode::FAILURE
        }
    }
}
