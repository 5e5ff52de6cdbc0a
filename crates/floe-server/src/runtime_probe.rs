//! The async runtime's scheduling delay: how long a task that is ready to run waits for a
//! worker. A thread of its own spawns an empty task every 10 ms, and the task records how
//! late it started (it goes through the runtime's shared queue, as tasks woken from other
//! threads do). Tasks of the process wait about as long — produces, fetches, the
//! sequencer's commit loop, the answers from etcd — so a stall here (a long synchronous
//! stretch on a worker, or a machine short of CPU) explains a tail that no stage histogram
//! holds. It is what showed that the sequencer bench's "slow etcd appends" were the
//! process stalling (docs/benchmarks.md).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// How often the probe spawns its task.
const PROBE_EVERY: Duration = Duration::from_millis(10);

/// A delay at least this long is logged, at most once per [`WARN_EVERY`].
const STALL: Duration = Duration::from_millis(100);
const WARN_EVERY: Duration = Duration::from_secs(10);

/// The probe; it stops when dropped.
#[derive(Debug)]
pub struct RuntimeProbe {
    delay: Histogram,
    stop: Arc<AtomicBool>,
}

impl RuntimeProbe {
    /// Starts probing `runtime` from a thread of its own.
    pub fn start(runtime: tokio::runtime::Handle) -> Self {
        let delay = Histogram::new(floe_core::metrics::latency_buckets());
        let stop = Arc::new(AtomicBool::new(false));
        let probe = Self {
            delay: delay.clone(),
            stop: Arc::clone(&stop),
        };
        let started = Instant::now();
        // Milliseconds since `started` of the last warning, plus one (0: never).
        let warned = Arc::new(AtomicU64::new(0));
        let spawned = std::thread::Builder::new()
            .name("floe-runtime-probe".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(PROBE_EVERY);
                    let (delay, warned) = (delay.clone(), Arc::clone(&warned));
                    let sent = Instant::now();
                    // A runtime that has shut down drops the task unrun.
                    drop(runtime.spawn(async move {
                        let waited = sent.elapsed();
                        delay.observe(waited.as_secs_f64());
                        if waited >= STALL {
                            warn_stall(waited, started, &warned);
                        }
                    }));
                }
            });
        if let Err(error) = spawned {
            tracing::warn!(%error, "could not start the runtime probe thread");
        }
        probe
    }

    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "floe_runtime_schedule_delay_seconds",
            "How long a task ready to run waited for a worker of the async runtime, sampled \
             every 10 ms",
            self.delay.clone(),
        );
    }
}

impl Drop for RuntimeProbe {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn warn_stall(waited: Duration, started: Instant, warned: &AtomicU64) {
    let now = started.elapsed().as_millis() as u64 + 1;
    let last = warned.load(Ordering::Relaxed);
    // Probes queued behind one stall run at once on several workers: another may have
    // stored a later time than this one's.
    if last != 0 && now.saturating_sub(last) < WARN_EVERY.as_millis() as u64 {
        return;
    }
    if warned
        .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
        .is_ok()
    {
        tracing::warn!(
            waited_ms = waited.as_millis() as u64,
            "the async runtime stalled: a ready task waited for a worker; every request \
             and commit in this process waited as long"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The probe's histogram in the text exposition format.
    fn exposition(probe: &RuntimeProbe) -> String {
        let mut registry = Registry::default();
        probe.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        text
    }

    fn sample(text: &str, name: &str) -> f64 {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} in {text}"))
    }

    #[test]
    fn a_blocked_worker_shows_as_a_long_delay() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let probe = RuntimeProbe::start(runtime.handle().clone());
        runtime.block_on(async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            // The only worker runs a synchronous stretch of 300 ms.
            tokio::spawn(async { std::thread::sleep(Duration::from_millis(300)) })
                .await
                .expect("blocker");
            tokio::time::sleep(Duration::from_millis(50)).await;
        });
        let text = exposition(&probe);
        let count = sample(&text, "floe_runtime_schedule_delay_seconds_count");
        let quick = sample(
            &text,
            "floe_runtime_schedule_delay_seconds_bucket{le=\"0.128\"}",
        );
        assert!(count >= 5.0, "{text}");
        // Probes sent during the stretch waited up to its end: some over 128 ms.
        assert!(count - quick >= 1.0, "{text}");
        drop(probe);
    }
}
