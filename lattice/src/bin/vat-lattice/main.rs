//! `vat-lattice`: the lattice's command-line tool (see `vat_lattice::cli`).

#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    vat_lattice::cli::main()
}
