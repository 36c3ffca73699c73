//! What every example's `main` does with an error (`#[path]`-included):
//! one line on stderr naming the program, and a failing exit status; and
//! a conflict between flags that clap cannot express, said as clap says
//! its own.

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

/// Ends the process as clap ends it for a flag error (the usage, exit
/// status 2) with `message`, for a conflict between flags that clap's
/// attributes cannot express. The program is named as clap names it in
/// its own errors: `argv[0]`'s file name (the command's own name is the
/// package's, `cellio`); `program` if there is none.
#[allow(dead_code)] // not every example that includes this has such flags
pub fn flag_conflict<A: clap::CommandFactory>(program: &str, message: &str) -> ! {
    let named = std::env::args_os()
        .next()
        .and_then(|arg0| {
            let name = std::path::Path::new(&arg0).file_name()?.to_str()?;
            Some(name.to_owned())
        })
        .unwrap_or_else(|| program.to_owned());
    A::command()
        .bin_name(named)
        .error(clap::error::ErrorKind::ArgumentConflict, message)
        .exit()
}
