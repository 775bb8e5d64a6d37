//! Jittered exponential backoff between retries of a contended write.

use std::time::Duration;

/// The pause after `failures` failures in a row of something retried until it works (a
/// receive, a relay's hand-off): 0.5 s, 1 s, 2 s … up to `longest`.
pub(crate) fn pause_after(failures: u32, longest: Duration) -> Duration {
    Duration::from_millis(250u64.saturating_mul(1 << failures.min(7))).min(longest)
}

/// Sleeps 5·2^attempt ms (capped at 320 ms) plus as much again at random, so racing writers
/// spread out instead of colliding again in lock-step.
pub(crate) async fn backoff(attempt: usize) {
    let base = 5u64 << attempt.min(6);
    tokio::time::sleep(Duration::from_millis(base + fastrand::u64(0..=base))).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_grow_and_stop() {
        let longest = Duration::from_secs(10);
        assert_eq!(pause_after(1, longest), Duration::from_millis(500));
        assert_eq!(pause_after(2, longest), Duration::from_secs(1));
        assert_eq!(pause_after(30, longest), longest);
    }
}
