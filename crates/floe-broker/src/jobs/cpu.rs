//! One thread for background jobs' CPU work (compaction's rewrite, the export's Parquet
//! encoding), at the lowest CPU priority, so whenever the produce and fetch paths' threads
//! want a core they get it first.
//!
//! A rewrite of one compaction run (up to `jobs.compaction_target_bytes`) is tens to
//! hundreds of milliseconds of one core. On tokio's blocking pool it competed with the
//! runtime's workers as an equal. On the benchmark VM near its produce limit (W2's shape
//! at 400,000 records/s for 30 s, compaction running from the 20th second), moving it here
//! lowered ack p99 from 468–644 ms to 159–212 ms in two alternated pairs
//! (docs/benchmarks.md); those pairs ran the build without it first after each deletion,
//! which later proved to slow a run, so the ratio may be generous. Niceness is per thread on Linux, and an unprivileged process
//! cannot raise a thread's priority back, so the work goes to a thread of its own rather
//! than lowering a pool thread that later runs produce uploads.

use std::panic::AssertUnwindSafe;
use std::sync::OnceLock;
use std::sync::mpsc;

type Work = Box<dyn FnOnce() + Send>;

/// The process's background thread, started on first use.
fn sender() -> &'static Option<mpsc::Sender<Work>> {
    static SENDER: OnceLock<Option<mpsc::Sender<Work>>> = OnceLock::new();
    SENDER.get_or_init(|| {
        let (sender, receiver) = mpsc::channel::<Work>();
        let started = std::thread::Builder::new()
            .name("floe-background".into())
            .spawn(move || {
                lower_priority();
                while let Ok(work) = receiver.recv() {
                    work();
                }
            });
        match started {
            Ok(_) => Some(sender),
            Err(error) => {
                tracing::warn!(%error, "could not start the background thread; background CPU work runs on the blocking pool");
                None
            }
        }
    })
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn lower_priority() {
    // On Linux, PRIO_PROCESS with no pid sets the calling thread's nice value.
    if let Err(error) = rustix::process::setpriority_process(None, 19) {
        tracing::debug!(%error, "could not lower the background thread's priority");
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn lower_priority() {}

/// Runs `work` on the background thread and waits for its answer; `Err` carries a panic's
/// message. The wait itself is a blocking-pool task that sleeps until the answer comes, so
/// tokio counts the work as in progress (its paused test clock does not jump ahead of it).
pub(crate) async fn run<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    let waited = tokio::task::spawn_blocking(move || {
        let Some(sender) = sender() else {
            return Ok(work());
        };
        let (answer, answered) = mpsc::sync_channel(1);
        let job: Work = Box::new(move || {
            let outcome = std::panic::catch_unwind(AssertUnwindSafe(work)).map_err(|panic| {
                panic
                    .downcast_ref::<&str>()
                    .map(|message| (*message).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "panicked".into())
            });
            let _ = answer.send(outcome);
        });
        sender
            .send(job)
            .map_err(|_| "the background thread is gone".to_owned())?;
        answered
            .recv()
            .map_err(|_| "the background thread dropped the work".to_owned())?
    })
    .await;
    waited.map_err(|error| error.to_string())?
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn work_runs_on_the_low_priority_thread_and_a_panic_is_an_error() {
        let (name, nice) = super::run(|| {
            let name = std::thread::current().name().map(str::to_owned);
            // Only Linux lowers the thread's priority (see `lower_priority`).
            #[cfg(any(target_os = "linux", target_os = "android"))]
            let nice = rustix::process::getpriority_process(None).ok();
            #[cfg(not(any(target_os = "linux", target_os = "android")))]
            let nice: Option<i32> = None;
            (name, nice)
        })
        .await
        .expect("ran");
        assert_eq!(name.as_deref(), Some("floe-background"));
        #[cfg(any(target_os = "linux", target_os = "android"))]
        assert_eq!(nice, Some(19));
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        let _ = nice;
        let panicked = super::run(|| -> u8 { panic!("boom") }).await;
        assert_eq!(panicked, Err("boom".to_owned()));
        // The thread survives a panic.
        assert_eq!(super::run(|| 7).await, Ok(7));
    }
}
