//! Every escape, under both resolvers (`openat2` and the component walk).

use std::os::unix::fs::symlink;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::*;

struct Fixture {
    _tmp: tempfile::TempDir,
    ws: PathBuf,
    outside: PathBuf,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ws = tmp.path().join("ws");
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(&ws).expect("mkdir ws");
    std::fs::create_dir_all(&outside).expect("mkdir outside");
    std::fs::write(outside.join("secret"), b"outside").expect("write secret");
    Fixture {
        _tmp: tmp,
        ws,
        outside,
    }
}

/// Runs `test` with the default resolver and with the walk.
fn both(test: impl Fn(&Fixture, &Workspace)) {
    let f = fixture();
    test(&f, &Workspace::open(&f.ws).expect("open"));
    let f = fixture();
    test(&f, &Workspace::open(&f.ws).expect("open").walking());
}

fn is_symlink(e: &WorkspaceError) -> bool {
    matches!(e, WorkspaceError::Symlink { .. })
}

#[test]
fn openat2_is_used_when_the_kernel_has_it() {
    let f = fixture();
    let ws = Workspace::open(&f.ws).expect("open");
    // Informational on old kernels; on the CI kernels (>= 5.6) it must be on.
    eprintln!("resolver: {:?}", ws.resolver);
}

#[test]
fn write_read_list_delete_round_trip() {
    both(|f, ws| {
        ws.write("a/b/c.txt", b"hello").expect("write");
        assert_eq!(ws.read("a/b/c.txt").expect("read"), b"hello");
        assert_eq!(ws.read("./a//b/c.txt").expect("read"), b"hello");
        ws.write("a/b/c.txt", b"again").expect("overwrite");
        assert_eq!(ws.read("a/b/c.txt").expect("read"), b"again");
        let listing = ws.list("a/b").expect("list");
        assert_eq!(
            listing.entries,
            vec![DirEntry {
                name: "c.txt".into(),
                kind: EntryKind::File,
                size: 5
            }]
        );
        assert!(!listing.truncated);
        let root = ws.list("").expect("list root");
        assert_eq!(root.entries[0].kind, EntryKind::Dir);
        assert_eq!(ws.list(".").expect("list ."), root);
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(f.ws.join("a/b"))
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec!["c.txt"]);
        ws.delete("a/b/c.txt").expect("delete file");
        ws.delete("a/b").expect("delete empty dir");
        assert!(matches!(
            ws.read("a/b/c.txt"),
            Err(WorkspaceError::NotFound { .. })
        ));
    });
}

#[test]
fn absolute_paths_are_refused() {
    both(|_, ws| {
        assert!(matches!(
            ws.read("/etc/passwd"),
            Err(WorkspaceError::Absolute { .. })
        ));
        assert!(matches!(
            ws.write("/tmp/x", b"x"),
            Err(WorkspaceError::Absolute { .. })
        ));
        assert!(matches!(ws.list("/"), Err(WorkspaceError::Absolute { .. })));
        assert!(matches!(
            ws.delete("/tmp/x"),
            Err(WorkspaceError::Absolute { .. })
        ));
    });
}

#[test]
fn dot_dot_is_refused_anywhere() {
    both(|f, ws| {
        for path in [
            "..",
            "../outside/secret",
            "a/../../outside/secret",
            "a/..",
            "a/../b",
        ] {
            assert!(
                matches!(ws.read(path), Err(WorkspaceError::Escape { .. })),
                "{path}"
            );
            assert!(
                matches!(ws.write(path, b"x"), Err(WorkspaceError::Escape { .. })),
                "{path}"
            );
            assert!(
                matches!(ws.list(path), Err(WorkspaceError::Escape { .. })),
                "{path}"
            );
            assert!(
                matches!(ws.delete(path), Err(WorkspaceError::Escape { .. })),
                "{path}"
            );
        }
        assert_eq!(
            std::fs::read(f.outside.join("secret")).expect("secret"),
            b"outside"
        );
    });
}

#[test]
fn invalid_paths_are_refused() {
    both(|_, ws| {
        let long = "x".repeat(256);
        assert!(matches!(
            ws.read(&long),
            Err(WorkspaceError::InvalidPath { .. })
        ));
        assert!(matches!(
            ws.read("a\0b"),
            Err(WorkspaceError::InvalidPath { .. })
        ));
        let too_long = "a/".repeat(2049);
        assert!(matches!(
            ws.read(&too_long),
            Err(WorkspaceError::InvalidPath { .. })
        ));
        assert!(matches!(
            ws.delete(""),
            Err(WorkspaceError::InvalidPath { .. })
        ));
        assert!(matches!(
            ws.read("."),
            Err(WorkspaceError::IsADirectory { .. })
        ));
        assert!(matches!(
            ws.write("", b"x"),
            Err(WorkspaceError::IsADirectory { .. })
        ));
    });
}

