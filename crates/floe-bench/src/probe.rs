//! What the benchmark reads from outside the system under test: server CPU time from
//! `/proc`, and object-store request counts from the counting S3 proxy; and one thing it
//! reads of itself, its own runtime's scheduling delay.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use parking_lot::Mutex;

use serde::{Deserialize, Serialize};

/// CPU seconds (user + system) the given processes have used so far. Processes that are
/// gone count as zero, so a probe never fails a run.
pub fn cpu_seconds(pids: &[u32]) -> f64 {
    let ticks = clock_ticks();
    pids.iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .filter_map(|stat| parse_cpu_ticks(&stat))
        .sum::<u64>() as f64
        / ticks
}

/// utime + stime from a `/proc/<pid>/stat` line. The command name may hold spaces and
/// parentheses, so fields are counted from the last `)`.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, utime 14, stime 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse::<f64>().ok())
        .filter(|ticks| *ticks > 0.0)
        .unwrap_or(100.0)
}

/// Requests the counting proxy has forwarded, by kind.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct StoreCounts {
    pub put: u64,
    pub get: u64,
    pub list: u64,
    pub head: u64,
    pub delete: u64,
    pub post: u64,
    pub put_bytes: u64,
    pub get_bytes: u64,
}

impl StoreCounts {
    pub fn since(self, earlier: StoreCounts) -> StoreCounts {
        StoreCounts {
            put: self.put - earlier.put,
            get: self.get - earlier.get,
            list: self.list - earlier.list,
            head: self.head - earlier.head,
            delete: self.delete - earlier.delete,
            post: self.post - earlier.post,
            put_bytes: self.put_bytes - earlier.put_bytes,
            get_bytes: self.get_bytes - earlier.get_bytes,
        }
    }
}

pub async fn store_counts(url: &str) -> anyhow::Result<StoreCounts> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let counts = client
        .get(format!("{}/_counts", url.trim_end_matches('/')))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(counts)
}

/// The load generator's own scheduling delay: how late a task that was ready to run
/// started on this process's runtime, sampled every 10 ms by a thread of its own, in µs.
/// The generator shares the machine with the server, and a producer that starts late, or
/// reads its answer late, adds that time to the latency it reports: a stall here is the
/// client's, not the server's. floe's `floe_runtime_schedule_delay_seconds` is the server's
/// side of the same measure.
#[derive(Debug)]
pub struct SchedulingDelay {
    delays: Arc<Mutex<Histogram<u64>>>,
    stop: Arc<AtomicBool>,
}

impl SchedulingDelay {
    const EVERY: Duration = Duration::from_millis(10);

    /// Starts sampling `runtime`; samples count from `from` on.
    pub fn start(runtime: tokio::runtime::Handle, from: Instant) -> Self {
        let delays = Arc::new(Mutex::new(crate::report::new_histogram()));
        let stop = Arc::new(AtomicBool::new(false));
        let (sampled, stopped) = (Arc::clone(&delays), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                std::thread::sleep(Self::EVERY);
                let sent = Instant::now();
                if sent < from {
                    continue;
                }
                let sampled = Arc::clone(&sampled);
                // Not awaited: during a stall the next samples queue behind this one, and
                // each records its own wait, as a request would.
                drop(runtime.spawn(async move {
                    let waited = sent.elapsed().as_micros() as u64;
                    sampled.lock().saturating_record(waited.max(1));
                }));
            }
        });
        Self { delays, stop }
    }

    /// Stops sampling and returns what was sampled (samples still queued behind a stall
    /// at this moment are not in it).
    pub fn finish(self) -> Histogram<u64> {
        self.stop.store(true, Ordering::Relaxed);
        self.delays.lock().clone()
    }
}

impl Drop for SchedulingDelay {
    /// A run that fails part-way stops the sampling thread too.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_skip_names_with_spaces_and_parentheses() {
        let stat =
            "4242 (tokio (rt) x) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 75 0 0 20 0 9 0 100 0 0";
        assert_eq!(parse_cpu_ticks(stat), Some(325));
        assert_eq!(parse_cpu_ticks("garbage"), None);
    }

    #[test]
    fn a_blocked_runtime_shows_in_the_scheduling_delay() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let probe = SchedulingDelay::start(runtime.handle().clone(), Instant::now());
        runtime.block_on(async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            // The only worker is busy for 200 ms.
            tokio::spawn(async { std::thread::sleep(Duration::from_millis(200)) })
                .await
                .expect("blocker");
            tokio::time::sleep(Duration::from_millis(50)).await;
        });
        let delays = probe.finish();
        assert!(delays.len() >= 5, "{} samples", delays.len());
        // A sample sent as the stretch began waited for most of it.
        assert!(delays.max() >= 150_000, "max {} µs", delays.max());
    }

    #[test]
    fn this_process_has_used_some_cpu() {
        let started = std::time::Instant::now();
        let mut spin = 0u64;
        while cpu_seconds(&[std::process::id()]) == 0.0 {
            spin = (0..100_000u64).fold(spin, |a, b| a.wrapping_add(b * b));
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "no CPU time seen"
            );
        }
        assert_eq!(cpu_seconds(&[u32::MAX]), 0.0);
    }
}
