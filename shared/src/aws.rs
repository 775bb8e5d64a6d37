//! What the DynamoDB store and the SQS queue share about AWS SDK errors.

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

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
