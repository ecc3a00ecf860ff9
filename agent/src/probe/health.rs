//! Docker HEALTHCHECK semantics for one probe: starting, healthy, unhealthy; failures in the start
//! period do not count, a success ends it and resets the failing streak, `retries` failures in a row turn it unhealthy.

use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Starting,
    Healthy,
    Unhealthy,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Healthy => "healthy",
            State::Unhealthy => "unhealthy",
        }
    }

    /// Docker's `State.Health.Status` words.
    pub fn parse(s: &str) -> Option<State> {
        match s {
            "starting" => Some(State::Starting),
            "healthy" => Some(State::Healthy),
            "unhealthy" => Some(State::Unhealthy),
            _ => None,
        }
    }
}

/// One probe's health as Docker keeps it.
#[derive(Clone, Debug)]
pub struct Health {
    pub state: State,
    pub failing_streak: u32,
    retries: u32,
    start_period: Duration,
}

impl Health {
    pub fn new(retries: u32, start_period: Duration) -> Health {
        Health { state: State::Starting, failing_streak: 0, retries, start_period }
    }

    /// Records a run that began `since_start` after the container started; returns the state before
    /// when it changed.
    pub fn record(&mut self, success: bool, since_start: Duration) -> Option<State> {
        let before = self.state;
        if success {
            self.failing_streak = 0;
            self.state = State::Healthy;
        } else if !(self.state == State::Starting && since_start < self.start_period) {
            self.failing_streak += 1;
            if self.failing_streak >= self.retries {
                self.state = State::Unhealthy;
            }
        }
        (before != self.state).then_some(before)
    }

    /// Whether the start interval applies to the next run (still starting, within the start period).
    pub fn in_start_period(&self, since_start: Duration) -> bool {
        self.state == State::Starting && since_start < self.start_period
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn retries_failures_in_a_row_turn_it_unhealthy_and_a_success_resets_the_streak() {
        let mut h = Health::new(3, Duration::ZERO);
        assert_eq!(h.record(true, S), Some(State::Starting));
        assert_eq!(h.state, State::Healthy);
        assert_eq!((h.record(false, S), h.record(false, S)), (None, None));
        assert_eq!(h.failing_streak, 2);
        assert_eq!(h.record(true, S), None, "still healthy: the streak did not reach retries");
        assert_eq!(h.failing_streak, 0);
        h.record(false, S);
        h.record(false, S);
        assert_eq!(h.record(false, S), Some(State::Healthy));
        assert_eq!((h.state, h.failing_streak), (State::Unhealthy, 3));
        assert_eq!(h.record(true, S), Some(State::Unhealthy));
    }

    #[test]
    fn failures_in_the_start_period_do_not_count_but_a_success_ends_it() {
        let mut h = Health::new(1, Duration::from_secs(30));
        assert_eq!(h.record(false, 10 * S), None);
        assert_eq!((h.state, h.failing_streak), (State::Starting, 0));
        assert!(h.in_start_period(10 * S));
        h.record(true, 12 * S);
        assert!(!h.in_start_period(13 * S), "a success ends the start period");
        assert_eq!(h.record(false, 14 * S), Some(State::Healthy), "now a failure counts at once");
        let mut late = Health::new(1, Duration::from_secs(30));
        assert_eq!(late.record(false, 31 * S), Some(State::Starting), "after the start period failures count");
    }
}
