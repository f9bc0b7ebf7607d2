fn main() -> Result<(), vat_build::BuildError> {
    vat_build::Schemas::new("schema").compile()
}
