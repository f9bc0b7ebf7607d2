//! Every way a token can be wrong gets its own, precise error.

use sturdyrefs::{
    HintError, LocationHint, ParseError, SturdyRef, SwissError, SwissNumber, TokenError, VatId,
    VatIdError, MAX_HINTS, MAX_TOKEN_LEN,
};

/// The vat id of key bytes [7; 32].
const VAT: &str = "a4dqobyha4dqobyha4dqobyha4dqobyha4dqobyha4dqobyha4dq";

/// The swiss number of bytes [0xde, 0xad, ...].
const SWISS: &str = "3q2-7wY1sAbW4qL0rT9vXnPz8mKcHd5eFgJhIiOuRyE";

/// Where the hints start in a token built by `token`.
const HINTS_START: usize = 8 + 52 + 1;

fn token(hints: &str, swiss: &str) -> String {
    format!("captp://{VAT}@{hints}/{swiss}")
}

fn err(text: &str) -> ParseError {
    match SturdyRef::parse(text) {
        Ok(token) => panic!("{text:?} parsed as {token:?}"),
        Err(error) => error,
    }
}

#[test]
fn a_good_token_parses_and_prints_back_the_same() {
    let text = token(
        "192.0.2.7:4000,[2001:db8::7]:4000,vat.example.org:4000",
        SWISS,
    );
    let parsed = SturdyRef::parse(&text).unwrap();
    assert_eq!(parsed.vat(), &VatId::from_bytes([7; 32]));
    assert_eq!(parsed.hints().len(), 3);
    assert_eq!(parsed.swiss(), &SwissNumber::parse(SWISS).unwrap());
    assert_eq!(parsed.to_string(), text);
}

#[test]
fn the_example_in_the_crate_docs_parses() {
    let text = "captp://2a3b5hx7ehpmwpwydlmukalbpz3quomvyyskoqs2bmkgiedshbfa@192.0.2.7:4000,\
                [2001:db8::7]:4000,vat.example.org:4000/3q2-7wY1sAbW4qL0rT9vXnPz8mKcHd5eFgJhIiOuRyE";
    assert_eq!(SturdyRef::parse(text).unwrap().to_string(), text);
}

#[test]
fn empty_and_too_long() {
    assert_eq!(err(""), ParseError::Empty);
    let long = format!("{}{}", token("h:1", SWISS), "A".repeat(MAX_TOKEN_LEN));
    assert_eq!(
        err(&long),
        ParseError::TooLong {
            len: long.len(),
            max: MAX_TOKEN_LEN
        }
    );
    // The bound is checked before anything else, however long the input.
    let huge = "x".repeat(10 * 1024 * 1024);
    assert!(matches!(err(&huge), ParseError::TooLong { .. }));
}

#[test]
fn wrong_scheme_names_the_scheme_found() {
    let text = token("h:1", SWISS);
    assert_eq!(
        err(&text.replacen("captp", "https", 1)),
        ParseError::WrongScheme {
            found: Some("https".into())
        }
    );
    assert_eq!(
        err(&text.replacen("captp", "CAPTP", 1)),
        ParseError::WrongScheme {
            found: Some("CAPTP".into())
        }
    );
    assert_eq!(
        err(&text.replacen("captp://", "captp:/", 1)),
        ParseError::WrongScheme { found: None }
    );
    assert_eq!(
        err(&format!(" {text}")),
        ParseError::WrongScheme { found: None }
    );
    // A bare swiss number is not quoted back.
    assert_eq!(err(SWISS), ParseError::WrongScheme { found: None });
    assert!(!err(SWISS).to_string().contains(&SWISS[..8]));
}

#[test]
fn missing_vat_id() {
    assert_eq!(
        err(&format!("captp://@h:1/{SWISS}")),
        ParseError::MissingVatId
    );
    assert_eq!(
        err(&format!("captp://h:1/{SWISS}")),
        ParseError::MissingVatId
    );
    assert_eq!(err("captp://"), ParseError::MissingVatId);
}

