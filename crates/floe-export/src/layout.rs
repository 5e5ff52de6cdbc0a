//! The Hive layout of exported files: which object key a file is stored under.

const MILLIS_PER_HOUR: i64 = 3_600_000;
const HOURS_PER_DAY: i64 = 24;

/// Returns the UTC hour a timestamp falls in, counted in hours since the Unix epoch. Files
/// never span two hours.
pub fn hour_of(timestamp_ms: i64) -> i64 {
    timestamp_ms.div_euclid(MILLIS_PER_HOUR)
}

/// Returns the Hive layout key of one file, relative to the export root:
/// `topic=<topic>/date=YYYY-MM-DD/hour=HH/partition=<p>/<first>-<last>.parquet`, with the
/// date and hour of `timestamp_ms` in UTC and both offsets zero-padded to 20 digits, so
/// that keys sort by offset.
pub fn file_key(
    topic: &str,
    partition: u32,
    timestamp_ms: i64,
    first_offset: u64,
    last_offset: u64,
) -> String {
    let hours_since_epoch = hour_of(timestamp_ms);
    let days_since_epoch = hours_since_epoch.div_euclid(HOURS_PER_DAY);
    let hour_of_day = hours_since_epoch.rem_euclid(HOURS_PER_DAY);
    let (year, month, day) = civil_from_days(days_since_epoch);
    format!(
        "topic={topic}/date={year:04}-{month:02}-{day:02}/hour={hour_of_day:02}/\
         partition={partition}/{first_offset:020}-{last_offset:020}.parquet"
    )
}

/// Converts days since 1970-01-01 to a proleptic Gregorian (year, month, day), after
/// Howard Hinnant's `civil_from_days`. Every day an `i64` of milliseconds can name is in
/// range: the intermediate values stay below 2^40.
fn civil_from_days(days_since_epoch: i64) -> (i64, i64, i64) {
    let shifted = days_since_epoch + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_carry_utc_date_hour_and_padded_offsets() {
        assert_eq!(
            file_key("orders", 3, 0, 0, 41),
            "topic=orders/date=1970-01-01/hour=00/partition=3/\
             00000000000000000000-00000000000000000041.parquet"
        );
        assert_eq!(
            file_key("orders", 0, 1_700_000_000_000, 7, u64::MAX),
            "topic=orders/date=2023-11-14/hour=22/partition=0/\
             00000000000000000007-18446744073709551615.parquet"
        );
        assert!(file_key("t", 0, 951_782_400_000, 0, 0).contains("date=2000-02-29/hour=00"));
        assert!(file_key("t", 0, 4_107_542_399_999, 0, 0).contains("date=2100-02-28/hour=23"));
    }

    #[test]
    fn negative_and_extreme_timestamps_do_not_panic() {
        assert!(file_key("t", 0, -1, 0, 0).contains("date=1969-12-31/hour=23"));
        assert_eq!(hour_of(-1), -1);
        assert_eq!(hour_of(-3_600_000), -1);
        assert_eq!(hour_of(-3_600_001), -2);
        for timestamp_ms in [i64::MIN, i64::MIN + 1, i64::MAX] {
            let key = file_key("t", 0, timestamp_ms, 0, 0);
            assert!(key.contains("/hour="), "{key}");
        }
    }

    #[test]
    fn hours_split_at_exact_boundaries() {
        assert_eq!(hour_of(0), 0);
        assert_eq!(hour_of(3_599_999), 0);
        assert_eq!(hour_of(3_600_000), 1);
        assert_eq!(hour_of(1_700_000_000_000), 472_222);
    }

    #[test]
    fn civil_dates_match_known_days() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(19_675), (2023, 11, 14));
        assert_eq!(civil_from_days(-719_468), (0, 3, 1));
    }
}
