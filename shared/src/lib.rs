//! Orderly's shared library: every Lambda function and the local server are built from it.
//!
//! - [`model`]: the entities, value types and the order status table; imports nothing else.
//! - [`store`]: one trait per area with its DynamoDB and embedded SQLite backends.
//! - [`domain`]: one service per area (sessions, accounts, customers, catalog, orders,
//!   payments, fulfillment, the sweep), each over the store traits it uses.
//! - [`http`]: axum routers per function, extractors, and the one error → problem+json mapping.
//! - [`queue`]: the [`queue::Queue`] trait with its SQS and embedded SQLite backends, and the
//!   consumer side shared by Lambda and the local server; [`workers`]: the queue consumers.
//! - [`gateway`]: the payment gateway (simulated) and its circuit breaker; [`alerts`]: where
//!   low-stock alerts are published (SNS, or the log locally); [`mail`]: email to customers
//!   (SES, SMTP, or `.eml` files locally).
//! - [`embedded_db`]: the SQLite engine (group commit, reader pool) under both embedded backends.
//! - [`config`], [`clock`], [`telemetry`], [`lambda`]: wiring shared by the Lambda mains and
//!   `orderly-local`. See docs/architecture.md for the map.

pub mod alerts;
pub mod aws;
pub mod clock;
pub mod config;
pub mod domain;
#[cfg(feature = "sqlite")]
pub mod embedded_db;
pub mod error;
pub mod gateway;
pub mod http;
#[cfg(feature = "lambda")]
pub mod lambda;
pub mod mail;
pub mod model;
pub mod queue;
mod retry;
pub mod store;
pub mod telemetry;
pub mod workers;

pub use error::Error;