#[test]
fn bad_vat_id_wrong_length_or_character_at_a_position() {
    assert_eq!(
        err(&format!("captp://{}@h:1/{SWISS}", &VAT[..51])),
        ParseError::VatId {
            start: 8,
            error: VatIdError::Length {
                found: 51,
                expected: 52
            }
        }
    );
    let mut bad = VAT.to_owned();
    bad.replace_range(10..11, "8");
    assert_eq!(
        err(&format!("captp://{bad}@h:1/{SWISS}")),
        ParseError::VatId {
            start: 8,
            error: VatIdError::BadChar {
                position: 10,
                ch: '8'
            }
        }
    );
    let upper = VAT.to_uppercase();
    assert_eq!(
        err(&format!("captp://{upper}@h:1/{SWISS}")),
        ParseError::VatId {
            start: 8,
            error: VatIdError::Uppercase {
                position: 0,
                ch: 'A'
            }
        }
    );
    let mut noncanonical = VAT.to_owned();
    noncanonical.replace_range(51..52, "r");
    assert_eq!(
        err(&format!("captp://{noncanonical}@h:1/{SWISS}")),
        ParseError::VatId {
            start: 8,
            error: VatIdError::NonCanonical { position: 51 }
        }
    );
    let message = err(&format!("captp://{bad}@h:1/{SWISS}")).to_string();
    assert_eq!(
        message,
        "bad vat id at position 8: bad character '8' at position 10 of the vat id: \
         lowercase base32 allows only a-z and 2-7"
    );
}

#[test]
fn no_hints_and_too_many() {
    assert_eq!(err(&token("", SWISS)), ParseError::NoHints);
    let nine: Vec<String> = (1..=9).map(|p| format!("h:{p}")).collect();
    assert_eq!(
        err(&token(&nine.join(","), SWISS)),
        ParseError::TooManyHints {
            count: 9,
            max: MAX_HINTS
        }
    );
    let eight = nine[..8].join(",");
    assert_eq!(
        SturdyRef::parse(&token(&eight, SWISS))
            .unwrap()
            .hints()
            .len(),
        8
    );
}

#[test]
fn bad_hints_say_which_and_why() {
    let cases: &[(&str, usize, usize, HintError)] = &[
        ("h", 0, 0, HintError::MissingPort),
        ("a:1,h", 1, 4, HintError::MissingPort),
        ("a:1,,b:2", 1, 4, HintError::Empty),
        ("h:0", 0, 0, HintError::PortOutOfRange),
        ("h:65536", 0, 0, HintError::PortOutOfRange),
        ("h:01", 0, 0, HintError::PortLeadingZero),
        (
            "h:x",
            0,
            0,
            HintError::BadPort {
                position: 2,
                ch: 'x',
            },
        ),
        (
            "a:1,b:2,ba_d:3",
            2,
            8,
            HintError::BadHostChar {
                position: 2,
                ch: '_',
            },
        ),
        ("[::1:80", 0, 0, HintError::UnclosedBracket),
        ("::1:80", 0, 0, HintError::UnbracketedIpv6),
        ("300.1.1.1:80", 0, 0, HintError::BadIpv4),
        (
            "Host:80",
            0,
            0,
            HintError::UppercaseHost {
                position: 0,
                ch: 'H',
            },
        ),
    ];
    for (hints, index, offset, reason) in cases {
        assert_eq!(
            err(&token(hints, SWISS)),
            ParseError::BadHint {
                index: *index,
                start: HINTS_START + offset,
                reason: reason.clone()
            },
            "{hints}"
        );
    }
    assert_eq!(
        err(&token("a:1,h", SWISS)).to_string(),
        "bad location hint #2 at position 65: missing port: write host:port"
    );
}

