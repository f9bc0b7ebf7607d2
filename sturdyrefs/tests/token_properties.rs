//! Properties of the token format over many random tokens and damaged ones:
//! round trips, one spelling, no silent acceptance of a changed token,
//! rejected truncations, no panics, no secret in any error.

use std::collections::HashSet;
use std::net::{Ipv4Addr, Ipv6Addr};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sturdyrefs::{DnsName, Host, LocationHint, SturdyRef, SwissNumber, VatId};

fn rng() -> StdRng {
    StdRng::seed_from_u64(0x5713_d7ef)
}

fn random_label(rng: &mut StdRng, first_is_letter: bool) -> String {
    const INNER: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789-";
    const EDGE: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let len = rng.random_range(1..=12);
    (0..len)
        .map(|i| {
            let set = if i == 0 && first_is_letter {
                &EDGE[..26]
            } else if i == 0 || i == len - 1 {
                EDGE
            } else {
                INNER
            };
            char::from(set[rng.random_range(0..set.len())])
        })
        .collect()
}

#[allow(clippy::unwrap_used)]
fn random_host(rng: &mut StdRng) -> Host {
    match rng.random_range(0..3) {
        0 => Host::Ipv4(Ipv4Addr::from(rng.random::<u32>())),
        1 => {
            let mut segments = [0u16; 8];
            for segment in &mut segments {
                // Plenty of zero runs, so compressed forms get exercised.
                if rng.random_bool(0.6) {
                    *segment = rng.random();
                }
            }
            Host::Ipv6(Ipv6Addr::from(segments))
        }
        _ => {
            let labels = rng.random_range(1..=4);
            let mut parts: Vec<String> = (1..labels).map(|_| random_label(rng, false)).collect();
            parts.push(random_label(rng, true));
            Host::Dns(DnsName::new(&parts.join(".")).unwrap())
        }
    }
}

#[allow(clippy::unwrap_used)]
fn random_token(rng: &mut StdRng) -> SturdyRef {
    let vat = VatId::from_bytes(rng.random());
    let count = rng.random_range(1..=8);
    let mut hints: Vec<LocationHint> = Vec::new();
    while hints.len() < count {
        let hint = LocationHint::new(random_host(rng), rng.random_range(1..=u16::MAX)).unwrap();
        if !hints.contains(&hint) {
            hints.push(hint);
        }
    }
    SturdyRef::new(vat, hints, SwissNumber::from_bytes(rng.random())).unwrap()
}

/// Characters tried as replacements and insertions: all of ASCII and a
/// few multi-byte ones.
fn alphabet() -> Vec<char> {
    (0u8..=127)
        .map(char::from)
        .chain(['é', 'ß', '€', '\u{feff}', '𝔸'])
        .collect()
}

/// A valid token, and the check that damaged copies of it are refused or
/// differ from it.
struct Original {
    token: SturdyRef,
    text: String,
    /// Every 8-character stretch of the swiss number's text.
    secret_windows: HashSet<String>,
}

impl Original {
    fn new(token: SturdyRef) -> Original {
        let swiss = token.swiss().encode();
        let secret_windows = (0..=swiss.len() - 8)
            .map(|i| swiss[i..i + 8].to_owned())
            .collect();
        Original {
            text: token.to_string(),
            token,
            secret_windows,
        }
    }

    /// Parses `damaged`: if it is accepted it must differ from the
    /// original and be the one spelling of what it parsed to; if refused,
    /// the error must not quote the secret.
    fn check(&self, damaged: &str) {
        match SturdyRef::parse(damaged) {
            Ok(parsed) => {
                assert_ne!(
                    parsed, self.token,
                    "{damaged:?} silently equals the original"
                );
                assert_eq!(
                    parsed.to_string(),
                    damaged,
                    "accepted text is not canonical"
                );
            }
            Err(error) => {
                let shown = error.to_string();
                let quotes_secret = shown
                    .char_indices()
                    .filter_map(|(i, _)| shown.get(i..i + 8))
                    .any(|window| self.secret_windows.contains(window));
                assert!(!quotes_secret, "error quotes the secret: {shown}");
            }
        }
    }
}

