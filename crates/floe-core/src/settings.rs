//! What every crate's options struct shares: the error that names a bad setting by its key,
//! and the checks `validate()` methods use. A setting is one field of one options struct;
//! its key in `floe.toml` is `<section>.<field>` and this error carries that key.

use std::fmt::Display;

/// A setting whose value cannot be used, named by its key (`broker.linger`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("setting {key}: {reason}")]
pub struct InvalidSetting {
    pub key: String,
    pub reason: String,
}

impl InvalidSetting {
    pub fn new(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            reason: reason.into(),
        }
    }

    /// The same error with its key placed under `section` (`linger` → `broker.linger`).
    pub fn in_section(self, section: &str) -> Self {
        Self {
            key: format!("{section}.{}", self.key),
            reason: self.reason,
        }
    }
}

/// Refuses `value` below `min`.
pub fn at_least<T: PartialOrd + Display>(
    key: &str,
    value: T,
    min: T,
) -> Result<(), InvalidSetting> {
    if value < min {
        return Err(InvalidSetting::new(
            key,
            format!("{value} is below the minimum {min}"),
        ));
    }
    Ok(())
}

/// Refuses `value` outside `min..=max`.
pub fn within<T: PartialOrd + Display>(
    key: &str,
    value: T,
    min: T,
    max: T,
) -> Result<(), InvalidSetting> {
    if value < min || value > max {
        return Err(InvalidSetting::new(
            key,
            format!("{value} is outside {min}..={max}"),
        ));
    }
    Ok(())
}

/// Refuses a zero duration where time must pass between runs.
pub fn positive(key: &str, value: std::time::Duration) -> Result<(), InvalidSetting> {
    if value.is_zero() {
        return Err(InvalidSetting::new(key, "must be longer than zero"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_key_with_its_section() {
        let error = at_least("fan_in", 1, 2).expect_err("too small");
        let error = error.in_section("jobs");
        assert_eq!(error.key, "jobs.fan_in");
        assert_eq!(
            error.to_string(),
            "setting jobs.fan_in: 1 is below the minimum 2"
        );
        assert!(within("x", 5, 1, 4).is_err());
        assert!(within("x", 4, 1, 4).is_ok());
        assert!(positive("x", std::time::Duration::ZERO).is_err());
    }

    #[test]
    fn at_least_admits_the_minimum_and_above() {
        assert_eq!(at_least("k", 2, 2), Ok(()));
        assert_eq!(at_least("k", 3, 2), Ok(()));
        assert_eq!(
            at_least("k", 1, 2),
            Err(InvalidSetting::new("k", "1 is below the minimum 2"))
        );
        assert!(at_least("k", -5, 2).is_err());
    }

    #[test]
    fn within_admits_both_bounds_and_nothing_outside() {
        for inside in [1, 2, 4] {
            assert_eq!(within("k", inside, 1, 4), Ok(()), "{inside}");
        }
        for outside in [-1, 0, 5, 6, 100] {
            assert_eq!(
                within("k", outside, 1, 4),
                Err(InvalidSetting::new(
                    "k",
                    format!("{outside} is outside 1..=4")
                )),
                "{outside}"
            );
        }
    }

    #[test]
    fn positive_refuses_only_zero() {
        assert_eq!(positive("k", std::time::Duration::from_nanos(1)), Ok(()));
        assert_eq!(
            positive("k", std::time::Duration::ZERO),
            Err(InvalidSetting::new("k", "must be longer than zero"))
        );
    }
}
