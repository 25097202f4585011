//! The real gRPC server on port 0, exercised through a tonic client: every RPC and every policy.
//!
//! One test binary (`cargo test --test service`), one module per topic.

#[path = "../common/mod.rs"]
mod common;

mod budgets;
mod circuits;
mod connections;
mod decisions;
mod limits;
mod log_health;
mod privacy;
mod restart;
mod validation;
