//! The bounded queue between writers and the committer thread.
//!
//! Writers push operations; the committer takes everything queued (up to the
//! group limits) in one go and commits it as one transaction. A write counts
//! against the queue's bounds from the moment it is pushed until its commit
//! has finished, so the bounds cap the memory held by writes in flight, not
//! just by writes waiting.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use crate::ack::Completer;
use crate::StoreError;

/// One put (`value: Some`) or delete (`value: None`) in a key-value table.
pub(crate) struct WriteOp {
    /// The caller's table name (already checked).
    pub(crate) table: String,
    pub(crate) key: Vec<u8>,
    /// Tag room plus payload, see `record::unsealed`.
    pub(crate) value: Option<Vec<u8>>,
}

pub(crate) enum Op {
    /// One log record; acknowledged with its index.
    Append {
        log: Arc<str>,
        stored: Vec<u8>,
        ack: Completer<u64>,
    },
    /// Puts and deletes applied atomically; acknowledged with the number of
    /// deletes that removed an existing key.
    Write {
        ops: Vec<WriteOp>,
        ack: Completer<usize>,
    },
}

impl Op {
    /// Records this operation counts as against the bounds.
    pub(crate) fn records(&self) -> usize {
        match self {
            Op::Append { .. } => 1,
            Op::Write { ops, .. } => ops.len().max(1),
        }
    }

    /// Bytes this operation holds.
    pub(crate) fn bytes(&self) -> usize {
        match self {
            Op::Append { stored, .. } => stored.len(),
            Op::Write { ops, .. } => ops.iter().map(WriteOp::bytes).sum(),
        }
    }
}

impl WriteOp {
    pub(crate) fn bytes(&self) -> usize {
        self.key.len() + self.value.as_ref().map_or(0, Vec::len)
    }
}

/// Bounds of the queue and of one group commit.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) max_pending_records: usize,
    pub(crate) max_pending_bytes: usize,
    pub(crate) max_group_records: usize,
    pub(crate) max_group_bytes: usize,
}

struct State {
    ops: VecDeque<Op>,
    pending_records: usize,
    pending_bytes: usize,
    closed: bool,
    /// Set when the committer died; every later write gets this error.
    failed: Option<StoreError>,
}

pub(crate) struct Queue {
    state: Mutex<State>,
    wake: Condvar,
    limits: Limits,
    /// Successful commits, and the writes they acknowledged (for
    /// [`crate::StoreStats`]).
    commits: AtomicU64,
    committed_writes: AtomicU64,
}