#[test]
fn a_link_to_etc_is_refused() {
    both(|_, ws| {
        symlink("/etc", ws.root().join("etc")).expect("symlink");
        let e = ws.read("etc/passwd").expect_err("read through link");
        assert!(is_symlink(&e), "{e}");
        assert!(is_symlink(&ws.list("etc").expect_err("list link")));
        assert!(is_symlink(
            &ws.write("etc/osmoda-test", b"x").expect_err("write")
        ));
        assert!(is_symlink(&ws.delete("etc/hostname").expect_err("delete")));
        assert!(is_symlink(&ws.read("etc").expect_err("read link itself")));
    });
}

#[test]
fn a_link_to_a_file_outside_is_refused_and_untouched() {
    both(|f, ws| {
        symlink(f.outside.join("secret"), f.ws.join("s")).expect("symlink");
        assert!(is_symlink(&ws.read("s").expect_err("read")));
        assert!(is_symlink(&ws.write("s", b"pwned").expect_err("write")));
        assert!(is_symlink(&ws.delete("s").expect_err("delete")));
        assert_eq!(
            std::fs::read(f.outside.join("secret")).expect("secret"),
            b"outside"
        );
        assert!(
            f.ws.join("s").symlink_metadata().is_ok(),
            "the link is not removed"
        );
        let listing = ws.list("").expect("list");
        assert_eq!(listing.entries[0].kind, EntryKind::Symlink);
    });
}

#[test]
fn a_link_in_the_middle_of_the_path_is_refused() {
    both(|f, ws| {
        std::fs::create_dir(f.ws.join("a")).expect("mkdir a");
        symlink(&f.outside, f.ws.join("a/b")).expect("symlink");
        assert!(is_symlink(&ws.read("a/b/secret").expect_err("read")));
        assert!(is_symlink(&ws.write("a/b/new", b"x").expect_err("write")));
        assert!(is_symlink(
            &ws.write("a/b/c/new", b"x").expect_err("write deeper")
        ));
        assert!(is_symlink(&ws.list("a/b").expect_err("list")));
        assert!(is_symlink(&ws.delete("a/b/secret").expect_err("delete")));
        assert!(!f.outside.join("new").exists());
        assert!(!f.outside.join("c").exists());
        assert!(f.outside.join("secret").exists());
    });
}

#[test]
fn links_pointing_inside_are_refused_too() {
    both(|f, ws| {
        ws.write("d/real.txt", b"inside").expect("write");
        symlink("real.txt", f.ws.join("d/link.txt")).expect("file link");
        symlink("d", f.ws.join("d2")).expect("dir link");
        assert!(is_symlink(&ws.read("d/link.txt").expect_err("file link")));
        assert!(is_symlink(&ws.read("d2/real.txt").expect_err("dir link")));
        assert!(is_symlink(&ws.list("d2").expect_err("list dir link")));
        assert_eq!(ws.read("d/real.txt").expect("real"), b"inside");
    });
}

