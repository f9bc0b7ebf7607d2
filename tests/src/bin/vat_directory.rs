//! The directory's tool, built in this package so that its tests can run
//! it (`CARGO_BIN_EXE_vat_directory`): the same code as `vat-directory`.

#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    vat_directory::cli::main()
}