impl Queue {
    pub(crate) fn new(limits: Limits) -> Self {
        Queue {
            state: Mutex::new(State {
                ops: VecDeque::new(),
                pending_records: 0,
                pending_bytes: 0,
                closed: false,
                failed: None,
            }),
            wake: Condvar::new(),
            limits,
            commits: AtomicU64::new(0),
            committed_writes: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues an operation, or refuses it when the bounds would be exceeded.
    /// A refused operation is dropped, which completes its ack with an error
    /// nobody waits for; the caller gets the error returned here.
    pub(crate) fn push(&self, op: Op) -> Result<(), StoreError> {
        let (records, bytes) = (op.records(), op.bytes());
        let mut state = self.lock();
        if let Some(err) = &state.failed {
            return Err(err.clone());
        }
        if state.closed {
            return Err(StoreError::Closed);
        }
        if state.pending_records + records > self.limits.max_pending_records
            || state.pending_bytes + bytes > self.limits.max_pending_bytes
        {
            return Err(StoreError::QueueFull {
                pending_records: state.pending_records,
                pending_bytes: state.pending_bytes,
            });
        }
        state.pending_records += records;
        state.pending_bytes += bytes;
        state.ops.push_back(op);
        drop(state);
        self.wake.notify_one();
        Ok(())
    }

    /// Waits for work and takes one group: everything queued, up to the
    /// group limits, but always at least one operation. `None` once the
    /// queue is closed and drained.
    pub(crate) fn take_group(&self) -> Option<Vec<Op>> {
        let mut state = self.lock();
        while state.ops.is_empty() {
            if state.closed {
                return None;
            }
            state = self
                .wake
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        let mut group = Vec::new();
        let (mut records, mut bytes) = (0usize, 0usize);
        while let Some(next) = state.ops.front() {
            let (r, b) = (next.records(), next.bytes());
            if !group.is_empty()
                && (records + r > self.limits.max_group_records
                    || bytes + b > self.limits.max_group_bytes)
            {
                break;
            }
            records += r;
            bytes += b;
            match state.ops.pop_front() {
                Some(op) => group.push(op),
                None => break,
            }
        }
        Some(group)
    }

    /// Returns the room held by a group whose commit has finished.
    pub(crate) fn release(&self, records: usize, bytes: usize) {
        let mut state = self.lock();
        state.pending_records = state.pending_records.saturating_sub(records);
        state.pending_bytes = state.pending_bytes.saturating_sub(bytes);
    }

    /// Counts a successful commit of `writes` operations.
    pub(crate) fn count_commit(&self, writes: usize) {
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.committed_writes
            .fetch_add(writes as u64, Ordering::Relaxed);
    }

    /// (commits, writes acknowledged) so far.
    pub(crate) fn counts(&self) -> (u64, u64) {
        (
            self.commits.load(Ordering::Relaxed),
            self.committed_writes.load(Ordering::Relaxed),
        )
    }

    /// Stops accepting writes; the committer drains what is queued and exits.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.wake.notify_all();
    }

    /// Marks the writer as dead and fails everything still queued.
    pub(crate) fn fail(&self, err: StoreError) {
        let queued: Vec<Op> = {
            let mut state = self.lock();
            state.failed = Some(err.clone());
            state.closed = true;
            state.ops.drain(..).collect()
        };
        for op in queued {
            fail_op(op, &err);
        }
    }
}

/// Completes one operation's ack with an error.
pub(crate) fn fail_op(op: Op, err: &StoreError) {
    match op {
        Op::Append { ack, .. } => ack.complete(Err(err.clone())),
        Op::Write { ack, .. } => ack.complete(Err(err.clone())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ack;

    fn append(len: usize) -> (Op, crate::Ack<u64>) {
        let (done, waiter) = ack::pair();
        let op = Op::Append {
            log: "l".into(),
            stored: vec![0; len],
            ack: done,
        };
        (op, waiter)
    }

    fn limits() -> Limits {
        Limits {
            max_pending_records: 4,
            max_pending_bytes: 100,
            max_group_records: 3,
            max_group_bytes: 1000,
        }
    }

    #[test]
    fn full_queue_is_an_error_until_released() {
        let queue = Queue::new(limits());
        let mut acks = Vec::new();
        for _ in 0..4 {
            let (op, waiter) = append(10);
            queue.push(op).unwrap();
            acks.push(waiter);
        }
        let (op, mut refused) = append(10);
        let err = queue.push(op).unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::QueueFull {
                    pending_records: 4,
                    ..
                }
            ),
            "{err}"
        );
        // The refused operation's ack resolves (nobody is left hanging).
        assert!(matches!(refused.try_take(), Some(Err(StoreError::Closed))));

        // Bytes are bounded too.
        let queue2 = Queue::new(limits());
        let (op, _w) = append(101);
        assert!(matches!(queue2.push(op), Err(StoreError::QueueFull { .. })));

        // Taking a group does not free room; acknowledging it does.
        let group = queue.take_group().unwrap();
        assert_eq!(group.len(), 3, "group limit");
        let (op, _w) = append(10);
        assert!(queue.push(op).is_err());
        queue.release(3, 30);
        let (op, _w) = append(10);
        assert!(queue.push(op).is_ok());
    }

    #[test]
    fn closing_drains_then_ends_and_failing_refuses() {
        let queue = Queue::new(limits());
        let (op, _w) = append(1);
        queue.push(op).unwrap();
        queue.close();
        let (op, _w2) = append(1);
        assert!(matches!(queue.push(op), Err(StoreError::Closed)));
        assert_eq!(queue.take_group().map(|g| g.len()), Some(1));
        assert!(queue.take_group().is_none());

        let queue = Queue::new(limits());
        let (op, waiter) = append(1);
        queue.push(op).unwrap();
        queue.fail(StoreError::WriterFailed { detail: "x".into() });
        assert!(matches!(
            waiter.wait(),
            Err(StoreError::WriterFailed { .. })
        ));
        let (op, _w) = append(1);
        assert!(matches!(
            queue.push(op),
            Err(StoreError::WriterFailed { .. })
        ));
    }
}
