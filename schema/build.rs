//! Compiles every schema under `capnp/` with the embedded Cap'n Proto compiler,
//! so that a fresh machine needs no system `capnp` binary.

use std::path::{Path, PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = Path::new("capnp");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut schemas: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "capnp"))
        .collect();
    schemas.sort();

    let mut compile = capnpc_embedded::CompileCommand::new();
    compile.src_prefix(dir);
    for schema in &schemas {
        println!("cargo:rerun-if-changed={}", schema.display());
        compile.file(schema);
    }
    let request = compile.compile()?;

    let out_dir = std::env::var("OUT_DIR")?;
    capnpc::codegen::CodeGenerationCommand::new()
        .output_directory(out_dir)
        .run(&request[..])?;
    Ok(())
}
