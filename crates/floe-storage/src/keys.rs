//! Every object key floe writes is built here and nowhere else.
//!
//! ```text
//! <prefix>/segments/<ULID>.seg                       segment objects (docs/segment-format.md)
//! <prefix>/sequencer/snapshots/<INDEX>-<ULID>.json.zst   sequencer state snapshots (cluster mode)
//! <prefix>/_probe/<ULID>                              start-up create-only check, deleted at once
//! ```
//! ULIDs sort by creation time, so a listing walks segments oldest first.

use floe_core::SegmentId;
use object_store::path::Path;

/// The key of a segment object under `prefix`.
pub fn segment(prefix: &Path, id: SegmentId) -> Path {
    prefix.clone().join("segments").join(format!("{id}.seg"))
}

/// The folder under which all segments live (for listings and sweeps).
pub fn segments_folder(prefix: &Path) -> Path {
    prefix.clone().join("segments")
}

/// The folder of sequencer snapshots. Names sort by log index (20 zero-padded digits).
pub fn snapshots_folder(prefix: &Path) -> Path {
    prefix.clone().join("sequencer").join("snapshots")
}

/// The key of a sequencer snapshot taken at `index`; `nonce` keeps a retried or competing
/// upload from colliding with an earlier one.
pub fn snapshot(prefix: &Path, index: u64, nonce: &str) -> Path {
    snapshots_folder(prefix).join(format!("{index:020}-{nonce}.json.zst"))
}

/// The key of a start-up probe object.
pub fn probe(prefix: &Path, nonce: &str) -> Path {
    probe_folder(prefix).join(nonce)
}

/// The folder of start-up probe objects (for the orphan sweep).
pub fn probe_folder(prefix: &Path) -> Path {
    prefix.clone().join("_probe")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_keys_are_under_the_prefix() {
        let id = SegmentId(ulid::Ulid::from_string("01JD0000000000000000000000").expect("ulid"));
        assert_eq!(
            segment(&Path::from("floe/c1"), id).as_ref(),
            "floe/c1/segments/01JD0000000000000000000000.seg"
        );
        assert_eq!(
            segment(&Path::default(), id).as_ref(),
            "segments/01JD0000000000000000000000.seg"
        );
    }
}
