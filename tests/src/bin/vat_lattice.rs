//! The lattice's tool, built in this package so that its tests can run it
//! (`CARGO_BIN_EXE_vat_lattice`): the same code as `vat-lattice`.

#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    vat_lattice::cli::main()
}
