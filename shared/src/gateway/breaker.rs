//! A circuit breaker in front of the gateway: after `threshold` consecutive failures it opens
//! and refuses calls for `cool_down`, then lets one trial call through (half-open); a success
//! closes it, a failure opens it again. State is per process (per Lambda instance): enough
//! to stop one instance hammering a failing gateway, and never an invariant of the data.

use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { trial_in_flight: bool },
}

#[derive(Debug)]
pub struct CircuitBreaker {
    threshold: u32,
    cool_down: Duration,
    state: Mutex<State>,
}

impl CircuitBreaker {
    pub fn new(threshold: u32, cool_down: Duration) -> Self {
        Self { threshold: threshold.max(1), cool_down, state: Mutex::new(State::Closed { failures: 0 }) }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// `Ok` if a call may go out now; `Err(wait)` while open (or while a half-open trial runs).
    pub fn permit(&self) -> Result<(), Duration> {
        let mut state = self.state();
        match *state {
            State::Closed { .. } => Ok(()),
            State::Open { until } => {
                let now = Instant::now();
                if now >= until {
                    *state = State::HalfOpen { trial_in_flight: true };
                    Ok(())
                } else {
                    Err(until - now)
                }
            }
            State::HalfOpen { trial_in_flight: true } => Err(self.cool_down),
            State::HalfOpen { trial_in_flight: false } => {
                *state = State::HalfOpen { trial_in_flight: true };
                Ok(())
            }
        }
    }

    pub fn record_success(&self) {
        *self.state() = State::Closed { failures: 0 };
    }

    /// The permitted call never reached a verdict on the gateway (the store failed around
    /// it): a half-open trial slot is given back, nothing is counted.
    pub fn release(&self) {
        let mut state = self.state();
        if let State::HalfOpen { trial_in_flight: true } = *state {
            *state = State::HalfOpen { trial_in_flight: false };
        }
    }

    pub fn record_failure(&self) {
        let mut state = self.state();
        *state = match *state {
            State::Closed { failures } if failures + 1 < self.threshold => State::Closed { failures: failures + 1 },
            _ => {
                tracing::warn!(cool_down_s = self.cool_down.as_secs(), "payment gateway circuit opened");
                crate::telemetry::metric("GatewayCircuitOpened", 1);
                State::Open { until: Instant::now() + self.cool_down }
            }
        };
    }

    pub fn is_open(&self) -> bool {
        matches!(*self.state(), State::Open { until } if Instant::now() < until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_the_threshold_then_half_opens_for_one_trial() {
        let breaker = CircuitBreaker::new(3, Duration::from_millis(40));
        for _ in 0..2 {
            assert!(breaker.permit().is_ok());
            breaker.record_failure();
        }
        assert!(!breaker.is_open(), "two failures: still closed");
        breaker.record_failure();
        assert!(breaker.is_open());
        assert!(breaker.permit().is_err(), "open: refused");
        std::thread::sleep(Duration::from_millis(50));
        assert!(breaker.permit().is_ok(), "half-open: one trial");
        assert!(breaker.permit().is_err(), "only one");
        breaker.record_failure();
        assert!(breaker.is_open(), "a failed trial opens it again");
        std::thread::sleep(Duration::from_millis(50));
        assert!(breaker.permit().is_ok());
        breaker.record_success();
        assert!(breaker.permit().is_ok() && breaker.permit().is_ok(), "closed again");
    }

    #[test]
    fn a_trial_without_a_verdict_gives_its_slot_back() {
        let breaker = CircuitBreaker::new(1, Duration::from_millis(20));
        breaker.record_failure();
        std::thread::sleep(Duration::from_millis(30));
        assert!(breaker.permit().is_ok(), "the trial");
        breaker.release();
        assert!(breaker.permit().is_ok(), "another trial may go");
    }
}
