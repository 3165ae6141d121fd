//! The `osmoda` binary: parses the command line and hands it to the
//! library's CLI (`osmoda_node::cli`), which reports errors for people and
//! picks the exit code.

// Outside bytes, files and answers are errors, never panics; tests may
// unwrap what they made themselves.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use std::process::ExitCode;

use clap::Parser;
use osmoda_node::cli::{self, args::Cli};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(cli::dispatch(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The reason may quote a peer's or an agent's words.
            eprintln!("error: {}", cli::out::printable(&format!("{e:#}")));
            ExitCode::from(cli::exit_code(&e))
        }
    }
}
