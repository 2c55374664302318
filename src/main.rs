use std::process::ExitCode;

use clap::Parser;

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
