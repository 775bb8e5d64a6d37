//! Logging set-up. In Lambda, the runtime's subscriber follows the function's log format and
//! level settings (JSON in template.yaml); locally, JSON lines on stdout filtered by RUST_LOG.

use tracing_subscriber::EnvFilter;

#[cfg(feature = "lambda")]
pub fn init_lambda() {
    lambda_runtime::tracing::init_default_subscriber();
}

pub fn init_local() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt().json().with_env_filter(filter).with_current_span(true).with_span_list(false).init();
}

/// The CloudWatch namespace of Orderly's business metrics.
const METRICS_NAMESPACE: &str = "Orderly";

/// Emits one business metric as a CloudWatch Embedded Metric Format line on stdout: in Lambda,
/// CloudWatch turns it into a metric (no API call, no latency); locally it is one more JSON
/// log line. `function` is the Lambda function name when there is one. Metrics are filtered
/// like the logs at `info` (target `orderly::metrics`): `RUST_LOG=warn` silences them too.
pub fn metric(name: &str, value: i64) {
    if !tracing::enabled!(target: "orderly::metrics", tracing::Level::INFO) {
        return;
    }
    static FUNCTION: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let function =
        FUNCTION.get_or_init(|| std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|_| "orderly-local".into()));
    let timestamp = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    let line = serde_json::json!({
        "_aws": {
            "Timestamp": timestamp as i64,
            "CloudWatchMetrics": [{
                "Namespace": METRICS_NAMESPACE,
                "Dimensions": [["function"]],
                "Metrics": [{"Name": name, "Unit": "Count"}],
            }],
        },
        "function": function,
        name: value,
    });
    println!("{line}");
}
