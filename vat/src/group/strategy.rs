//! How the call-one face picks a member: by strategy, or by the caller's key.

/// How a group picks the member that serves a call made on its call-one
/// face ([`Group::client`](super::Group::client)).
///
/// Calls on a keyed view ([`Group::with_key`](super::Group::with_key)) do
/// not use the strategy: they go to the member their key hashes to.
///
/// ```
/// use vat::group::Strategy;
/// assert_eq!(Strategy::default(), Strategy::RoundRobin);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// Each reachable member in turn, in the order they joined: `N` calls
    /// over `k` members give each exactly `N / k` (±1).
    #[default]
    RoundRobin,
    /// A reachable member drawn uniformly at random for each call.
    Random,
    /// The reachable member with the fewest calls in flight (sent through
    /// the group and not answered yet); ties go round-robin. A slow member
    /// keeps its calls longer, so it gets fewer new ones.
    LeastInFlight,
}

/// The 64-bit hash of a caller's key (FNV-1a): the same in every process
/// and release, so a key reaches the same member wherever it is hashed.
pub(crate) fn hash_key(key: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    key.iter()
        .fold(OFFSET, |h, byte| (h ^ u64::from(*byte)).wrapping_mul(PRIME))
}

/// The weight of `member` for `key` in rendezvous hashing: a call goes to
/// the member of highest weight, so when a member leaves only its own keys
/// move, and a new member takes about `1 / k` of the keys.
pub(crate) fn rendezvous(key: u64, member: u64) -> u64 {
    // splitmix64's finaliser: a good spread for adjacent member ids.
    let mut z = key ^ member.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_hashes_are_fixed() {
        // FNV-1a's published test vector: the hash must never change.
        assert_eq!(hash_key(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn rendezvous_spreads_keys_and_moves_only_a_leaving_members_keys() {
        let owner = |members: &[u64], key: u64| {
            members
                .iter()
                .copied()
                .max_by_key(|m| rendezvous(key, *m))
                .unwrap_or(0)
        };
        let all = [1, 2, 3, 4];
        let mut counts = [0usize; 5];
        let mut moved = 0;
        for k in 0..4000u64 {
            let key = hash_key(&k.to_le_bytes());
            let before = owner(&all, key);
            counts[before as usize] += 1;
            let after = owner(&[1, 2, 4], key);
            if before != 3 {
                assert_eq!(before, after, "a key of a member that stayed moved");
            } else {
                moved += 1;
            }
        }
        for count in &counts[1..] {
            assert!((800..1200).contains(count), "{counts:?}");
        }
        assert_eq!(moved, counts[3]);
    }
}
