//! Compiles every schema under `capnp/` with the embedded Cap'n Proto compiler
//! (through vat-build, the helper users' crates call too), so that a fresh
//! machine needs no system `capnp` binary.

fn main() -> Result<(), vat_build::BuildError> {
    vat_build::Schemas::new("capnp").compile()
}
