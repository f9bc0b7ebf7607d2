//! What can be wrong with a token's text, each case named precisely.
//!
//! No error here ever quotes a swiss number: errors end up in logs, and a
//! logged secret is a leaked one. In a damaged token the secret can slide
//! into any part (a `/` turned into `,` makes it a "hint"), so errors quote
//! no stretch of the input at all: they give positions, single offending
//! characters (which, not being in the secret's alphabet, are not part of
//! it), and the name of a wrong scheme.

use thiserror::Error;

/// Why some text is not a [`VatId`](crate::VatId).
///
/// Positions count bytes from the start of the vat id's text.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum VatIdError {
    /// The text is not 52 characters long.
    #[error("a vat id is {expected} characters of lowercase base32, found {found}")]
    Length {
        /// How many bytes the text has.
        found: usize,
        /// How many it must have: 52.
        expected: usize,
    },
    /// An uppercase letter: vat ids are spelled in lowercase only.
    #[error(
        "uppercase {ch:?} at position {position} of the vat id: vat ids are lowercase \
         (one vat, one spelling)"
    )]
    Uppercase {
        /// Where the letter is.
        position: usize,
        /// The letter.
        ch: char,
    },
    /// A character outside the lowercase base32 alphabet `a-z2-7`.
    #[error(
        "bad character {ch:?} at position {position} of the vat id: \
         lowercase base32 allows only a-z and 2-7"
    )]
    BadChar {
        /// Where the character is.
        position: usize,
        /// The character.
        ch: char,
    },
    /// The last character carries bits beyond the 256 of a key, so the text
    /// is another spelling of some vat id rather than the one spelling.
    #[error(
        "the vat id's last character (position {position}) sets bits beyond the key's 256: \
         not the canonical spelling"
    )]
    NonCanonical {
        /// Where the last character is.
        position: usize,
    },
}

/// Why some text is not a [`SwissNumber`](crate::SwissNumber).
///
/// Positions count bytes from the start of the swiss number's text.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SwissError {
    /// The text is not 43 characters long.
    #[error("a swiss number is {expected} characters of unpadded base64url, found {found}")]
    Length {
        /// How many bytes the text has.
        found: usize,
        /// How many it must have: 43.
        expected: usize,
    },
    /// A character outside the base64url alphabet `A-Za-z0-9-_`.
    #[error(
        "bad character {ch:?} at position {position} of the swiss number: \
         base64url allows only A-Z, a-z, 0-9, '-' and '_'"
    )]
    BadChar {
        /// Where the character is.
        position: usize,
        /// The character.
        ch: char,
    },
    /// The last character carries bits beyond the 256 of a swiss number.
    #[error(
        "the swiss number's last character (position {position}) sets bits beyond its 256: \
         not the canonical spelling"
    )]
    NonCanonical {
        /// Where the last character is.
        position: usize,
    },
}

/// Why some text is not a [`LocationHint`](crate::LocationHint) (`host:port`).
///
/// Positions count bytes from the start of the hint. No variant quotes the
/// hint's text: in a damaged token the secret may have slid into a hint.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HintError {
    /// Nothing between two commas, or nothing at all.
    #[error("empty hint")]
    Empty,
    /// No `:port` after the host.
    #[error("missing port: write host:port")]
    MissingPort,
    /// A character in the port that is not a decimal digit.
    #[error("bad character {ch:?} in the port at position {position}: ports are decimal")]
    BadPort {
        /// Where the character is.
        position: usize,
        /// The character.
        ch: char,
    },
    /// The port has a leading zero: ports are spelled without them.
    #[error("the port has a leading zero")]
    PortLeadingZero,
    /// The port is 0 or above 65535.
    #[error("the port is out of range 1-65535")]
    PortOutOfRange,
    /// An IPv6 address without the square brackets around it.
    #[error("an IPv6 address must be in square brackets: [addr]:port")]
    UnbracketedIpv6,
    /// A `[` with no matching `]`.
    #[error("'[' without a closing ']'")]
    UnclosedBracket,
    /// Something other than `:port` right after `]`.
    #[error("expected ':port' right after ']'")]
    AfterBracket,
    /// The text in brackets is not an IPv6 address.
    #[error("the text in brackets is not an IPv6 address")]
    BadIpv6,
    /// An IPv6 address not in its canonical (RFC 5952) spelling.
    #[error("the IPv6 address is not in canonical form: write [{canonical}]")]
    NonCanonicalIpv6 {
        /// How to write it.
        canonical: String,
    },
    /// Digits and dots that are not a canonical IPv4 address (a name's last
    /// label may not be all digits, so this cannot be a DNS name either).
    #[error("not a valid IPv4 address: four decimal numbers 0-255, no leading zeros")]
    BadIpv4,
    /// The host is empty.
    #[error("empty host")]
    EmptyHost,
    /// An uppercase letter in a DNS name: hosts are spelled in lowercase.
    #[error(
        "uppercase {ch:?} in the host at position {position}: DNS names are written in \
         lowercase (one spelling)"
    )]
    UppercaseHost {
        /// Where the letter is.
        position: usize,
        /// The letter.
        ch: char,
    },
    /// A character that no DNS name may hold.
    #[error(
        "bad character {ch:?} in the host at position {position}: DNS names allow a-z, 0-9, \
         '-' and '.'"
    )]
    BadHostChar {
        /// Where the character is.
        position: usize,
        /// The character.
        ch: char,
    },
    /// Two dots in a row, or a dot at either end of the name.
    #[error("empty label in the DNS name (two dots in a row, or a dot at the start or end)")]
    EmptyLabel,
    /// A label longer than 63 bytes.
    #[error("a DNS label of {len} bytes, longer than 63")]
    LabelTooLong {
        /// The label's length.
        len: usize,
    },
    /// A label starting or ending with `-`.
    #[error("the DNS label at position {position} starts or ends with '-'")]
    LabelHyphen {
        /// Where the label starts.
        position: usize,
    },
    /// A name longer than 253 bytes.
    #[error("a DNS name of {len} bytes, longer than 253")]
    HostTooLong {
        /// The name's length.
        len: usize,
    },
}

