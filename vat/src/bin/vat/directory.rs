//! `vat directory ...`: the replicated directory's tool is a program of its
//! own (`vat-directory`, from the `vat-directory` crate, which depends on
//! this one); `vat` runs it with the rest of its arguments, as git runs
//! `git-<verb>`.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Command;

use crate::error::CliError;

/// The program's name.
const PROGRAM: &str = "vat-directory";

/// Runs `vat-directory` beside this executable (else on `PATH`) and exits
/// with its status.
pub fn run(args: Vec<OsString>) -> Result<(), CliError> {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(PROGRAM)))
        .filter(|path| path.is_file());
    let program = beside.unwrap_or_else(|| PathBuf::from(PROGRAM));
    let status = Command::new(&program)
        .args(&args)
        .status()
        .map_err(|source| CliError::Companion {
            program: program.display().to_string(),
            source,
        })?;
    std::process::exit(status.code().unwrap_or(1));
}
