//! Jittered exponential backoff between retries of a contended write.

use std::time::Duration;

/// Sleeps 5·2^attempt ms (capped at 320 ms) plus as much again at random, so racing writers
/// spread out instead of colliding again in lock-step.
pub(crate) async fn backoff(attempt: usize) {
    let base = 5u64 << attempt.min(6);
    tokio::time::sleep(Duration::from_millis(base + fastrand::u64(0..=base))).await;
}
