//! A hostile count never makes `Reader::arrays` allocate beyond its bound.
//!
//! Its own test binary, because it installs a global allocator that records
//! the largest allocation made on the current thread.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use osmoda_wire::{Reader, Truncated};

struct Recording;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards to `System` unchanged; only records sizes.
unsafe impl GlobalAlloc for Recording {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = LARGEST.try_with(|l| l.set(l.get().max(layout.size())));
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = LARGEST.try_with(|l| l.set(l.get().max(new_size)));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Recording = Recording;

/// The largest allocation `f` made on this thread.
fn largest_allocation<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST.with(|l| l.set(0));
    let out = f();
    (out, LARGEST.with(Cell::get))
}

#[test]
fn a_count_above_max_allocates_nothing() {
    let mut input = vec![255];
    input.extend_from_slice(&[0; 255 * 32]);
    let (result, largest) = largest_allocation(|| Reader::new(&input).arrays::<32>(65));
    assert_eq!(result, Err(Truncated));
    assert_eq!(largest, 0);
}

#[test]
fn a_count_beyond_the_input_allocates_nothing() {
    let mut input = vec![200];
    input.extend_from_slice(&[0; 10 * 32]);
    let (result, largest) = largest_allocation(|| Reader::new(&input).arrays::<32>(255));
    assert_eq!(result, Err(Truncated));
    assert_eq!(largest, 0);
}

#[test]
fn a_count_within_max_allocates_exactly_the_list() {
    let mut input = vec![65];
    input.extend_from_slice(&[9; 65 * 32]);
    let (result, largest) = largest_allocation(|| Reader::new(&input).arrays::<32>(65));
    assert_eq!(result.map(|v| v.len()), Ok(65));
    assert_eq!(largest, 65 * 32);
}
