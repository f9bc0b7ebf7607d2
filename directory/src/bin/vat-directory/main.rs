//! `vat-directory`: the directory's command-line tool (see
//! `vat_directory::cli`).

#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    vat_directory::cli::main()
}