#[test]
fn random_tokens_round_trip() {
    let mut rng = rng();
    for _ in 0..3000 {
        let token = random_token(&mut rng);
        let text = token.to_string();
        let parsed = SturdyRef::parse(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(parsed, token);
        assert_eq!(parsed.to_string(), text);
    }
}

#[test]
fn every_single_character_substitution_is_rejected_or_differs() {
    let mut rng = rng();
    let alphabet = alphabet();
    for _ in 0..8 {
        let original = Original::new(random_token(&mut rng));
        let text = &original.text;
        for (i, old) in text.char_indices() {
            for &new in &alphabet {
                if new == old {
                    continue;
                }
                let mut damaged = String::with_capacity(text.len() + 4);
                damaged.push_str(&text[..i]);
                damaged.push(new);
                damaged.push_str(&text[i + old.len_utf8()..]);
                original.check(&damaged);
            }
        }
    }
}

#[test]
fn every_single_character_deletion_or_insertion_is_rejected_or_differs() {
    let mut rng = rng();
    let alphabet = alphabet();
    for _ in 0..5 {
        let original = Original::new(random_token(&mut rng));
        let text = &original.text;
        for (i, old) in text.char_indices() {
            let deleted = format!("{}{}", &text[..i], &text[i + old.len_utf8()..]);
            original.check(&deleted);
            for &new in &alphabet {
                let inserted = format!("{}{new}{}", &text[..i], &text[i..]);
                original.check(&inserted);
            }
        }
    }
}

#[test]
fn every_truncation_is_rejected() {
    let mut rng = rng();
    for _ in 0..200 {
        let text = random_token(&mut rng).to_string();
        for len in 0..text.len() {
            assert!(
                SturdyRef::parse(&text[..len]).is_err(),
                "{:?} was accepted",
                &text[..len]
            );
            assert!(SturdyRef::parse(&text[len + 1..]).is_err());
        }
    }
}

#[test]
fn swapping_two_characters_never_yields_the_original() {
    let mut rng = rng();
    for _ in 0..3 {
        let original = Original::new(random_token(&mut rng));
        let bytes = original.text.as_bytes();
        for i in 0..bytes.len() {
            for j in i + 1..bytes.len() {
                if bytes[i] == bytes[j] {
                    continue;
                }
                let mut swapped = bytes.to_vec();
                swapped.swap(i, j);
                let swapped = String::from_utf8(swapped).unwrap();
                original.check(&swapped);
            }
        }
    }
}

#[test]
fn random_input_never_panics_and_anything_accepted_is_canonical() {
    let mut rng = rng();
    let alphabet = alphabet();
    // Pure noise, of every length up to past the bound.
    for _ in 0..3000 {
        let len = rng.random_range(0..2200);
        let bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        let text = String::from_utf8_lossy(&bytes);
        if let Ok(token) = SturdyRef::parse(&text) {
            assert_eq!(token.to_string(), text);
        }
    }
    // Valid tokens with several random edits.
    for _ in 0..10000 {
        let token = random_token(&mut rng);
        let mut chars: Vec<char> = token.to_string().chars().collect();
        for _ in 0..rng.random_range(1..6) {
            let at = rng.random_range(0..=chars.len());
            let c = alphabet[rng.random_range(0..alphabet.len())];
            match rng.random_range(0..3) {
                0 if at < chars.len() => chars[at] = c,
                1 if at < chars.len() => {
                    chars.remove(at);
                }
                _ => chars.insert(at, c),
            }
        }
        let text: String = chars.into_iter().collect();
        if let Ok(parsed) = SturdyRef::parse(&text) {
            assert_eq!(parsed.to_string(), text);
        }
    }
}
