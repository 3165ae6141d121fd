//! Standard output for the CLI: text lines and JSON documents, and the rule
//! that a closed pipe (`osmoda knowledge list | head -1`) ends the command
//! quietly and successfully, as it does for any Unix filter.
//!
//! Rust ignores SIGPIPE, so a write to a closed pipe is an error that
//! `println!` turns into a panic; everything the CLI prints goes through
//! here instead.

use std::borrow::Cow;
use std::io::{ErrorKind, Write};

use serde::Serialize;

/// `text` with every character that could act on a terminal rather than
/// be shown written out as an escape (`\u{1b}`): control characters but
/// newline and tab, and the bidirectional overrides that reorder what a
/// line seems to say. Titles, reasons, names and commands come from
/// peers and agents; an approval must show exactly what will run.
pub fn printable(text: &str) -> Cow<'_, str> {
    fn hostile(c: char) -> bool {
        (c.is_control() && c != '\n' && c != '\t') || is_bidi_override(c)
    }
    if !text.chars().any(hostile) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if hostile(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

fn is_bidi_override(c: char) -> bool {
    matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Writes `text` (made [`printable`]) and a newline to standard output. A
/// closed pipe exits the process with status 0 and nothing on standard
/// error; another write error exits with status 1 and says so.
pub fn line(text: impl AsRef<str>) {
    write_line(&printable(text.as_ref()));
}

fn write_line(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let written = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.write_all(b"\n"))
        .and_then(|()| stdout.flush());
    if let Err(e) = written {
        gone(e);
    }
}

/// Prints a value as pretty JSON. serde_json escapes control characters
/// itself; the bidirectional overrides, which it leaves, are escaped the
/// JSON way (they can only occur inside strings), so the output stays
/// valid JSON with the same values.
pub fn json<T: Serialize + ?Sized>(value: &T) {
    match serde_json::to_string_pretty(value) {
        Ok(text) if !text.chars().any(is_bidi_override) => write_line(&text),
        Ok(text) => {
            let mut out = String::with_capacity(text.len() + 16);
            for c in text.chars() {
                if is_bidi_override(c) {
                    out.push_str(&format!("\\u{:04x}", u32::from(c)));
                } else {
                    out.push(c);
                }
            }
            write_line(&out)
        }
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

#[cfg(test)]
mod tests {
    use super::printable;

    #[test]
    fn terminal_controls_are_shown_not_obeyed() {
        assert_eq!(printable("plain\ttext\nnext"), "plain\ttext\nnext");
        assert_eq!(
            printable("rm -rf /\u{1b}[2K\rls"),
            "rm -rf /\\u{1b}[2K\\u{d}ls"
        );
        assert_eq!(printable("a\u{202e}b\u{85}"), "a\\u{202e}b\\u{85}");
    }
}
