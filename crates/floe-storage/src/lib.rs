//! Where segment bytes live: the object store chosen by URL, the one module that names every
//! object, create-only segment uploads and ranged batch reads, and the sequencer's state
//! snapshots as objects.
//!
//! This crate moves bytes and checks their integrity; it knows nothing of offsets or topics
//! beyond what a key needs, and never decides what is committed (the sequencer does).

mod cache;
mod ext4;
pub mod keys;
mod local;
mod s3;
mod segments;
mod snapshots;
mod store;

pub use cache::{CacheOptions, CacheStats, ReadCache, ReadCause};
pub use s3::{BucketInit, init_bucket};
pub use segments::{SegmentStore, StorageError};
pub use snapshots::SnapshotObjects;
pub use store::{S3Options, StoreOptions, StoreUrl, check_store, open_store, open_store_with};