/// Why a piece of text is not a sturdyref token.
///
/// Positions count bytes from the start of the token.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParseError {
    /// The text is empty.
    #[error("empty token")]
    Empty,
    /// The text is longer than any token may be.
    #[error("token of {len} bytes is longer than the {max} allowed")]
    TooLong {
        /// The text's length.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// The text does not start with `captp://`.
    #[error(
        "wrong scheme: a token starts with `captp://` (lowercase), found {}",
        .found.as_deref().map_or_else(|| "no scheme".to_owned(), |s| format!("`{s}://`"))
    )]
    WrongScheme {
        /// The scheme the text names instead, if it starts with one
        /// (`name://`, the name at most 16 letters, digits, `+`, `-` or
        /// `.`). Other text is not quoted: it may be a bare secret.
        found: Option<String>,
    },
    /// No `<vat-id>@` after the scheme.
    #[error("missing vat id: expected `captp://<vat-id>@<host:port>/...`")]
    MissingVatId,
    /// The vat id is not a vat id.
    #[error("bad vat id at position {start}: {error}")]
    VatId {
        /// Where the vat id starts in the token.
        start: usize,
        /// What is wrong with it.
        error: VatIdError,
    },
    /// Nothing between `@` and `/`.
    #[error("no location hints: expected at least one host:port after '@'")]
    NoHints,
    /// More hints than a token may carry.
    #[error("{count} location hints, more than the {max} allowed")]
    TooManyHints {
        /// How many there are.
        count: usize,
        /// The bound.
        max: usize,
    },
    /// One of the hints is not `host:port`.
    #[error("bad location hint #{} at position {start}: {reason}", index + 1)]
    BadHint {
        /// Which hint, counting from 0.
        index: usize,
        /// Where it starts in the token (its text is not quoted: in a
        /// damaged token the secret may have slid into a hint).
        start: usize,
        /// What is wrong with it.
        reason: HintError,
    },
    /// The same hint twice.
    #[error("location hint #{} repeats hint #{}", index + 1, first + 1)]
    DuplicateHint {
        /// Which hint, counting from 0.
        index: usize,
        /// The earlier hint it repeats, counting from 0.
        first: usize,
    },
    /// No `/<swiss-number>` after the hints.
    #[error("missing swiss number: expected '/' and 43 characters of base64url after the hints")]
    MissingSwiss,
    /// The swiss number is not a swiss number.
    #[error("bad swiss number at position {start}: {error}")]
    Swiss {
        /// Where the swiss number starts in the token.
        start: usize,
        /// What is wrong with it.
        error: SwissError,
    },
    /// Text after a complete swiss number.
    #[error("trailing garbage at position {position}, after the swiss number")]
    TrailingGarbage {
        /// Where the unexpected text starts.
        position: usize,
    },
}

/// Why a [`SturdyRef`](crate::SturdyRef) cannot be built from its parts.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TokenError {
    /// No location hints.
    #[error("a sturdyref needs at least one location hint")]
    NoHints,
    /// More hints than a token may carry.
    #[error("{count} location hints, more than the {max} allowed")]
    TooManyHints {
        /// How many were given.
        count: usize,
        /// The bound.
        max: usize,
    },
    /// The same hint twice.
    #[error("location hint #{} repeats hint #{}", index + 1, first + 1)]
    DuplicateHint {
        /// Which hint, counting from 0.
        index: usize,
        /// The earlier hint it repeats, counting from 0.
        first: usize,
    },
    /// The token's text would be longer than any token may be.
    #[error("the token would be {len} bytes, longer than the {max} allowed")]
    TooLong {
        /// The text's length.
        len: usize,
        /// The bound.
        max: usize,
    },
}
