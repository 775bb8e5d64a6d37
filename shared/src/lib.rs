//! Orderly's shared library: every Lambda function and the local server are built from it.
//!
//! - [`domain`]: entities, input parsing and the rules (the [`domain::Orderly`] service).
//! - [`store`]: the [`store::Store`] trait with its DynamoDB and embedded SQLite backends.
//! - [`http`]: axum routers per function, extractors, and the one error → problem+json mapping.
//! - [`queue`]: the [`queue::Queue`] trait with its SQS and embedded SQLite backends, and the
//!   consumer side shared by Lambda and the local server; [`workers`]: the queue consumers.
//! - [`config`], [`clock`], [`telemetry`], [`lambda`]: wiring shared by the Lambda mains and
//!   `orderly-local`.

mod aws;
pub mod clock;
pub mod config;
pub mod domain;
pub mod error;
pub mod gateway;
pub mod http;
pub mod lambda;
pub mod model;
pub mod queue;
mod retry;
pub mod store;
pub mod telemetry;
pub mod workers;

pub use error::Error;
