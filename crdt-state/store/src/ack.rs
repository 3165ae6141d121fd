//! One-shot acknowledgements from the committer thread to a writer.
//!
//! An [`Ack`] can be waited on by a thread (`wait`) or awaited by any async
//! runtime (it is a `Future`), so async callers need neither a blocking
//! thread per write nor a dependency on a particular runtime.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use crate::StoreError;

struct Slot<T> {
    state: Mutex<State<T>>,
    ready: Condvar,
}

struct State<T> {
    result: Option<Result<T, StoreError>>,
    waker: Option<Waker>,
}

impl<T> Slot<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // Nothing panics while holding this lock, but a poisoned lock must
        // not turn into a panic in every later writer either.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The outcome of a submitted write: resolves once the commit containing it
/// has been made durable (or has failed).
#[must_use = "a write is only known to be durable once its Ack resolves to Ok"]
pub struct Ack<T> {
    slot: Arc<Slot<T>>,
}

/// The committer's end: completes the `Ack` exactly once. Dropping it
/// without completing reports [`StoreError::Closed`], so a writer is never
/// left waiting for a committer that has gone away.
pub(crate) struct Completer<T> {
    slot: Option<Arc<Slot<T>>>,
}

pub(crate) fn pair<T>() -> (Completer<T>, Ack<T>) {
    let slot = Arc::new(Slot {
        state: Mutex::new(State {
            result: None,
            waker: None,
        }),
        ready: Condvar::new(),
    });
    (
        Completer {
            slot: Some(slot.clone()),
        },
        Ack { slot },
    )
}

impl<T> Completer<T> {
    pub(crate) fn complete(mut self, result: Result<T, StoreError>) {
        if let Some(slot) = self.slot.take() {
            Self::fill(&slot, result);
        }
    }

    fn fill(slot: &Slot<T>, result: Result<T, StoreError>) {
        let waker = {
            let mut state = slot.lock();
            state.result = Some(result);
            state.waker.take()
        };
        slot.ready.notify_all();
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl<T> Drop for Completer<T> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            Self::fill(&slot, Err(StoreError::Closed));
        }
    }
}

impl<T> Ack<T> {
    /// Blocks the calling thread until the write is durable or has failed.
    pub fn wait(self) -> Result<T, StoreError> {
        let mut state = self.slot.lock();
        loop {
            if let Some(result) = state.result.take() {
                return result;
            }
            state = self
                .slot
                .ready
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Returns the outcome if it is already known, without blocking.
    pub fn try_take(&mut self) -> Option<Result<T, StoreError>> {
        self.slot.lock().result.take()
    }
}

impl<T> Future for Ack<T> {
    type Output = Result<T, StoreError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.slot.lock();
        match state.result.take() {
            Some(result) => Poll::Ready(result),
            None => {
                state.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl<T> std::fmt::Debug for Ack<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ack").finish_non_exhaustive()
    }
}
