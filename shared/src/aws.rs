//! What every AWS client shares: the SDK configuration they are built from, and what the
//! DynamoDB store and the SQS queue make of SDK errors.

use std::env;
use std::time::Duration;

use aws_config::environment::EnvironmentVariableCredentialsProvider;
use aws_config::identity::IdentityCache;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::config::{Credentials, SharedCredentialsProvider, SharedHttpClient};
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_smithy_async::rt::sleep::{SharedAsyncSleep, TokioSleep};
use aws_smithy_async::time::SharedTimeSource;
use aws_types::origin::Origin;
use aws_types::service_config::{LoadServiceConfig, ServiceConfigKey};

/// The HTTPS client every AWS client uses: rustls with ring, in place of the SDK's default on
/// aws-lc, which would add a second, larger crypto library to every binary.
fn https_client() -> SharedHttpClient {
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    aws_smithy_http_client::Builder::new().tls_provider(Provider::Rustls(CryptoMode::Ring)).build_https()
}

/// What every SDK configuration starts from: the latest behaviour version, the HTTPS client,
/// the SDK's standard retries and connect timeout (which sleep on tokio), cached credentials,
/// and endpoints from `AWS_ENDPOINT_URL_<SERVICE>` (`AWS_ENDPOINT_URL_DYNAMODB` for DynamoDB
/// Local). Tests and the benchmark add an emulator's endpoint, region and credentials.
pub fn sdk_config_builder() -> aws_types::sdk_config::Builder {
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .http_client(https_client())
        .retry_config(RetryConfig::standard())
        .timeout_config(TimeoutConfig::builder().connect_timeout(Duration::from_millis(3100)).build())
        .identity_cache(IdentityCache::lazy().build())
        .sleep_impl(SharedAsyncSleep::new(TokioSleep::new()))
        .time_source(SharedTimeSource::default())
        .service_config(EndpointsFromEnv)
}

/// A Lambda function's SDK configuration, from what Lambda puts in the environment: the region
/// (`AWS_REGION`) and the execution role's credentials (`AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`), plus `AWS_ENDPOINT_URL[_<SERVICE>]` for
/// emulators and `AWS_MAX_ATTEMPTS`. aws-config's default chains (profiles, SSO, web identity
/// through STS, IMDS) serve other hosts; left out, they are not linked into every function.
/// No await: nothing is fetched at cold start. Not read (the template sets none of them):
/// `AWS_RETRY_MODE`, `AWS_USE_FIPS_ENDPOINT`, `AWS_USE_DUALSTACK_ENDPOINT`,
/// `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS`, `AWS_SDK_UA_APP_ID`, the checksum and account-id
/// endpoint settings: the clients' defaults apply.
pub fn lambda_sdk_config() -> SdkConfig {
    let region = env::var("AWS_REGION").or_else(|_| env::var("AWS_DEFAULT_REGION")).ok().map(Region::new);
    let mut builder = sdk_config_builder()
        .region(region)
        .credentials_provider(SharedCredentialsProvider::new(EnvironmentVariableCredentialsProvider::new()));
    builder.set_endpoint_url(env::var("AWS_ENDPOINT_URL").ok());
    if let Some(attempts) = env::var("AWS_MAX_ATTEMPTS").ok().and_then(|n| n.parse().ok()).filter(|n| *n > 0) {
        builder.set_retry_config(Some(RetryConfig::standard().with_max_attempts(attempts)));
    }
    builder.build()
}

/// An emulator on loopback (DynamoDB Local, moto), for tests and the benchmark: its endpoint
/// (set in code, so it wins over any `AWS_ENDPOINT_URL*` in the environment), a fixed region
/// and dummy credentials.
pub fn emulator_sdk_config(endpoint: &str) -> SdkConfig {
    let mut builder = sdk_config_builder()
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new("test", "test", None, None, "emulator")));
    builder.insert_origin("endpoint_url", Origin::shared_config());
    builder.build()
}

/// The local server's configuration over DynamoDB: aws-config's full chains (profiles, SSO,
/// IMDS…), since a developer's machine keeps credentials where the AWS CLI does.
pub fn local_sdk_config_loader() -> aws_config::ConfigLoader {
    aws_config::defaults(BehaviorVersion::latest()).http_client(https_client())
}

/// `AWS_ENDPOINT_URL_<SERVICE ID>` (upper case, spaces as underscores), then `AWS_ENDPOINT_URL`,
/// as the SDK documents them: what the clients ask the shared configuration for.
#[derive(Debug)]
struct EndpointsFromEnv;

impl LoadServiceConfig for EndpointsFromEnv {
    fn load_config(&self, key: ServiceConfigKey<'_>) -> Option<String> {
        let service = key.service_id().to_ascii_uppercase().replace(' ', "_");
        env::var(format!("{}_{service}", key.env())).or_else(|_| env::var(key.env())).ok()
    }
}

/// Error codes that mean "try again later" on DynamoDB or SQS.
const TRANSIENT_CODES: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "KmsThrottled",
    "OverLimit",
    "InternalServerError",
    "InternalError",
    "InternalFailure",
    "ServiceUnavailable",
];

/// An SDK error as a one-line description, and whether it is worth retrying later: network
/// trouble, timeouts, 5xx and throttling are; everything else is a bug or bad input.
pub(crate) fn describe<E>(operation: &str, err: &SdkError<E, HttpResponse>) -> (String, bool)
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let transient = match err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => true,
        SdkError::ServiceError(e) => {
            e.raw().status().is_server_error() || e.err().code().is_some_and(|code| TRANSIENT_CODES.contains(&code))
        }
        _ => false,
    };
    (format!("{operation}: {}", DisplayErrorContext(err)), transient)
}
