//! All integration tests, built as one binary. Tests that need root, a network namespace or a
//! daemon skip with a printed reason, and fail instead under `ACCEPTQ_E2E=require`.

mod common;

mod agents;
mod cli;
mod golden;
mod listeners;
mod output_identity;
mod peaks;
mod readme;
mod rows;
mod run_modes_input;
mod sampler_cost;
mod who;
