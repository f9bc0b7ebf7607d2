//! Compiles a crate's own Cap'n Proto interfaces in its `build.rs`, with the
//! schema compiler embedded (as WebAssembly), so that building needs no
//! system `capnp` binary.
//!
//! A crate that defines its own interfaces keeps them in a folder of
//! `.capnp` files (here `schema/`), adds `vat-build` to its
//! `[build-dependencies]` (and `capnp`, `capnp-rpc` to its dependencies),
//! and calls it from `build.rs`:
//!
//! ```no_run
//! // build.rs
//! fn main() -> Result<(), vat_build::BuildError> {
//!     vat_build::Schemas::new("schema").compile()
//! }
//! ```
//!
//! Every `name.capnp` in the folder becomes a module `name_capnp`. Include
//! them all, once, at the root of the crate (`lib.rs` or `main.rs`: the
//! generated code refers to its modules as `crate::name_capnp`):
//!
//! ```ignore
//! include!(concat!(env!("OUT_DIR"), "/vat_schemas.rs"));
//! ```
//!
//! The modules come with the lint allowances generated code needs, so a
//! crate's own strict lints (`missing_docs`, clippy's) do not trip on them.
//! Each `.capnp` file must start with a unique 64-bit file id
//! (`@0x…;`): `vat schema id` prints a fresh one.
//!
//! A server generated from an interface compiles with any of its methods
//! left out: capnp answers those with an `unimplemented` exception.

#![forbid(unsafe_code)]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The file, in `OUT_DIR`, that declares one module per schema.
pub const MODULES_FILE: &str = "vat_schemas.rs";

/// Why the schemas could not be compiled.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The schema folder could not be read.
    #[error("cannot read the schema folder {}: {source}", dir.display())]
    ReadDir {
        /// The folder.
        dir: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The folder holds no `.capnp` file.
    #[error("the schema folder {} holds no .capnp file", dir.display())]
    NoSchemas {
        /// The folder.
        dir: PathBuf,
    },
    /// A schema file's name cannot be a Rust module name.
    #[error(
        "{} cannot become a Rust module: a schema's file name must be letters, digits and \
         underscores, starting with a letter",
        path.display()
    )]
    BadName {
        /// The schema file.
        path: PathBuf,
    },
    /// Cargo did not set `OUT_DIR` (the helper runs only inside `build.rs`).
    #[error("OUT_DIR is not set: call vat-build from a build script")]
    NoOutDir,
    /// The schema compiler refused a schema (the message names the file and
    /// line) or code generation failed.
    #[error("compiling the schemas in {}: {message}", dir.display())]
    Compile {
        /// The folder.
        dir: PathBuf,
        /// What the compiler said.
        message: String,
    },
    /// The module file could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
}

/// The `.capnp` files of one folder, to compile into the crate.
#[derive(Debug, Clone)]
pub struct Schemas {
    dir: PathBuf,
    imports: Vec<PathBuf>,
}

impl Schemas {
    /// The schemas in `dir` (relative to the crate's `Cargo.toml`).
    pub fn new(dir: impl Into<PathBuf>) -> Schemas {
        Schemas {
            dir: dir.into(),
            imports: Vec::new(),
        }
    }

    /// Also lets the schemas `import` files from `dir`.
    pub fn import_path(mut self, dir: impl Into<PathBuf>) -> Schemas {
        self.imports.push(dir.into());
        self
    }

    /// Compiles every `.capnp` file of the folder into `OUT_DIR`, writes
    /// [`MODULES_FILE`] there, and tells cargo to run the build script again
    /// when a schema changes.
    pub fn compile(&self) -> Result<(), BuildError> {
        let out_dir = std::env::var_os("OUT_DIR")
            .map(PathBuf::from)
            .ok_or(BuildError::NoOutDir)?;
        self.compile_into(&out_dir)
    }

    /// [`compile`](Schemas::compile), into `out_dir`.
    pub fn compile_into(&self, out_dir: &Path) -> Result<(), BuildError> {
        let schemas = self.files()?;
        println!("cargo:rerun-if-changed={}", self.dir.display());
        let mut command = capnpc_embedded::CompileCommand::new();
        command.src_prefix(&self.dir);
        for dir in &self.imports {
            command.import_path(dir);
        }
        for (schema, _) in &schemas {
            println!("cargo:rerun-if-changed={}", schema.display());
            command.file(schema);
        }
        let failed = |message: String| BuildError::Compile {
            dir: self.dir.clone(),
            message,
        };
        let request = command.compile().map_err(|e| failed(e.to_string()))?;
        capnpc::codegen::CodeGenerationCommand::new()
            .output_directory(out_dir)
            .run(&request[..])
            .map_err(|e| failed(e.to_string()))?;
        let path = out_dir.join(MODULES_FILE);
        std::fs::write(&path, modules(&schemas))
            .map_err(|source| BuildError::Write { path, source })
    }

    /// The folder's schema files, sorted, each with its module's name.
    fn files(&self) -> Result<Vec<(PathBuf, String)>, BuildError> {
        let read_error = |source| BuildError::ReadDir {
            dir: self.dir.clone(),
            source,
        };
        let mut files = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(read_error)? {
            let path = entry.map_err(read_error)?.path();
            if path.extension().is_none_or(|ext| ext != "capnp") {
                continue;
            }
            let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
            if !is_module_name(stem) {
                return Err(BuildError::BadName { path });
            }
            let module = format!("{stem}_capnp");
            files.push((path, module));
        }
        if files.is_empty() {
            return Err(BuildError::NoSchemas {
                dir: self.dir.clone(),
            });
        }
        files.sort();
        Ok(files)
    }
}

/// Whether `name` can name a Rust module as it stands.
fn is_module_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The text of [`MODULES_FILE`]: one documented module per schema, with the
/// allowances generated code needs.
fn modules(schemas: &[(PathBuf, String)]) -> String {
    let mut text = String::from("// Written by vat-build: one module per schema.\n");
    for (path, module) in schemas {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let _ = write!(
            text,
            "\n/// Generated from `{name}`.\n\
             #[allow(missing_docs, unused_qualifications, clippy::all, clippy::pedantic, \
             clippy::unwrap_used, clippy::expect_used)]\n\
             pub mod {module} {{\n    include!(concat!(env!(\"OUT_DIR\"), \"/{module}.rs\"));\n}}\n"
        );
    }
    text
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // unit tests: a panic is a failed test

    use super::*;

    #[test]
    fn module_names_are_checked() {
        assert!(is_module_name("bank"));
        assert!(is_module_name("bank_v2"));
        assert!(!is_module_name("2bank"));
        assert!(!is_module_name("my-bank"));
        assert!(!is_module_name(""));
    }

    #[test]
    fn a_folder_without_schemas_is_an_error_that_says_so() {
        let dir = std::env::temp_dir().join(format!("vat-build-empty-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let error = Schemas::new(&dir).files().unwrap_err();
        assert!(matches!(error, BuildError::NoSchemas { .. }), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
