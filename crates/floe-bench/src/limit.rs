//! The machine's own limits, measured in the same run as the systems: a loopback HTTP
//! sink (driven by the ordinary producers, `--system sink`) and fsync'd file writes of
//! object-sized files on the local disk.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::Router;
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use clap::Args;
use serde::Serialize;

#[derive(Debug, Clone, Args)]
pub struct SinkArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: String,
}

/// Serves `POST /sink`, which reads the whole body and answers `{}`, until killed. Prints
/// the bound address on stdout.
pub async fn sink(args: SinkArgs) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(&args.listen).await?;
    println!("{}", listener.local_addr()?);
    sink_on(listener).await
}

/// Serves the sink on `listener` until the future is dropped.
pub async fn sink_on(listener: tokio::net::TcpListener) -> anyhow::Result<()> {
    let app = Router::new()
        .route(
            "/sink",
            post(|body: Bytes| async move {
                drop(body);
                "{}"
            }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .layer(DefaultBodyLimit::disable());
    axum::serve(listener, app).await?;
    Ok(())
}

#[derive(Debug, Clone, Args)]
pub struct DiskArgs {
    /// Directory to write in (on the disk the systems under test use).
    #[arg(long)]
    pub dir: PathBuf,
    /// Size of each file, like one object.
    #[arg(long, default_value_t = 4 << 20)]
    pub file_size: usize,
    /// Concurrent writers.
    #[arg(long, default_value_t = 4)]
    pub writers: usize,
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Append the result as one JSON line to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DiskReport {
    pub file_size: usize,
    pub writers: usize,
    pub seconds: f64,
    pub files: u64,
    pub mb_per_sec: f64,
}

/// Writes files the way both systems' local stores do (write, `fsync` the file, rename,
/// `fsync` the directory) for `duration`, and reports MB/s. Each writer reuses a small set
/// of names so the disk use stays bounded.
pub async fn disk(args: DiskArgs) -> anyhow::Result<DiskReport> {
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    let files = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + args.duration;
    let mut writers = Vec::new();
    for writer in 0..args.writers.max(1) {
        let (dir, files, size) = (args.dir.clone(), files.clone(), args.file_size);
        writers.push(tokio::task::spawn_blocking(
            move || -> anyhow::Result<()> {
                let data: Vec<u8> = (0..size).map(|i| (i * 31 + writer) as u8).collect();
                let mut turn = 0u64;
                while Instant::now() < deadline {
                    let staged = dir.join(format!("w{writer}-staged"));
                    let name = dir.join(format!("w{writer}-{}", turn % 16));
                    let mut file = std::fs::File::create(&staged)?;
                    file.write_all(&data)?;
                    file.sync_all()?;
                    std::fs::rename(&staged, &name)?;
                    std::fs::File::open(&dir)?.sync_all()?;
                    files.fetch_add(1, Ordering::Relaxed);
                    turn += 1;
                }
                Ok(())
            },
        ));
    }
    for writer in writers {
        writer.await??;
    }
    let seconds = started.elapsed().as_secs_f64();
    let files = files.load(Ordering::Relaxed);
    for entry in std::fs::read_dir(&args.dir)?.flatten() {
        if entry.file_name().to_string_lossy().starts_with('w') {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    let report = DiskReport {
        file_size: args.file_size,
        writers: args.writers,
        seconds,
        files,
        mb_per_sec: (files * args.file_size as u64) as f64 / seconds / 1e6,
    };
    println!(
        "disk: {} files of {} B with {} writers in {:.1}s: {:.1} MB/s (write, fsync, rename, fsync dir)",
        report.files, report.file_size, report.writers, report.seconds, report.mb_per_sec
    );
    if let Some(path) = &args.json {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        writeln!(
            file,
            "{}",
            serde_json::json!({ "label": "disk", "disk": report })
        )?;
    }
    Ok(report)
}
