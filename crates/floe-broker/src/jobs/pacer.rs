//! Rate limits for background work: callers take units (bytes, deletions) and wait until
//! the budget allows them, with up to one second of idle credit as a burst.
//!
//! The byte budget of compaction and export yields to produce ([`ProduceDelay`]): it runs
//! at `jobs.bytes_per_second` while sealed segments are answered in about the time the
//! quickest take, halves for each 100 ms in which a segment took `jobs.yield_delay` longer
//! than that, down to `jobs.min_bytes_per_second`, and climbs back over about two seconds
//! once they are quick again. This is LEDBAT's idea (RFC 6817, a background transfer that
//! backs off when it sees queueing delay above the path's base delay) applied to the
//! broker's disk and CPU: produce's own delay is the signal, so no capacity needs
//! configuring, and the floor keeps compaction progressing under sustained load
//! (ADR 0003).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use tokio::time::Instant;

#[derive(Debug)]
pub(crate) struct Pacer {
    rate: Rate,
    /// When the units taken so far will have been paid for.
    paid_until: Mutex<Instant>,
}

#[derive(Debug)]
enum Rate {
    Fixed(f64),
    Yielding(Arc<ProduceDelay>),
}

const BURST: Duration = Duration::from_secs(1);

impl Pacer {
    /// A fixed budget of `per_second` units.
    pub(crate) fn new(per_second: u64) -> Self {
        Self::with_rate(Rate::Fixed(per_second.max(1) as f64))
    }

    /// A byte budget that yields to produce as `delay` says.
    pub(crate) fn yielding(delay: Arc<ProduceDelay>) -> Self {
        Self::with_rate(Rate::Yielding(delay))
    }

    fn with_rate(rate: Rate) -> Self {
        Self {
            rate,
            paid_until: Mutex::new(Instant::now()),
        }
    }

