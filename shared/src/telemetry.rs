//! Logging set-up: JSON lines on stdout. In Lambda they follow the function's log settings
//! (template.yaml: JSON, with AWS_LAMBDA_LOG_LEVEL), as lambda_runtime's default subscriber
//! would, without its regex-based env-filter; locally, RUST_LOG filters them.

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// A `RUST_LOG`-style filter: a level (`warn`) or `target=level` pairs (`info,orderly=debug`);
/// anything unreadable, or nothing, means `info`. Lambda's `FATAL` level is `error` here.
fn log_filter(spec: Option<&str>) -> Targets {
    let info = || Targets::new().with_default(LevelFilter::INFO);
    match spec.map(str::trim) {
        Some(s) if s.eq_ignore_ascii_case("fatal") => Targets::new().with_default(LevelFilter::ERROR),
        Some(s) if !s.is_empty() => s.parse().unwrap_or_else(|_| info()),
        _ => info(),
    }
}

/// Lambda's filter: `RUST_LOG`'s per-target settings, with the function's log level
/// (`AWS_LAMBDA_LOG_LEVEL`, from the template's `ApplicationLogLevel`) as the default level when
/// set, as lambda_runtime's own subscriber does.
#[cfg(feature = "lambda")]
fn lambda_log_filter(rust_log: Option<&str>, lambda_level: Option<&str>) -> Targets {
    let filter = log_filter(rust_log);
    match lambda_level.map(|level| log_filter(Some(level)).default_level()) {
        Some(Some(level)) => filter.with_default(level),
        _ => filter,
    }
}

#[cfg(feature = "lambda")]
pub fn init_lambda() {
    let filter = lambda_log_filter(
        std::env::var("RUST_LOG").ok().as_deref(),
        std::env::var("AWS_LAMBDA_LOG_LEVEL").ok().as_deref(),
    );
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    // Lambda stamps every line itself.
    let fmt = tracing_subscriber::fmt::layer().with_target(false).without_time();
    let registry = tracing_subscriber::registry().with(filter);
    if json { registry.with(fmt.json()).init() } else { registry.with(fmt).init() }
}

pub fn init_local() {
    let filter = log_filter(std::env::var("RUST_LOG").ok().as_deref());
    let json = tracing_subscriber::fmt::layer().json().with_current_span(true).with_span_list(false);
    tracing_subscriber::registry().with(filter).with(json).init();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_filters_read_levels_and_target_lists_and_default_to_info() {
        let enabled = |spec: Option<&str>, target: &str, level| log_filter(spec).would_enable(target, &level);
        assert!(enabled(None, "orderly", tracing::Level::INFO));
        assert!(!enabled(None, "orderly", tracing::Level::DEBUG));
        assert!(!enabled(Some("warn"), "orderly::metrics", tracing::Level::INFO));
        assert!(enabled(Some("WARN"), "orderly", tracing::Level::WARN));
        assert!(!enabled(Some("FATAL"), "orderly", tracing::Level::WARN));
        assert!(enabled(Some("warn,orderly=debug"), "orderly::store", tracing::Level::DEBUG));
        assert!(!enabled(Some("warn,orderly=debug"), "hyper", tracing::Level::INFO));
        assert!(enabled(Some("orderly=loud"), "orderly", tracing::Level::INFO));
    }

    #[cfg(feature = "lambda")]
    #[test]
    fn lambda_logs_take_the_function_level_as_default_and_rust_log_per_target() {
        let enabled =
            |rust_log, lambda, target: &str, level| lambda_log_filter(rust_log, lambda).would_enable(target, &level);
        assert!(!enabled(None, Some("WARN"), "orderly", tracing::Level::INFO));
        assert!(enabled(Some("orderly::store=debug"), Some("WARN"), "orderly::store", tracing::Level::DEBUG));
        assert!(!enabled(Some("orderly::store=debug"), Some("WARN"), "hyper", tracing::Level::INFO));
        assert!(enabled(Some("debug"), None, "hyper", tracing::Level::DEBUG));
        assert!(!enabled(Some("debug"), Some("INFO"), "hyper", tracing::Level::DEBUG));
    }
}
