//! Record values of the workloads: `record_size` bytes that open with the intended send
//! time and a sequence number (the end-to-end latency and the read-back checks use them),
//! followed by bytes drawn from a pool of random data.

use bytes::{BufMut, Bytes, BytesMut};

/// Bytes at the head of every binary value: the intended send time (µs since the Unix
/// epoch) and a sequence number, little-endian.
const STAMP: usize = 16;

/// The `body` bytes of `pool` that value `sequence` uses: spread over the pool.
fn filler(pool: &[u8], body: usize, sequence: u64) -> &[u8] {
    let at = (sequence as usize * 4099) % (pool.len() - body.min(pool.len()) + 1);
    &pool[at..at + body]
}

/// A binary value: the stamp, then random bytes.
pub fn binary(pool: &[u8], size: usize, stamp: u64, sequence: u64) -> Bytes {
    let mut value = BytesMut::with_capacity(size);
    put_binary(&mut value, pool, size, stamp, sequence);
    value.freeze()
}

/// Writes a binary value of `size` bytes to `out`.
pub fn put_binary(out: &mut BytesMut, pool: &[u8], size: usize, stamp: u64, sequence: u64) {
    out.put_u64_le(stamp);
    out.put_u64_le(sequence);
    out.put_slice(filler(pool, size - STAMP, sequence));
}

/// A value of `size` printable ASCII bytes (JSON needs no escapes for it): the stamp and
/// sequence in decimal, then letters and digits drawn from `pool`.
pub fn text(pool: &[u8], size: usize, stamp: u64, sequence: u64) -> Bytes {
    let mut value = BytesMut::with_capacity(size);
    put_text(&mut value, pool, size, stamp, sequence);
    value.freeze()
}

/// Writes a text value of `size` bytes to `out`.
pub fn put_text(out: &mut BytesMut, pool: &[u8], size: usize, stamp: u64, sequence: u64) {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let head = format!("{stamp}.{sequence}.");
    let head = &head.as_bytes()[..head.len().min(size)];
    out.put_slice(head);
    out.extend(
        filler(pool, size - head.len(), sequence)
            .iter()
            .map(|byte| ALPHABET[usize::from(byte & 63)]),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool() -> Vec<u8> {
        (0..=255u8).cycle().take(1 << 12).collect()
    }

    #[test]
    fn binary_values_open_with_their_stamp() {
        let value = binary(&pool(), 100, 7, 42);
        assert_eq!(value.len(), 100);
        assert_eq!(value[..8], 7u64.to_le_bytes());
        assert_eq!(value[8..16], 42u64.to_le_bytes());
    }

    #[test]
    fn text_values_have_the_record_size_and_need_no_json_escapes() {
        let pool = pool();
        for size in [16, 100, 1024] {
            let value = text(&pool, size, 1_764_000_000_000_000, 42);
            assert_eq!(value.len(), size);
            let head = b"1764000000000000.42.";
            assert_eq!(value[..size.min(head.len())], head[..size.min(head.len())]);
            assert!(
                value
                    .iter()
                    .all(|byte| byte.is_ascii_alphanumeric() || b"._-".contains(byte)),
                "{value:?}"
            );
            let json = serde_json::to_string(&String::from_utf8_lossy(&value)).expect("json");
            assert_eq!(json.len(), size + 2, "no escapes");
        }
    }
}
