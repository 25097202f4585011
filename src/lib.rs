//! signalbox: a model-routing decision service for LLM fleets.
//!
//! Request path, top to bottom: [`api`] validates and converts the gRPC request, [`engine`]
//! inspects the prompt ([`pii`], [`classify`]), filters the catalog ([`config`] policy,
//! [`circuit`] breakers), lets [`rules`] choose, applies [`budget`]s, and [`decision_log`]
//! records the decision; [`server`] wires it to tonic.

pub mod api;
pub mod baseline;
pub mod budget;
pub mod circuit;
pub mod classify;
pub mod config;
pub mod decision_log;
pub mod domain;
pub mod engine;
pub mod inference;
pub mod learned;
pub mod money;
pub mod pii;
pub mod reload;
pub mod rules;
pub mod server;
pub mod tracking;

/// Generated protobuf and gRPC types (package `signalbox.v1`).
#[allow(clippy::all, clippy::pedantic)]
pub mod proto {
    tonic::include_proto!("signalbox.v1");
    /// Encoded descriptor set, served by gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("signalbox_descriptor");
}
