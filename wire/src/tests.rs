use super::*;
use proptest::prelude::*;

#[test]
fn reads_are_big_endian_and_consume_their_width() {
    let input = [
        1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18,
    ];
    let mut r = Reader::new(&input);
    assert_eq!(r.u8(), Ok(0x01));
    assert_eq!(r.u16(), Ok(0x0203));
    assert_eq!(r.u32(), Ok(0x0405_0607));
    assert_eq!(r.u64(), Ok(0x0809_0a0b_0c0d_0e0f));
    assert_eq!(r.array::<2>(), Ok([16, 17]));
    assert_eq!(r.bytes(1), Ok(&[18][..]));
    assert_eq!(r.remaining(), 0);
    assert_eq!(r.finish(), Ok(()));
}

/// Each read, given one byte fewer than it needs, fails.
#[test]
fn every_read_checks_the_length() {
    let short = |n: usize| vec![0xAA; n];
    assert_eq!(Reader::new(&short(0)).u8(), Err(Truncated));
    assert_eq!(Reader::new(&short(1)).u16(), Err(Truncated));
    assert_eq!(Reader::new(&short(3)).u32(), Err(Truncated));
    assert_eq!(Reader::new(&short(7)).u64(), Err(Truncated));
    assert_eq!(Reader::new(&short(31)).array::<32>(), Err(Truncated));
    assert_eq!(Reader::new(&short(4)).bytes(5), Err(Truncated));
    assert_eq!(Reader::new(&short(4)).bytes(usize::MAX), Err(Truncated));
    // Two arrays announced, one and a half present.
    let mut list = vec![2];
    list.extend_from_slice(&[0; 48]);
    assert_eq!(Reader::new(&list).arrays::<32>(10), Err(Truncated));
    assert_eq!(Reader::new(&[]).arrays::<32>(10), Err(Truncated));
}

#[test]
fn zero_length_reads_succeed_on_empty_input() {
    let mut r = Reader::new(&[]);
    assert_eq!(r.bytes(0), Ok(&[][..]));
    assert_eq!(r.array::<0>(), Ok([]));
    assert_eq!(r.finish(), Ok(()));
}

#[test]
fn finish_refuses_leftover_bytes() {
    let mut r = Reader::new(&[1, 2, 3]);
    assert_eq!(r.u16(), Ok(0x0102));
    assert_eq!(r.remaining(), 1);
    assert_eq!(r.finish(), Err(Truncated));
    assert_eq!(Reader::new(&[0]).finish(), Err(Truncated));
}

#[test]
fn a_count_above_max_fails_even_with_the_bytes_present() {
    let mut input = vec![3];
    input.extend_from_slice(&[7; 3 * 4]);
    assert_eq!(Reader::new(&input).arrays::<4>(2), Err(Truncated));
    assert_eq!(Reader::new(&input).arrays::<4>(3), Ok(vec![[7; 4]; 3]));
}

#[test]
fn put_arrays_never_lets_the_count_wrap() {
    let items = vec![[1u8; 2]; 300];
    let mut out = Vec::new();
    put_arrays(&mut out, &items);
    let mut r = Reader::new(&out);
    assert_eq!(r.arrays::<2>(255).map(|v| v.len()), Ok(255));
    assert_eq!(r.finish(), Ok(()));
}

#[test]
fn truncated_is_an_error_with_a_message() {
    let err: Box<dyn std::error::Error> = Box::new(Truncated);
    assert!(!err.to_string().is_empty());
}

/// One read of each kind, so a sequence of them can be generated.
#[derive(Debug, Clone)]
enum Read {
    Bytes(usize),
    Array3,
    U8,
    U16,
    U32,
    U64,
    Hashes(usize),
    Empties(usize),
}

fn read() -> impl Strategy<Value = Read> {
    prop_oneof![
        (0usize..40).prop_map(Read::Bytes),
        Just(Read::Array3),
        Just(Read::U8),
        Just(Read::U16),
        Just(Read::U32),
        Just(Read::U64),
        (0usize..300).prop_map(Read::Hashes),
        (0usize..300).prop_map(Read::Empties),
    ]
}

/// Applies one read; returns how many bytes it reported consuming, or `None`
/// if it failed.
fn apply(r: &mut Reader<'_>, read: &Read) -> Option<usize> {
    match *read {
        Read::Bytes(n) => r.bytes(n).ok().map(<[u8]>::len),
        Read::Array3 => r.array::<3>().ok().map(|_| 3),
        Read::U8 => r.u8().ok().map(|_| 1),
        Read::U16 => r.u16().ok().map(|_| 2),
        Read::U32 => r.u32().ok().map(|_| 4),
        Read::U64 => r.u64().ok().map(|_| 8),
        Read::Hashes(max) => r.arrays::<32>(max).ok().map(|v| {
            assert!(v.len() <= max);
            1 + 32 * v.len()
        }),
        Read::Empties(max) => r.arrays::<0>(max).ok().map(|v| {
            assert!(v.len() <= max);
            1
        }),
    }
}

proptest! {
    /// Random bytes never panic any sequence of reads, and every successful
    /// read consumes exactly the bytes it returned.
    #[test]
    fn random_bytes_never_panic_a_read_sequence(
        input in proptest::collection::vec(any::<u8>(), 0..200),
        reads in proptest::collection::vec(read(), 0..20),
    ) {
        let mut r = Reader::new(&input);
        for read in &reads {
            let before = r.remaining();
            if let Some(used) = apply(&mut r, read) {
                prop_assert_eq!(before - r.remaining(), used);
            }
        }
        let left = r.remaining();
        prop_assert_eq!(r.finish().is_ok(), left == 0);
    }

    #[test]
    fn arrays_read_back_what_put_arrays_wrote(
        items in proptest::collection::vec(any::<[u8; 5]>(), 0..=255),
    ) {
        let mut out = Vec::new();
        put_arrays(&mut out, &items);
        prop_assert_eq!(out.len(), 1 + 5 * items.len());
        let mut r = Reader::new(&out);
        prop_assert_eq!(r.arrays::<5>(255), Ok(items));
        prop_assert_eq!(r.finish(), Ok(()));
    }
}
