//! A vat's identity key file: made once, kept private, refused when exposed
//! or malformed.

// Test scaffolding: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use captp::{Identity, IdentityError};

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn key_file(dir: &Path) -> std::path::PathBuf {
    dir.join(Identity::KEY_FILE)
}

#[test]
fn a_new_identity_is_written_owner_only_in_a_new_owner_only_folder() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("vat-data").join("alice");
    Identity::load_or_create(&dir).unwrap();
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&key_file(&dir)), 0o600);
    let entries: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert_eq!(
        entries,
        vec![Identity::KEY_FILE],
        "no temporary file is left"
    );
}

#[test]
fn load_or_create_returns_the_same_key_every_time() {
    let dir = tempfile::tempdir().unwrap();
    let first = Identity::load_or_create(dir.path()).unwrap();
    let second = Identity::load_or_create(dir.path()).unwrap();
    assert_eq!(first.public_key(), second.public_key());
    assert_ne!(
        first.public_key(),
        Identity::generate().unwrap().public_key()
    );
}

#[test]
fn the_key_file_is_pkcs8_pem() {
    let dir = tempfile::tempdir().unwrap();
    Identity::load_or_create(dir.path()).unwrap();
    let text = fs::read_to_string(key_file(dir.path())).unwrap();
    assert!(text.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{text}");
    assert!(
        text.trim_end().ends_with("-----END PRIVATE KEY-----"),
        "{text}"
    );
    // PKCS#8 v1 (version 0, no public key), which OpenSSL 3.0 reads: the
    // 48-byte DER of every ed25519 v1 key starts with these base64 digits.
    let body = text.lines().nth(1).unwrap();
    assert!(body.starts_with("MC4CAQAwBQYDK2VwBCIEI"), "{text}");
    assert_eq!(body.len(), 64, "{text}");
}

#[test]
fn a_key_file_readable_by_others_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    Identity::load_or_create(dir.path()).unwrap();
    let path = key_file(dir.path());
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    let error = Identity::load_or_create(dir.path()).unwrap_err();
    assert!(
        matches!(&error, IdentityError::Exposed { mode: 0o644, .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains("mode 0644"), "{message}");
    assert!(message.contains("chmod 600"), "{message}");
    assert!(message.contains(&path.display().to_string()), "{message}");
}

#[test]
fn a_key_file_open_to_the_group_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    Identity::load_or_create(dir.path()).unwrap();
    let path = key_file(dir.path());
    fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
    assert!(matches!(
        Identity::load_or_create(dir.path()),
        Err(IdentityError::Exposed { mode: 0o640, .. })
    ));
}

/// Writes `bytes` as the key file of a fresh folder, mode 0600.
fn folder_with_key_file(bytes: &[u8]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let path = key_file(dir.path());
    fs::write(&path, bytes).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    dir
}

fn malformed_finding(dir: &Path) -> String {
    match Identity::load_or_create(dir) {
        Err(error @ IdentityError::Malformed { .. }) => {
            let message = error.to_string();
            assert!(
                message.contains("is not an ed25519 private key in PKCS#8 PEM form"),
                "{message}"
            );
            message
        }
        other => panic!("expected a malformed key error, got {other:?}"),
    }
}

#[test]
fn a_truncated_key_file_is_refused_saying_what_was_found() {
    let source = tempfile::tempdir().unwrap();
    Identity::load_or_create(source.path()).unwrap();
    let whole = fs::read(key_file(source.path())).unwrap();
    let dir = folder_with_key_file(&whole[..whole.len() / 2]);
    let message = malformed_finding(dir.path());
    assert!(
        message.contains(&format!("a {}-byte PRIVATE KEY block", whole.len() / 2)),
        "{message}"
    );
    // The file is left as it was: a broken key is never silently replaced.
    assert_eq!(
        fs::read(key_file(dir.path())).unwrap(),
        &whole[..whole.len() / 2]
    );
}

#[test]
fn a_raw_32_byte_key_file_is_refused_as_binary() {
    let raw: Vec<u8> = (0..32u8).map(|i| 0x80 | i).collect();
    let dir = folder_with_key_file(&raw);
    let message = malformed_finding(dir.path());
    assert!(message.contains("32 bytes of binary data"), "{message}");
}

#[test]
fn an_empty_key_file_is_refused() {
    let dir = folder_with_key_file(b"");
    let message = malformed_finding(dir.path());
    assert!(message.ends_with("found an empty file"), "{message}");
}

#[test]
fn a_key_of_another_algorithm_is_refused() {
    // A P-256 key in PKCS#8 PEM: the right wrapping, the wrong algorithm.
    let p256 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let pem = pem_of(&p256.serialize_der());
    let dir = folder_with_key_file(pem.as_bytes());
    let message = malformed_finding(dir.path());
    assert!(
        message.contains("does not decode as an ed25519 key"),
        "{message}"
    );
}

#[test]
fn an_oversized_key_file_is_refused_unread() {
    let dir = folder_with_key_file(&vec![b'A'; 10_000]);
    let message = malformed_finding(dir.path());
    assert!(message.contains("more than 4096 bytes"), "{message}");
}

#[test]
fn a_directory_in_place_of_the_key_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(key_file(dir.path())).unwrap();
    fs::set_permissions(key_file(dir.path()), fs::Permissions::from_mode(0o700)).unwrap();
    let error = Identity::load_or_create(dir.path()).unwrap_err();
    assert!(
        matches!(
            error,
            IdentityError::NotAFile { .. } | IdentityError::Read { .. }
        ),
        "{error:?}"
    );
}

/// PEM "PRIVATE KEY" text for PKCS#8 DER bytes.
fn pem_of(der: &[u8]) -> String {
    use ed25519_dalek::pkcs8::spki::der::pem;
    pem::encode_string("PRIVATE KEY", pem::LineEnding::LF, der).unwrap()
}
