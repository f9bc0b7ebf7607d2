//! `vat schema id`: a fresh Cap'n Proto file id, so that writing a crate's
//! own `.capnp` file needs no system `capnp` (whose `capnp id` does this).

/// A random 64-bit file id with its high bit set (the format requires it),
/// as the line a schema file starts with: `@0x…;`.
pub fn file_id() -> String {
    let id = rand::random::<u64>() | (1 << 63);
    format!("@0x{id:016x};")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // unit tests: a panic is a failed test

    use super::file_id;

    #[test]
    fn a_file_id_has_its_high_bit_set_and_differs_each_time() {
        let (a, b) = (file_id(), file_id());
        assert_ne!(a, b);
        for id in [a, b] {
            assert!(id.starts_with("@0x") && id.ends_with(';'), "{id}");
            let hex = &id[3..id.len() - 1];
            assert_eq!(hex.len(), 16, "{id}");
            assert!(u64::from_str_radix(hex, 16).unwrap() >= 1 << 63, "{id}");
        }
    }
}
