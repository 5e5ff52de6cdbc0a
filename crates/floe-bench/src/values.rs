//! Record values of the workloads: `record_size` bytes that open with the intended send
//! time and a sequence number (the end-to-end latency and the read-back checks use them),
//! followed by bytes drawn from a pool of random data.

use bytes::{BufMut, Bytes, BytesMut};

use crate::target::Body;

/// Bytes at the head of every binary value: the intended send time (µs since the Unix
/// epoch) and a sequence number, little-endian.
const STAMP: usize = 16;

/// The `body` bytes of `pool` that value `sequence` uses: spread over the pool.
fn filler(pool: &[u8], body: usize, sequence: u64) -> &[u8] {
    let at = (sequence as usize * 4099) % (pool.len() - body.min(pool.len()) + 1);
    &pool[at..at + body]
}

/// One request's `count` values of `size` bytes, numbered on from `sequence`: written into
/// one buffer and handed out as slices of it, so the load generator makes one allocation
/// per request rather than one per record.
pub fn request(
    pool: &[u8],
    body: Body,
    size: usize,
    count: usize,
    stamp: u64,
    sequence: &mut u64,
) -> Vec<Bytes> {
    let mut all = BytesMut::with_capacity(size * count);
    for _ in 0..count {
        *sequence += 1;
        match body {
            Body::Binary => put_binary(&mut all, pool, size, stamp, *sequence),
            Body::Json => put_text(&mut all, pool, size, stamp, *sequence),
        }
    }
    let all = all.freeze();
    (0..count)
        .map(|index| all.slice(index * size..(index + 1) * size))
        .collect()
}

/// A binary value: the stamp, then random bytes.
fn put_binary(out: &mut BytesMut, pool: &[u8], size: usize, stamp: u64, sequence: u64) {
    out.put_u64_le(stamp);
    out.put_u64_le(sequence);
    out.put_slice(filler(pool, size - STAMP, sequence));
}

/// A value of `size` printable ASCII bytes (JSON needs no escapes for it): the stamp and
/// sequence in decimal, then letters and digits drawn from `pool`.
fn put_text(out: &mut BytesMut, pool: &[u8], size: usize, stamp: u64, sequence: u64) {
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
    fn binary_values_open_with_their_stamp_and_number_on() {
        let mut sequence = 41;
        let values = request(&pool(), Body::Binary, 100, 3, 7, &mut sequence);
        assert_eq!(sequence, 44);
        for (value, number) in values.iter().zip(42u64..) {
            assert_eq!(value.len(), 100);
            assert_eq!(value[..8], 7u64.to_le_bytes());
            assert_eq!(value[8..16], number.to_le_bytes());
        }
    }

    #[test]
    fn text_values_have_the_record_size_and_need_no_json_escapes() {
        let pool = pool();
        for size in [16, 100, 1024] {
            let mut sequence = 41;
            let values = request(
                &pool,
                Body::Json,
                size,
                2,
                1_764_000_000_000_000,
                &mut sequence,
            );
            assert_eq!(values.len(), 2);
            let value = &values[0];
            assert_eq!(value.len(), size);
            let head = b"1764000000000000.42.";
            assert_eq!(value[..size.min(head.len())], head[..size.min(head.len())]);
            assert!(
                value
                    .iter()
                    .all(|byte| byte.is_ascii_alphanumeric() || b"._-".contains(byte)),
                "{value:?}"
            );
            let json = serde_json::to_string(&String::from_utf8_lossy(value)).expect("json");
            assert_eq!(json.len(), size + 2, "no escapes");
        }
    }
}
