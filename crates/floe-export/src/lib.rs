//! Parquet export: turns a partition's records into Hive-laid-out Parquet files that
//! analytics engines (DuckDB, Spark) read as they are.
//!
//! This crate owns the file format (columns, JSON typing, writer properties, footer
//! metadata) and the key a file is stored under. It does no I/O: the caller decides which
//! records go into a file, where the bytes are put and which JSON schema is kept between
//! files.

mod columns;
mod json;
mod layout;
mod writer;

pub use layout::{file_key, hour_of};
pub use writer::{ExportError, FileSpec, JsonColumns, WrittenFile, write_file};

#[cfg(test)]
mod tests;
