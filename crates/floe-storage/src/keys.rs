//! Every object key floe writes is built here and nowhere else.
//!
//! ```text
//! <prefix>/segments/<ULID>.seg     segment objects (docs/segment-format.md)
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
