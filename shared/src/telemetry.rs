//! Logging set-up. In Lambda, the runtime's subscriber follows the function's log format and
//! level settings (JSON in template.yaml); locally, JSON lines on stdout filtered by RUST_LOG.

use tracing_subscriber::EnvFilter;

pub fn init_lambda() {
    lambda_http::tracing::init_default_subscriber();
}

pub fn init_local() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .with_span_list(false)
        .init();
}
