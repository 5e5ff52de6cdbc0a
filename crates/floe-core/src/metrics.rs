//! What every floe latency histogram shares, whichever crate registers it.

/// Bucket bounds of every latency histogram, in seconds: 0.5 ms to ~16 s, doubling. A
/// local flush lands in the first few, an S3 PUT in the middle, a stall at the top.
pub fn latency_buckets() -> impl Iterator<Item = f64> {
    (0..16).map(|power| 0.0005 * f64::from(1u32 << power))
}

#[cfg(test)]
mod tests {
    #[test]
    fn latency_buckets_double_from_half_a_millisecond() {
        let buckets: Vec<f64> = super::latency_buckets().collect();
        assert_eq!(buckets.len(), 16);
        assert_eq!(buckets[0], 0.0005);
        assert_eq!(buckets[15], 16.384);
    }
}
