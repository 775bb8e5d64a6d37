//! What every AWS client shares: the SDK configuration they are built from, and what the
//! DynamoDB store and the SQS queue make of SDK errors.

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

/// The loader every SDK configuration starts from (Lambda cold start, the local server over
/// DynamoDB, tests and the benchmark against emulators): the latest behaviour version and an
/// HTTPS client on rustls with ring, in place of the SDK's default on aws-lc, which would add
/// a second, larger crypto library to every binary.
pub fn sdk_config_loader() -> aws_config::ConfigLoader {
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    let https = aws_smithy_http_client::Builder::new().tls_provider(Provider::Rustls(CryptoMode::Ring)).build_https();
    aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(https)
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