    /// Takes `units` from the budget, waiting as long as the rate requires. Returns how
    /// long it waited.
    pub(crate) async fn take(&self, units: u64) -> Duration {
        let wake = {
            let mut paid_until = self.paid_until.lock();
            let now = Instant::now();
            let per_second = match &self.rate {
                Rate::Fixed(per_second) => *per_second,
                Rate::Yielding(delay) => delay.rate(now),
            };
            let start = (*paid_until).max(now.checked_sub(BURST).unwrap_or(now));
            *paid_until = start + Duration::from_secs_f64(units as f64 / per_second);
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

/// How often the budget is judged: halved at most once per window, raised once per
/// window without a late segment.
const WINDOW: Duration = Duration::from_millis(100);
/// Windows from the floor back to the ceiling (two seconds).
const RECOVERY_WINDOWS: f64 = 20.0;
/// The base delay is the least seal-to-answer time over this many buckets of
/// `BASE_BUCKET`: a minute, so that a minute of load does not pass for the base.
const BASE_BUCKETS: usize = 6;
const BASE_BUCKET: Duration = Duration::from_secs(10);

/// The produce path's delay from a segment's seal to its answer (upload, commit order,
/// commit), and the background byte budget it allows.
#[derive(Debug)]
pub(crate) struct ProduceDelay {
    ceiling: f64,
    floor: f64,
    target: Duration,
    state: Mutex<DelayState>,
}

#[derive(Debug)]
struct DelayState {
    /// Bytes per second background work may use now.
    rate: f64,
    window_start: Instant,
    /// A segment in the current window took longer than base + target.
    late: bool,
    /// The least time of each recent bucket, oldest first, with the bucket's start.
    base: VecDeque<(Instant, Duration)>,
    /// Windows with a late segment (the budget halved, or stayed at its floor), since start.
    yields: u64,
}

impl ProduceDelay {
    /// A budget between `floor` and `ceiling` bytes per second that halves in each window
    /// where a segment took `target` longer than the base.
    pub(crate) fn new(ceiling: u64, floor: u64, target: Duration) -> Self {
        let ceiling = ceiling.max(1) as f64;
        Self {
            ceiling,
            floor: (floor.max(1) as f64).min(ceiling),
            target,
            state: Mutex::new(DelayState {
                rate: ceiling,
                window_start: Instant::now(),
                late: false,
                base: VecDeque::with_capacity(BASE_BUCKETS + 1),
                yields: 0,
            }),
        }
    }

    /// A sealed segment was answered `took` after its seal.
    pub(crate) fn observe(&self, took: Duration) {
        let now = Instant::now();
        let mut state = self.state.lock();
        self.roll(&mut state, now);
        // Buckets older than the history go by time too, not only as new ones come: after
        // an idle hour the base is the next minute's, not the hour-old one.
        let history = BASE_BUCKET * BASE_BUCKETS as u32;
        while state
            .base
            .front()
            .is_some_and(|(start, _)| *start + history <= now)
        {
            state.base.pop_front();
        }
        match state.base.back_mut() {
            Some((start, least)) if now < *start + BASE_BUCKET => *least = (*least).min(took),
            _ => {
                state.base.push_back((now, took));
                if state.base.len() > BASE_BUCKETS {
                    state.base.pop_front();
                }
            }
        }
        let base = state.base.iter().map(|(_, least)| *least).min();
        if base.is_some_and(|base| took > base + self.target) {
            state.late = true;
        }
    }

    /// A sealed segment's upload failed: its window counts as late, and its time does not
    /// enter the base (a quick refusal is no measure of the path).
    pub(crate) fn failed(&self) {
        let mut state = self.state.lock();
        self.roll(&mut state, Instant::now());
        state.late = true;
    }

    /// The bytes per second background work may use at `now`.
    pub(crate) fn rate(&self, now: Instant) -> f64 {
        let mut state = self.state.lock();
        self.roll(&mut state, now);
        state.rate
    }

    /// Windows with a late segment since start.
    pub(crate) fn yields(&self) -> u64 {
        self.state.lock().yields
    }

    /// Judges the windows that ended by `now`: the first halves the budget if it saw a
    /// late segment, and every window without one raises it by a twentieth of the span.
    fn roll(&self, state: &mut DelayState, now: Instant) {
        let elapsed = now.saturating_duration_since(state.window_start);
        if elapsed < WINDOW {
            return;
        }
        let windows = elapsed.as_nanos() / WINDOW.as_nanos();
        // Past the recovery span, more quiet windows change nothing.
        let mut quiet = windows.min(RECOVERY_WINDOWS as u128 + 1) as f64;
        if state.late {
            state.rate = (state.rate / 2.0).max(self.floor);
            state.yields += 1;
            state.late = false;
            quiet -= 1.0;
        }
        let step = (self.ceiling - self.floor) / RECOVERY_WINDOWS;
        state.rate = (state.rate + step * quiet).min(self.ceiling);
        // Whole windows only, so window edges stay on the grid the first one set.
        state.window_start += Duration::from_nanos((windows * WINDOW.as_nanos()) as u64);
    }
}

/// `floe_background_bytes_per_second` and `floe_background_yields_total`, read at scrape
/// time.
#[derive(Debug)]
pub(crate) struct BudgetGauges(pub Arc<ProduceDelay>);

impl Collector for BudgetGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let rate = ConstGauge::new(self.0.rate(Instant::now()) as u64);
        rate.encode(encoder.encode_descriptor(
            "floe_background_bytes_per_second",
            "The byte budget compaction and export have now: jobs.bytes_per_second while \
             produce is quick, less while its segments are slowed",
            None,
            rate.metric_type(),
        )?)?;
        let yields = ConstCounter::new(self.0.yields());
        yields.encode(encoder.encode_descriptor(
            "floe_background_yields",
            "100-ms windows in which a produce segment was slowed and the background byte \
             budget halved (or stayed at jobs.min_bytes_per_second)",
            None,
            yields.metric_type(),
        )?)
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

    const MS: Duration = Duration::from_millis(1);

    /// Segments answered every 10 ms for `span`, each taking `took`.
    async fn segments(delay: &ProduceDelay, span: Duration, took: Duration) {
        let end = Instant::now() + span;
        while Instant::now() < end {
            delay.observe(took);
            tokio::time::advance(10 * MS).await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_budget_halves_while_segments_are_late_and_recovers_once_they_are_not() {
        let delay = ProduceDelay::new(64_000, 8_000, 10 * MS);
        // Quick segments set the base (2 ms) and leave the budget at its ceiling.
        segments(&delay, Duration::from_secs(1), 2 * MS).await;
        assert_eq!(delay.rate(Instant::now()), 64_000.0);
        // 11 ms is within the target above the base: no yield.
        segments(&delay, Duration::from_millis(500), 11 * MS).await;
        assert_eq!(delay.rate(Instant::now()), 64_000.0);
        assert_eq!(delay.yields(), 0);
        // One late segment halves it once, in its window.
        delay.observe(13 * MS);
        tokio::time::advance(WINDOW).await;
        assert_eq!(delay.rate(Instant::now()), 32_000.0);
        assert_eq!(delay.yields(), 1);
        // Ten late segments in one window halve it once, not ten times.
        segments(&delay, WINDOW, 30 * MS).await;
        assert_eq!(delay.rate(Instant::now()), 16_000.0);
        assert_eq!(delay.yields(), 2);
        // Late segments in every window hold it at the floor, not below.
        segments(&delay, Duration::from_secs(1), 30 * MS).await;
        assert_eq!(delay.rate(Instant::now()), 8_000.0);
        // A failed upload counts as late as well.
        segments(&delay, Duration::from_secs(2), 2 * MS).await;
        assert_eq!(delay.rate(Instant::now()), 64_000.0);
        delay.failed();
        tokio::time::advance(WINDOW).await;
        assert_eq!(delay.rate(Instant::now()), 32_000.0);
        // Then back to the floor for the recovery check below.
        segments(&delay, Duration::from_secs(1), 30 * MS).await;
        assert_eq!(delay.rate(Instant::now()), 8_000.0);
        // Quick again: a twentieth of the span back per window, the ceiling in two seconds.
        segments(&delay, WINDOW, 2 * MS).await;
        tokio::time::advance(MS).await;
        assert_eq!(delay.rate(Instant::now()), 8_000.0 + 56_000.0 / 20.0);
        segments(&delay, Duration::from_secs(2), 2 * MS).await;
        assert_eq!(delay.rate(Instant::now()), 64_000.0);
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_produce_path_restores_the_ceiling_and_a_slow_minute_becomes_the_base() {
        let delay = ProduceDelay::new(64_000, 8_000, 10 * MS);
        // No segments at all: nothing to yield to.
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(delay.rate(Instant::now()), 64_000.0);
        // At the floor, then idle: the budget is back at the ceiling without a segment.
        segments(&delay, Duration::from_secs(1), 2 * MS).await;
        segments(&delay, Duration::from_secs(1), 50 * MS).await;
        assert_eq!(delay.rate(Instant::now()), 8_000.0);
        tokio::time::advance(Duration::from_secs(3)).await;
        assert_eq!(delay.rate(Instant::now()), 64_000.0);
        // An idle hour later the old 2-ms base is gone: 20-ms segments are the new base,
        // not late ones.
        tokio::time::advance(Duration::from_secs(3600)).await;
        let yields = delay.yields();
        segments(&delay, Duration::from_secs(2), 20 * MS).await;
        assert_eq!(delay.yields(), yields, "the hour-old base expired");
        tokio::time::advance(Duration::from_secs(61)).await;
        segments(&delay, Duration::from_secs(1), 2 * MS).await;
        // Slower segments for over a minute (larger ones, say): the 2-ms base ages out, so
        // they stop counting as late and the budget returns to its ceiling.
        segments(&delay, Duration::from_secs(61), 20 * MS).await;
        segments(&delay, Duration::from_secs(2), 20 * MS).await;
        assert_eq!(delay.rate(Instant::now()), 64_000.0);
        let yields = delay.yields();
        segments(&delay, Duration::from_secs(1), 25 * MS).await;
        assert_eq!(
            delay.yields(),
            yields,
            "5 ms over a 20-ms base is within the target"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_yielding_pacer_waits_at_the_budget_it_is_given() {
        let delay = Arc::new(ProduceDelay::new(64_000, 8_000, 10 * MS));
        let pacer = Pacer::yielding(Arc::clone(&delay));
        // Base 2 ms, then late segments: the budget falls to its floor.
        segments(&delay, Duration::from_secs(1), 2 * MS).await;
        segments(&delay, Duration::from_secs(1), 50 * MS).await;
        assert_eq!(delay.rate(Instant::now()), 8_000.0);
        // A second of credit at the floor, then 8,000 bytes cost a second.
        assert_eq!(pacer.take(8_000).await, Duration::ZERO);
        assert_eq!(pacer.take(8_000).await, Duration::from_secs(1));
    }
}
