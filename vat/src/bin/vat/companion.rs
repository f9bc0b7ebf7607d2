//! `vat directory ...` and `vat lattice ...`: the replicated directory's
//! tool and the lattice's are programs of their own (`vat-directory`,
//! `vat-lattice`, from crates that depend on this one); `vat` runs them with
//! the rest of its arguments, as git runs `git-<verb>`.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Command;

use crate::error::CliError;

/// Runs `program` beside this executable (else on `PATH`) and exits with
/// its status.
pub fn run(program: &str, args: Vec<OsString>) -> Result<(), CliError> {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(program)))
        .filter(|path| path.is_file());
    let program = beside.unwrap_or_else(|| PathBuf::from(program));
    let status = Command::new(&program)
        .args(&args)
        .status()
        .map_err(|source| CliError::Companion {
            program: program.display().to_string(),
            source,
        })?;
    std::process::exit(status.code().unwrap_or(1));
}
