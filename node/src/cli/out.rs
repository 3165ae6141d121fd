//! Standard output for the CLI: text lines and JSON documents, and the rule
//! that a closed pipe (`osmoda knowledge list | head -1`) ends the command
//! quietly and successfully, as it does for any Unix filter.
//!
//! Rust ignores SIGPIPE, so a write to a closed pipe is an error that
//! `println!` turns into a panic; everything the CLI prints goes through
//! here instead.

use std::io::{ErrorKind, Write};

use serde::Serialize;

/// Writes `text` and a newline to standard output. A closed pipe exits the
/// process with status 0 and nothing on standard error; another write
/// error exits with status 1 and says so.
pub fn line(text: impl AsRef<str>) {
    let mut stdout = std::io::stdout().lock();
    let written = stdout
        .write_all(text.as_ref().as_bytes())
        .and_then(|()| stdout.write_all(b"\n"))
        .and_then(|()| stdout.flush());
    if let Err(e) = written {
        gone(e);
    }
}

/// Prints a value as pretty JSON.
pub fn json<T: Serialize + ?Sized>(value: &T) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => line(text),
        Err(e) => {
            eprintln!("error: cannot print the answer as JSON: {e}");
            std::process::exit(1);
        }
    }
}

fn gone(e: std::io::Error) -> ! {
    if e.kind() == ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    // Standard error may be closed too; nothing more to say then.
    let _ = writeln!(
        std::io::stderr(),
        "error: cannot write to standard output: {e}"
    );
    std::process::exit(1);
}

/// `println!` through [`line`].
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::cli::out::line(format!($($arg)*))
    };
}
pub(crate) use say;
