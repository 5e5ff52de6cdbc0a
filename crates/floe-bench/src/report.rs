//! What one run of `floe-bench run` measured ([`Report`]), as printed to the terminal and
//! appended as JSON for `scripts/bench_report.py`.

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::probe::StoreCounts;
use crate::target::{Body, System};
use crate::workload::Mode;

/// What one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub label: String,
    pub system: System,
    pub mode: Mode,
    pub partitions: u32,
    pub record_size: u64,
    pub batch: u64,
    pub body: Body,
    /// Producers, or readers for a catch-up run.
    pub producers: usize,
    pub target_rate: Option<f64>,
    /// Length of the measured window.
    pub seconds: f64,
    pub records: u64,
    pub bytes: u64,
    pub records_per_sec: f64,
    pub mb_per_sec: f64,
    pub errors: u64,
    pub ack_ms: Option<Percentiles>,
    pub e2e_ms: Option<Percentiles>,
    /// At a fixed rate: how late each acknowledged request was sent, after its intended
    /// send time. Mostly because its producer was still waiting for the answer before it
    /// (each producer has one request in flight); the timer's ~1 ms rounding, building
    /// the request's values and this process's scheduling add a few ms. Part of `ack_ms`:
    /// the rest is the request's own round trip, `service_ms`.
    pub late_ms: Option<Percentiles>,
    /// From sending a request to its answer.
    pub service_ms: Option<Percentiles>,
    /// How late this process's own ready tasks started over the window (see
    /// [`crate::probe::SchedulingDelay`]): the load generator's share of a latency tail.
    pub client_delay_ms: Option<Percentiles>,
    pub cpu_seconds: Option<f64>,
    pub cpu_seconds_per_gib: Option<f64>,
    pub store: Option<StoreCounts>,
    pub puts_per_gib: Option<f64>,
    pub gets_per_gib: Option<f64>,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub count: u64,
}

impl Percentiles {
    pub(crate) fn of(histogram: &Histogram<u64>) -> Option<Self> {
        (!histogram.is_empty()).then(|| Percentiles {
            p50: histogram.value_at_quantile(0.5) as f64 / 1000.0,
            p99: histogram.value_at_quantile(0.99) as f64 / 1000.0,
            p999: histogram.value_at_quantile(0.999) as f64 / 1000.0,
            max: histogram.max() as f64 / 1000.0,
            count: histogram.len(),
        })
    }
}

pub(crate) fn new_histogram() -> Histogram<u64> {
    // 1 µs to 1 hour at 3 significant figures.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

pub fn print_report(report: &Report) {
    println!(
        "{} on {} ({:?}): {} partitions, {}{}",
        report.label,
        report.system.name(),
        report.mode,
        report.partitions,
        match report.mode {
            Mode::CatchUp => format!("{} readers", report.producers),
            _ => format!(
                "{} B records, {} per {} request, {} producers",
                report.record_size,
                report.batch,
                match report.body {
                    Body::Binary => "binary",
                    Body::Json => "JSON",
                },
                report.producers
            ),
        },
        report
            .target_rate
            .map(|rate| format!(", target {rate:.0} records/s"))
            .unwrap_or_default()
    );
    println!(
        "  {:.0} records/s, {:.1} MB/s over {:.1}s ({} records, {} errors)",
        report.records_per_sec, report.mb_per_sec, report.seconds, report.records, report.errors
    );
    if let Some(ack) = report.ack_ms {
        println!(
            "  ack    p50 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms  max {:.2} ms",
            ack.p50, ack.p99, ack.p999, ack.max
        );
    }
    if let Some(e2e) = report.e2e_ms {
        println!(
            "  e2e    p50 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms  ({} records)",
            e2e.p50, e2e.p99, e2e.p999, e2e.count
        );
    }
    if let (Some(late), Some(service)) = (report.late_ms, report.service_ms) {
        println!(
            "  of it  sent late p50 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms; round trip p50 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms",
            late.p50, late.p99, late.p999, service.p50, service.p99, service.p999
        );
    }
    if let Some(delay) = report.client_delay_ms {
        println!(
            "  client runtime delay  p50 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms  max {:.2} ms",
            delay.p50, delay.p99, delay.p999, delay.max
        );
    }
    if let Some(cpu) = report.cpu_seconds {
        println!(
            "  server CPU {cpu:.1} s ({} s per GiB)",
            report
                .cpu_seconds_per_gib
                .map_or("-".into(), |v| format!("{v:.1}"))
        );
    }
    if let Some(store) = report.store {
        println!(
            "  store  {} PUT, {} GET, {} LIST, {} DELETE ({} PUT/GiB, {} GET/GiB)",
            store.put,
            store.get,
            store.list,
            store.delete,
            report
                .puts_per_gib
                .map_or("-".into(), |v| format!("{v:.0}")),
            report
                .gets_per_gib
                .map_or("-".into(), |v| format!("{v:.0}")),
        );
    }
}
