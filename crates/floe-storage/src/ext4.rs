//! Whether the local store's directory is on an ext4 file system without a journal.
//!
//! There, choosing an inode for a new file walks past every free inode whose deletion is
//! under a minute old (six if its inode-table block is still dirty), one buffer lookup
//! each. The local store creates a file per segment, and retention and compaction delete
//! them, so after a burst of deletions every new segment pays that walk: on the
//! benchmark machine it took 9–16 % of floe's CPU (docs/benchmarks.md, "The inode scan").
//! With a journal, as ext4 is usually made, the kernel does not look; XFS never did. So
//! floe says so once, at startup, with what to do about it.

use std::path::{Path, PathBuf};

/// The mount point of `dir`'s file system if it is ext4 without a journal. Reads
/// `/proc/self/mountinfo` and the file system's `/sys/fs/ext4/<device>/journal_task`,
/// which reads `<none>` when there is no journal; anything it cannot read is "no".
pub(crate) fn journal_less_ext4(dir: &Path) -> Option<PathBuf> {
    let dir = std::fs::canonicalize(dir).ok()?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mount = mount_of(&mountinfo, &dir)?;
    if mount.fs_type != "ext4" {
        return None;
    }
    // The sysfs entry is named after the device (/dev/mapper/x resolves to /dev/dm-N).
    let device = std::fs::canonicalize(&mount.source).unwrap_or_else(|_| mount.source.into());
    let name = device.file_name()?.to_str()?;
    let task = std::fs::read_to_string(format!("/sys/fs/ext4/{name}/journal_task")).ok()?;
    (task.trim() == "<none>").then_some(mount.point)
}

/// A line of `/proc/self/mountinfo`: where, what kind, from what.
#[derive(Debug, PartialEq, Eq)]
struct Mount {
    point: PathBuf,
    fs_type: String,
    source: String,
}

/// The mount that holds `path` (absolute, canonical): the longest mount point that is a
/// prefix of it, the later line where two are the same (a mount over another).
fn mount_of(mountinfo: &str, path: &Path) -> Option<Mount> {
    let mut best: Option<Mount> = None;
    for line in mountinfo.lines() {
        let Some(mount) = parse_line(line) else {
            continue;
        };
        let longer = best
            .as_ref()
            .is_none_or(|best| mount.point.as_os_str().len() >= best.point.as_os_str().len());
        if path.starts_with(&mount.point) && longer {
            best = Some(mount);
        }
    }
    best
}

/// `ID PARENT MAJ:MIN ROOT POINT OPTIONS [OPTIONAL…] - TYPE SOURCE SUPER_OPTIONS`; the
/// point escapes space, tab, newline and backslash as octal (`\040`).
fn parse_line(line: &str) -> Option<Mount> {
    let (before, after) = line.split_once(" - ")?;
    let point = before.split(' ').nth(4)?;
    let mut after = after.split(' ');
    let fs_type = after.next()?.to_owned();
    let source = after.next()?.to_owned();
    Some(Mount {
        point: PathBuf::from(unescape(point)),
        fs_type,
        source,
    })
}

fn unescape(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut rest = field;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        let code = rest
            .get(at + 1..at + 4)
            .and_then(|digits| u8::from_str_radix(digits, 8).ok());
        match code {
            Some(byte) => {
                out.push(char::from(byte));
                rest = &rest[at + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[at + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard
25 24 0:23 / /dev/shm rw,relatime - tmpfs tmpfs rw
40 27 254:16 / /var/lib/floe rw,relatime shared:7 - xfs /dev/vdb rw
41 27 254:32 / /mnt/my\\040data rw,relatime - ext4 /dev/mapper/data rw
42 40 0:44 / /var/lib/floe rw - tmpfs tmpfs rw
";

    fn mount(point: &str, fs_type: &str, source: &str) -> Option<Mount> {
        Some(Mount {
            point: point.into(),
            fs_type: fs_type.into(),
            source: source.into(),
        })
    }

    #[test]
    fn the_longest_mount_point_holding_the_path_is_its_mount() {
        let of = |path: &str| mount_of(MOUNTINFO, Path::new(path));
        assert_eq!(of("/home/floe/data"), mount("/", "ext4", "/dev/vda"));
        assert_eq!(of("/dev/shm/x"), mount("/dev/shm", "tmpfs", "tmpfs"));
        // Optional fields before the separator; a later mount over the same point wins.
        assert_eq!(
            of("/var/lib/floe/objects"),
            mount("/var/lib/floe", "tmpfs", "tmpfs")
        );
        // A point with an escaped space.
        assert_eq!(
            of("/mnt/my data/objects"),
            mount("/mnt/my data", "ext4", "/dev/mapper/data")
        );
        // A prefix of a component is not a parent.
        assert_eq!(of("/mnt/my datab"), mount("/", "ext4", "/dev/vda"));
        assert_eq!(mount_of("garbage\n\n", Path::new("/x")), None);
    }

    #[test]
    fn escapes_are_octal_and_a_lone_backslash_stays() {
        assert_eq!(unescape(r"a\040b\011c"), "a b\tc");
        assert_eq!(unescape(r"a\b\\"), r"a\b\\");
    }

    #[test]
    fn a_missing_directory_is_no() {
        assert_eq!(journal_less_ext4(Path::new("/nonexistent/floe")), None);
    }
}
