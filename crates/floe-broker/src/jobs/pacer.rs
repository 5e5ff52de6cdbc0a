//! A rate limit for background work: callers take units (bytes, deletions) and wait until
//! the budget allows them, with up to one second of idle credit as a burst.

use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

#[derive(Debug)]
pub(crate) struct Pacer {
    per_second: f64,
    /// When the units taken so far will have been paid for.
    paid_until: Mutex<Instant>,
}

const BURST: Duration = Duration::from_secs(1);

impl Pacer {
    pub(crate) fn new(per_second: u64) -> Self {
        Self {
            per_second: per_second.max(1) as f64,
            paid_until: Mutex::new(Instant::now()),
        }
    }

    /// Takes `units` from the budget, waiting as long as the rate requires. Returns how
    /// long it waited.
    pub(crate) async fn take(&self, units: u64) -> Duration {
        let wake = {
            let mut paid_until = self.paid_until.lock();
            let now = Instant::now();
            let start = (*paid_until).max(now.checked_sub(BURST).unwrap_or(now));
            *paid_until = start + Duration::from_secs_f64(units as f64 / self.per_second);
            *paid_until
        };
        let now = Instant::now();
        if wake > now {
            tokio::time::sleep_until(wake).await;
            wake - now
        } else {
            Duration::ZERO
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn spends_the_burst_then_waits_at_the_rate() {
        let pacer = Pacer::new(1000);
        tokio::time::advance(Duration::from_secs(5)).await;
        // One second of credit after idling.
        assert_eq!(pacer.take(1000).await, Duration::ZERO);
        // Then each unit costs a millisecond.
        assert_eq!(pacer.take(500).await, Duration::from_millis(500));
        assert_eq!(pacer.take(250).await, Duration::from_millis(250));
    }
}
