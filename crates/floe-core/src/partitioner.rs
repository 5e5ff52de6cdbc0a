//! Kafka's default key partitioner, bit for bit, so a keyed record lands in the partition a
//! Kafka Java client would choose for it.

/// Kafka's `Utils.murmur2`: 32-bit MurmurHash2 with seed `0x9747b28c`.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;

    let length = data.len();
    // Java computes `seed ^ length` on ints; lengths beyond i32 cannot reach here.
    let mut h: u32 = SEED ^ (length as u32);
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition Kafka's `BuiltInPartitioner.partitionForKey` picks:
/// `toPositive(murmur2(key)) % partitions`.
pub fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    debug_assert!(partitions > 0, "a topic has at least one partition");
    let positive = (murmur2(key) & 0x7fff_ffff) as u32;
    positive % partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vectors of Kafka's own `UtilsTest.testMurmur2`.
    #[test]
    fn matches_kafka_murmur2_vectors() {
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ];
        for (input, expected) in cases {
            assert_eq!(
                murmur2(input),
                expected,
                "{}",
                String::from_utf8_lossy(input)
            );
        }
    }

    /// Placements computed by Kafka's own Java code, not by this module: kafka-clients
    /// 4.1.1's `Utils.murmur2`, `Utils.toPositive` and `BuiltInPartitioner.partitionForKey`,
    /// as printed by `scripts/kafka-test-vectors.sh`. Most hashes are negative, so the
    /// `& 0x7fff_ffff` is what places them; every key lands off partition 0 somewhere.
    const KAFKA_PLACEMENTS: [(&str, i32, [u32; 4]); 10] = [
        // (key, murmur2, partition for 3, 7, 12 and 100 partitions)
        ("21", -973_932_308, [0, 3, 0, 40]),
        ("key-0", 29_210_041, [1, 0, 1, 41]),
        ("key-2", 852_269_702, [2, 4, 2, 2]),
        ("key-3", -1_839_136_101, [2, 4, 11, 47]),
        ("key-6", -758_453_868, [2, 5, 8, 80]),
        ("key-8", -1_340_033_413, [1, 4, 7, 35]),
        ("kafka", -798_503_068, [1, 3, 4, 80]),
        ("b", -1_853_091_852, [2, 6, 8, 96]),
        ("c", -1_877_468_854, [1, 0, 10, 94]),
        ("user-42", 1_459_644_460, [1, 1, 4, 60]),
    ];

    #[test]
    fn places_keys_where_kafka_does() {
        for (key, hash, partitions) in KAFKA_PLACEMENTS {
            assert_eq!(murmur2(key.as_bytes()), hash, "murmur2({key:?})");
            for (count, expected) in [3, 7, 12, 100].into_iter().zip(partitions) {
                assert_eq!(
                    partition_for_key(key.as_bytes(), count),
                    expected,
                    "key {key:?} over {count} partitions"
                );
            }
        }
    }

    #[test]
    fn partition_is_positive_hash_modulo_count() {
        // toPositive(-973932308) = -973932308 & 0x7fffffff = 1173551340.
        assert_eq!(partition_for_key(b"21", 3), 1_173_551_340 % 3);
        assert_eq!(partition_for_key(b"abc", 7), 479_470_107 % 7);
        for partitions in 1..20 {
            assert!(partition_for_key(b"any", partitions) < partitions);
        }
    }
}