#[test]
fn repeated_hints_are_refused() {
    assert_eq!(
        err(&token("a:1,b:2,a:1", SWISS)),
        ParseError::DuplicateHint { index: 2, first: 0 }
    );
    // Same address, other port: not a repeat.
    assert!(SturdyRef::parse(&token("a:1,a:2", SWISS)).is_ok());
}

#[test]
fn missing_swiss_number() {
    assert_eq!(err(&format!("captp://{VAT}@h:1")), ParseError::MissingSwiss);
    assert_eq!(
        err(&format!("captp://{VAT}@h:1/")),
        ParseError::MissingSwiss
    );
}

#[test]
fn bad_swiss_number_length_or_character() {
    let start = HINTS_START + 4;
    assert_eq!(
        err(&token("h:1", &SWISS[..42])),
        ParseError::Swiss {
            start,
            error: SwissError::Length {
                found: 42,
                expected: 43
            }
        }
    );
    assert_eq!(
        err(&token("h:1", &format!("{SWISS}A"))),
        ParseError::Swiss {
            start,
            error: SwissError::Length {
                found: 44,
                expected: 43
            }
        }
    );
    let mut bad = SWISS.to_owned();
    bad.replace_range(5..6, "+");
    assert_eq!(
        err(&token("h:1", &bad)),
        ParseError::Swiss {
            start,
            error: SwissError::BadChar {
                position: 5,
                ch: '+'
            }
        }
    );
    let mut noncanonical = SWISS.to_owned();
    noncanonical.replace_range(42..43, "F");
    assert_eq!(
        err(&token("h:1", &noncanonical)),
        ParseError::Swiss {
            start,
            error: SwissError::NonCanonical { position: 42 }
        }
    );
}

#[test]
fn trailing_garbage_after_the_swiss_number() {
    let start = HINTS_START + 4;
    for tail in ["/", "?x=1", "#frag", " ", "\n", "=", "/more"] {
        assert_eq!(
            err(&format!("{}{tail}", token("h:1", SWISS))),
            ParseError::TrailingGarbage {
                position: start + 43
            },
            "{tail:?}"
        );
    }
}

#[test]
fn building_a_sturdyref_checks_what_the_parser_checks() {
    let vat = VatId::from_bytes([7; 32]);
    let swiss = || SwissNumber::from_bytes([1; 32]);
    let hint = |p: u16| LocationHint::parse(&format!("h:{p}")).unwrap();
    assert_eq!(
        SturdyRef::new(vat, vec![], swiss()),
        Err(TokenError::NoHints)
    );
    assert_eq!(
        SturdyRef::new(vat, (1..=9).map(hint).collect(), swiss()),
        Err(TokenError::TooManyHints { count: 9, max: 8 })
    );
    assert_eq!(
        SturdyRef::new(vat, vec![hint(1), hint(1)], swiss()),
        Err(TokenError::DuplicateHint { index: 1, first: 0 })
    );
    let long_name = |i: u16| {
        let label = "a".repeat(60);
        LocationHint::parse(&format!("{label}.{label}.{label}.{label}:{}", 10000 + i)).unwrap()
    };
    assert!(matches!(
        SturdyRef::new(vat, (0..8).map(long_name).collect(), swiss()),
        Err(TokenError::TooLong { max: 2048, .. })
    ));
    let fits = SturdyRef::new(vat, (0..7).map(long_name).collect(), swiss()).unwrap();
    assert_eq!(SturdyRef::parse(&fits.to_string()).unwrap(), fits);
}

#[test]
fn debug_of_a_sturdyref_hides_the_swiss_number() {
    let parsed = SturdyRef::parse(&token("h:1", SWISS)).unwrap();
    let shown = format!("{parsed:?}");
    assert!(shown.contains("h"));
    assert!(!shown.contains(SWISS), "{shown}");
    assert!(!shown.contains(&SWISS[..8]), "{shown}");
}
