//! The one way the node takes a `std::sync::Mutex`.
//!
//! Every mutex here guards a few fields changed in short critical sections that leave them
//! whole before anything could panic, so a lock poisoned by a panicking thread is still
//! consistent: it is taken as it is rather than spreading the panic to every later request.

use std::sync::{Mutex, MutexGuard, PoisonError};

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
