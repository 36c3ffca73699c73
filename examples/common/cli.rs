//! What every example's `main` does with an error (`#[path]`-included):
//! one line on stderr naming the program, and a failing exit status.

use std::process::ExitCode;

/// `e` with what was being done when it happened.
pub fn context(what: &str, e: std::io::Error) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// Success, or `program: error` on stderr and a failing status.
pub fn exit_code(program: &str, result: std::io::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{program}: {e}");
            ExitCode::FAILURE
        }
    }
}
