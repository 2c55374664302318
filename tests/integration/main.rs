//! All integration tests, built as one binary on our own runner (support/harness.rs), so that a
//! test that cannot run here is reported "ignored" with its reason in the summary, and fails
//! instead under `ACCEPTQ_E2E=require`.
//!
//! A test is a plain `fn name()` that panics on failure, listed in its file's `tests![...]`
//! (a test left out is dead code, an error here). Helpers: `use crate::support::*;`.
//!
//! Porting a file written for the built-in harness (`#[test] fn`s using `crate::common::*`):
//! 1. `use crate::common::...` becomes `use crate::support::...` (same helper names);
//! 2. delete every `#[test]` line and list those functions once, after the `use` lines:
//!    `tests![first_test, second_test];`
//! 3. `eprintln!`/`println!` becomes `note!` (kept with the test, shown when it fails);
//! 4. add `mod file;` below and `file::trials(),` to the list in `main`.
//!
//! Gates keep their shape: `if !netns_gate("file::test") { return; }` and
//! `skip_unless(ok, "file::test", "needs ...")` end the test as ignored with that reason. The
//! `every_test_is_registered` check fails on a leftover `#[test]`, a print, or an undeclared file.

#![deny(dead_code)]

mod support;

mod agents;
mod alerts;
mod alerts_attack;
mod attribution;
mod capabilities;
mod capabilities_attack;
mod check;
mod check_attack;
mod churn;
mod cli;
mod containers;
mod containers_attack;
mod device_gate;
mod device_gate_attack;
mod faults;
mod faults_attack;
mod filters;
mod gate_attack;
mod golden;
mod listeners;
mod one_walk;
mod one_walk_attack;
mod output_identity;
mod peaks;
mod queue_wait;
mod readme;
mod report_cost;
mod reuseport;
mod rows;
mod run_modes_input;
mod sampler_cost;
mod sampler_gate;
mod syn_flood;
mod syn_queue;
mod top;
mod top_attack;

fn main() -> std::process::ExitCode {
    support::harness::run(
        [
            support::harness::trials(),
            agents::collectd::trials(),
            agents::influxdb::trials(),
            agents::prometheus::trials(),
            agents::telegraf::trials(),
            alerts::trials(),
            alerts_attack::trials(),
            attribution::trials(),
            capabilities::trials(),
            capabilities_attack::trials(),
            check::trials(),
            check_attack::trials(),
            churn::trials(),
            cli::trials(),
            containers::trials(),
            containers_attack::trials(),
            device_gate::trials(),
            device_gate_attack::trials(),
            faults::trials(),
            faults_attack::trials(),
            filters::trials(),
            gate_attack::trials(),
            golden::trials(),
            listeners::trials(),
            one_walk::trials(),
            one_walk_attack::trials(),
            output_identity::trials(),
            peaks::trials(),
            queue_wait::trials(),
            readme::trials(),
            report_cost::trials(),
            reuseport::trials(),
            rows::trials(),
            run_modes_input::trials(),
            sampler_cost::trials(),
            syn_flood::trials(),
            sampler_gate::trials(),
            syn_queue::trials(),
            top::trials(),
            top_attack::trials(),
        ]
        .into_iter()
        .flatten()
        .collect(),
    )
}