#[test]
fn special_files_and_wrong_kinds_are_refused() {
    both(|f, ws| {
        rustix::fs::mknodat(
            CWD,
            f.ws.join("fifo"),
            FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .expect("mkfifo");
        // Would block forever if the open waited for a writer.
        assert!(matches!(
            ws.read("fifo"),
            Err(WorkspaceError::NotAFile { .. })
        ));
        assert!(matches!(
            ws.write("fifo", b"x"),
            Err(WorkspaceError::NotAFile { .. })
        ));
        ws.write("dir/file", b"x").expect("write");
        assert!(matches!(
            ws.read("dir"),
            Err(WorkspaceError::IsADirectory { .. })
        ));
        assert!(matches!(
            ws.write("dir", b"x"),
            Err(WorkspaceError::IsADirectory { .. })
        ));
        assert!(matches!(
            ws.list("dir/file"),
            Err(WorkspaceError::NotADirectory { .. })
        ));
        assert!(matches!(
            ws.read("dir/file/x"),
            Err(WorkspaceError::NotADirectory { .. })
        ));
        assert!(matches!(
            ws.delete("dir"),
            Err(WorkspaceError::NotEmpty { .. })
        ));
        assert!(matches!(
            ws.delete("missing"),
            Err(WorkspaceError::NotFound { .. })
        ));
        assert!(matches!(
            ws.list("missing"),
            Err(WorkspaceError::NotFound { .. })
        ));
    });
}

#[test]
fn sizes_are_bounded() {
    both(|f, ws| {
        let big = vec![b'x'; MAX_FILE_BYTES + 1];
        assert!(matches!(
            ws.write("big", &big),
            Err(WorkspaceError::TooLarge { .. })
        ));
        std::fs::write(f.ws.join("big"), &big).expect("write big");
        assert!(matches!(
            ws.read("big"),
            Err(WorkspaceError::TooLarge { .. })
        ));
        ws.write("max", &big[..MAX_FILE_BYTES]).expect("write max");
        assert_eq!(ws.read("max").expect("read max").len(), MAX_FILE_BYTES);
    });
}

#[test]
fn listings_are_bounded() {
    let f = fixture();
    let dir = f.ws.join("many");
    std::fs::create_dir(&dir).expect("mkdir");
    for i in 0..MAX_LIST_ENTRIES + 5 {
        std::fs::File::create(dir.join(format!("f{i}"))).expect("create");
    }
    let ws = Workspace::open(&f.ws).expect("open");
    let listing = ws.list("many").expect("list");
    assert_eq!(listing.entries.len(), MAX_LIST_ENTRIES);
    assert!(listing.truncated);
}

/// A directory on the path is atomically exchanged with a link to the
/// outside, over and over, while the agent reads and writes through it: no
/// read may ever see the outside file, no write may land there.
#[test]
fn a_link_swapped_in_during_reads_never_leaks() {
    for walking in [false, true] {
        let f = fixture();
        let mut ws = Workspace::open(&f.ws).expect("open");
        if walking {
            ws = ws.walking();
        }
        ws.write("a/secret", b"inside").expect("write");
        symlink(&f.outside, f.ws.join("link")).expect("symlink");
        let stop = Arc::new(AtomicBool::new(false));
        let swapper = {
            let (root, stop) = (f.ws.clone(), stop.clone());
            std::thread::spawn(move || exchange_until(&root, &stop))
        };
        let (mut inside, mut refused) = (0, 0);
        for _ in 0..5_000 {
            match ws.read("a/secret") {
                Ok(bytes) => {
                    assert_eq!(bytes, b"inside", "read escaped the workspace");
                    inside += 1;
                }
                Err(e) => {
                    // Which refusal depends on the moment: a link met by
                    // `O_DIRECTORY` reads as "not a directory" when the
                    // diagnosis runs after the swap back.
                    assert!(
                        matches!(
                            e,
                            WorkspaceError::Symlink { .. } | WorkspaceError::NotADirectory { .. }
                        ),
                        "{e}"
                    );
                    refused += 1;
                }
            }
        }
        // Writes apart: their fsyncs stall the renames and would phase-lock
        // the reads onto one side of the swap.
        let (mut written, mut write_refused) = (0, 0);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while (written < 20 || write_refused < 20) && std::time::Instant::now() < deadline {
            match ws.write("a/new", b"x") {
                Ok(()) => written += 1,
                Err(_) => write_refused += 1,
            }
            std::thread::sleep(std::time::Duration::from_micros(50));
        }
        stop.store(true, Ordering::Relaxed);
        let swaps = swapper.join().expect("swapper");
        assert!(
            !f.outside.join("new").exists(),
            "a write escaped the workspace"
        );
        assert_eq!(
            std::fs::read(f.outside.join("secret")).expect("secret"),
            b"outside"
        );
        eprintln!(
            "walking={walking}: {swaps} swaps, {inside} reads inside, {refused} refused, \
             {written} writes inside, {write_refused} refused"
        );
    }
}

/// Swaps `a` (a directory) and `link` (a link to the outside) with
/// `RENAME_EXCHANGE`, so `a` is never missing, only sometimes a link.
fn exchange_until(root: &Path, stop: &AtomicBool) -> u64 {
    let (a, link) = (root.join("a"), root.join("link"));
    let mut swaps = 0;
    while !stop.load(Ordering::Relaxed) {
        rustix::fs::renameat_with(CWD, &a, CWD, &link, rustix::fs::RenameFlags::EXCHANGE)
            .expect("exchange");
        swaps += 1;
        // Uneven pauses, so the other thread cannot fall into step with
        // the swaps and always meet the same side.
        std::thread::sleep(std::time::Duration::from_micros(swaps % 13));
    }
    swaps
}
