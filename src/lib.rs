//! signalbox: a model-routing decision service for LLM fleets.
//!
//! One Route request, top to bottom: [`api`] (the gRPC transport) validates it into domain
//! input; [`service`] runs the workflow on the [`state`] the server holds: the [`engine`]
//! decides in named stages (inspect with the [`pii`] and [`classify`] detectors, hard and soft
//! filters over the [`config`] policy's catalog and the [`circuit`] breakers, [`rules`] and
//! [`learned`] routers, [`budget`] caps, plans), the service holds the budget, tracks the
//! decision ([`tracking`]) and appends it to the [`decision_log`]; [`api`] answers. [`server`]
//! wires it to tonic; [`reload`] swaps policy and bundle; [`domain`] is the shared vocabulary.

pub mod api;
pub mod auth;
pub mod baseline;
pub mod budget;
pub mod circuit;
pub mod classify;
pub mod config;
pub mod connection;
pub mod decision_log;
pub mod domain;
pub mod engine;
pub mod fleet;
pub mod inference;
pub mod learned;
pub mod listener;
pub mod money;
pub mod pii;
pub mod privacy;
pub mod reload;
pub mod rules;
pub mod server;
pub mod service;
pub mod state;
pub mod telemetry;
pub mod tls;
pub mod tracking;

/// Generated protobuf and gRPC types (package `signalbox.v1`).
#[allow(clippy::all, clippy::pedantic)]
pub mod proto {
    tonic::include_proto!("signalbox.v1");
    /// Encoded descriptor set, served by gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("signalbox_descriptor");
}
