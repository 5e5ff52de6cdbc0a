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
}
