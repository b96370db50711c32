//! A memory budget for decoded images: each decode reserves what it will hold (the file's
//! bytes, the decoder's buffer and the RGB copy) before it starts, and the reservation
//! travels with the image until the detect stage is done with it. However many threads
//! decode, the images in flight never hold more than the budget, save that one image
//! larger than the whole budget is let through alone.

use std::sync::{Arc, Condvar, Mutex};

/// Bytes available to decoded images in flight.
#[derive(Debug)]
pub struct MemoryBudget {
    total: u64,
    free: Mutex<u64>,
    freed: Condvar,
}

/// A reservation; returned to the budget when dropped.
#[derive(Debug)]
pub struct Permit {
    budget: Arc<MemoryBudget>,
    bytes: u64,
}

impl MemoryBudget {
    pub fn new(total: u64) -> Arc<MemoryBudget> {
        Arc::new(MemoryBudget {
            total,
            free: Mutex::new(total),
            freed: Condvar::new(),
        })
    }

    /// Waits until `bytes` (at most the whole budget) are free and reserves them.
    pub fn reserve(self: &Arc<Self>, bytes: u64) -> Permit {
        let bytes = bytes.min(self.total);
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        while *free < bytes {
            free = self.freed.wait(free).unwrap_or_else(|e| e.into_inner());
        }
        *free -= bytes;
        Permit {
            budget: self.clone(),
            bytes,
        }
    }

    /// Reserves `bytes` (at most the whole budget) if they are free now.
    pub fn try_reserve(self: &Arc<Self>, bytes: u64) -> Option<Permit> {
        let bytes = bytes.min(self.total);
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        if *free < bytes {
            return None;
        }
        *free -= bytes;
        Some(Permit {
            budget: self.clone(),
            bytes,
        })
    }

    /// Bytes reserved now.
    pub fn in_use(&self) -> u64 {
        self.total - *self.free.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut free = self.budget.free.lock().unwrap_or_else(|e| e.into_inner());
        *free += self.bytes;
        self.budget.freed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_never_exceed_the_budget() {
        let budget = MemoryBudget::new(100);
        let peak = Arc::new(std::sync::atomic::AtomicU64::new(0));
        std::thread::scope(|s| {
            for i in 0..8u64 {
                let (budget, peak) = (budget.clone(), peak.clone());
                s.spawn(move || {
                    for _ in 0..50 {
                        let _p = budget.reserve(30 + i);
                        peak.fetch_max(budget.in_use(), std::sync::atomic::Ordering::SeqCst);
                        std::thread::yield_now();
                    }
                });
            }
        });
        assert!(peak.load(std::sync::atomic::Ordering::SeqCst) <= 100);
        assert_eq!(budget.in_use(), 0);
        // Larger than the whole budget: let through alone.
        let p = budget.reserve(1_000);
        assert_eq!(budget.in_use(), 100);
        drop(p);
    }
}
