//! A crate outside the workspace defines its own interface, compiles it
//! with vat-build (no system `capnp`) and calls it across two vats: the
//! template in `examples/own-interface`, copied to a temporary folder as a
//! user would start from it, with a file id from `vat schema id`.

// Test scaffolding: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository's root.
fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Copies the files of `from` into `to`, recursively (no `target/`).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        if entry.file_name() == "target" {
            continue;
        }
        if path.is_dir() {
            copy_tree(&path, &to.join(entry.file_name()));
        } else {
            std::fs::copy(&path, to.join(entry.file_name())).unwrap();
        }
    }
}

#[test]
fn a_crate_of_its_own_compiles_its_interface_and_calls_it_across_two_vats() {
    let root = repository();
    let work = tempfile::tempdir().unwrap();
    let crate_dir = work.path().join("teller-app");
    copy_tree(&root.join("examples/own-interface"), &crate_dir);

    // Depend on this repository's crates where they are.
    let manifest = crate_dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let text = text
        .replace(
            "../../vat-build",
            &root.join("vat-build").display().to_string(),
        )
        .replace("../../vat", &root.join("vat").display().to_string());
    std::fs::write(&manifest, text).unwrap();
    // A fresh file id, as a user would make one.
    let id = Command::new(env!("CARGO_BIN_EXE_vat"))
        .args(["schema", "id"])
        .output()
        .unwrap();
    assert!(id.status.success());
    let id = String::from_utf8(id.stdout).unwrap();
    let schema = crate_dir.join("schema/teller.capnp");
    let text = std::fs::read_to_string(&schema).unwrap();
    let (_, rest) = text.split_once('\n').unwrap();
    std::fs::write(&schema, format!("{}\n{rest}", id.trim())).unwrap();
    // The versions the workspace builds with, so nothing is fetched.
    std::fs::copy(root.join("Cargo.lock"), crate_dir.join("Cargo.lock")).unwrap();

    // Its own target folder (cargo holds this workspace's while tests run),
    // kept between runs so that only the first one builds everything.
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("own-interface");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let ran = Command::new(cargo)
        .args(["run", "--offline", "--quiet"])
        .current_dir(&crate_dir)
        .env("CARGO_TARGET_DIR", &target)
        .env_remove("RUSTFLAGS")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&ran.stdout);
    let stderr = String::from_utf8_lossy(&ran.stderr);
    assert!(ran.status.success(), "{stdout}\n{stderr}");
    assert_eq!(
        stdout.trim(),
        "deposits answered 30 then 42; close: Err(Unimplemented)",
        "{stderr}"
    );
}
