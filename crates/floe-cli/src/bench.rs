//! `floe bench …` runs the `floe-bench` binary with the same arguments. The benchmark tool
//! links an s2 client, a counting S3 proxy and a sink server that a production broker has
//! no use for, so it stays a separate binary and `floe` only finds and starts it.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

const BENCH_BINARY: &str = "floe-bench";

/// Starts `floe-bench` with `args`, waits for it and passes its exit status on. `server`
/// (from `-s` or `FLOE_SERVER`) is the broker it measures unless `--url` names another.
pub fn run(server: &str, args: Vec<OsString>) -> anyhow::Result<ExitCode> {
    let binary = locate();
    let status = std::process::Command::new(&binary)
        .args(&args)
        .env("FLOE_SERVER", server)
        .status()
        .with_context(|| {
            format!(
                "starting {}: build it with `cargo build --release -p floe-bench`, or put \
                 floe-bench beside floe or on PATH (FLOE_BENCH_BIN names it exactly)",
                binary.display()
            )
        })?;
    Ok(match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        None => ExitCode::FAILURE,
    })
}

/// `$FLOE_BENCH_BIN`, else `floe-bench` beside this executable, else the one on `PATH`.
fn locate() -> PathBuf {
    if let Some(path) = std::env::var_os("FLOE_BENCH_BIN") {
        return PathBuf::from(path);
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(BENCH_BINARY)))
        .filter(|beside| beside.is_file())
        .unwrap_or_else(|| PathBuf::from(BENCH_BINARY))
}
