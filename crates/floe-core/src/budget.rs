//! A byte budget that work in flight reserves from before it allocates: request bodies,
//! the records decoded from them, fetch responses. When the budget is spent the caller
//! refuses the work with a retryable error instead of growing the process.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Bytes that may be held by work in flight, across all of it.
#[derive(Debug)]
pub struct MemoryBudget {
    limit: usize,
    used: AtomicUsize,
}

/// The budget cannot give this many bytes now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("memory budget spent: {wanted} bytes wanted, {used} of {limit} in use")]
pub struct BudgetSpent {
    pub wanted: usize,
    pub used: usize,
    pub limit: usize,
}

impl MemoryBudget {
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            limit,
            used: AtomicUsize::new(0),
        })
    }

    /// The configured limit.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes reserved now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Reserves `bytes`, released when the reservation drops.
    pub fn try_reserve(self: &Arc<Self>, bytes: usize) -> Result<Reservation, BudgetSpent> {
        self.take(bytes)?;
        Ok(Reservation {
            budget: Arc::clone(self),
            bytes,
        })
    }

    fn take(&self, bytes: usize) -> Result<(), BudgetSpent> {
        let mut used = self.used.load(Ordering::Relaxed);
        loop {
            let Some(after) = used.checked_add(bytes).filter(|after| *after <= self.limit) else {
                return Err(BudgetSpent {
                    wanted: bytes,
                    used,
                    limit: self.limit,
                });
            };
            match self
                .used
                .compare_exchange_weak(used, after, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return Ok(()),
                Err(actual) => used = actual,
            }
        }
    }
}

/// Bytes held from a [`MemoryBudget`]; given back on drop.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<MemoryBudget>,
    bytes: usize,
}

impl Reservation {
    /// Bytes this reservation holds.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Holds `more` bytes as well, or fails and holds what it held.
    pub fn try_grow(&mut self, more: usize) -> Result<(), BudgetSpent> {
        self.budget.take(more)?;
        self.bytes += more;
        Ok(())
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_count_against_the_limit_until_dropped() {
        let budget = MemoryBudget::new(100);
        let mut first = budget.try_reserve(60).expect("fits");
        assert_eq!(budget.try_reserve(41).expect_err("over").used, 60);
        first.try_grow(40).expect("exactly full");
        assert!(first.try_grow(1).is_err());
        assert_eq!(first.bytes(), 100);
        drop(first);
        assert_eq!(budget.used(), 0);
        let _second = budget.try_reserve(100).expect("free again");
        assert!(budget.try_reserve(usize::MAX).is_err(), "no overflow");
    }

    #[test]
    fn limit_and_used_report_the_budget_as_reservations_come_and_go() {
        let budget = MemoryBudget::new(1000);
        assert_eq!(budget.limit(), 1000);
        assert_eq!(budget.used(), 0);
        let mut first = budget.try_reserve(300).expect("fits");
        let second = budget.try_reserve(200).expect("fits");
        assert_eq!(budget.used(), 500);
        first.try_grow(50).expect("fits");
        assert_eq!(first.bytes(), 350);
        assert_eq!(budget.used(), 550);
        let spent = budget.try_reserve(451).expect_err("over");
        assert_eq!(
            spent,
            BudgetSpent {
                wanted: 451,
                used: 550,
                limit: 1000
            }
        );
        drop(second);
        assert_eq!(budget.used(), 350);
        assert_eq!(budget.limit(), 1000, "the limit does not move");
    }
}
