//! Lock helper.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks, recovering from poisoning: every critical section in this crate
/// leaves the data consistent before anything that could panic, so a panic
/// elsewhere (a failing test) must not cascade into every other host.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
