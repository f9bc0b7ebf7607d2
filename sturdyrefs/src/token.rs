//! Sturdyrefs and their text form (see the crate documentation for the
//! format).

use std::fmt;
use std::str::FromStr;

use crate::error::{ParseError, TokenError};
use crate::hint::LocationHint;
use crate::swiss::{is_base64url, SwissNumber};
use crate::vat_id::VatId;

/// What every token starts with.
pub const SCHEME: &str = "captp://";

/// The longest token, in bytes. Longer text is refused before it is read.
pub const MAX_TOKEN_LEN: usize = 2048;

/// The most location hints one token may carry.
pub const MAX_HINTS: usize = 8;

/// How much of an unknown scheme an error quotes.
const MAX_QUOTED_SCHEME: usize = 16;

/// A durable reference to one object in one vat: the vat's id, where the
/// vat may be reached, and the swiss number that names the object there.
///
/// `Display` writes the token's text and `FromStr` reads it back (see the
/// crate documentation for the format); each sturdyref has one spelling.
/// The text holds the secret, so treat it like a password. `Debug` shows
/// the vat and the hints but never the swiss number.
#[derive(Clone, PartialEq, Eq)]
pub struct SturdyRef {
    vat: VatId,
    hints: Vec<LocationHint>,
    swiss: SwissNumber,
}

impl SturdyRef {
    /// A sturdyref to the object named `swiss` in vat `vat`, reachable at
    /// `hints` (in order of preference). Refuses what could not be written
    /// as a valid token: no hints, more than [`MAX_HINTS`], a repeated hint,
    /// or text longer than [`MAX_TOKEN_LEN`].
    pub fn new(
        vat: VatId,
        hints: Vec<LocationHint>,
        swiss: SwissNumber,
    ) -> Result<SturdyRef, TokenError> {
        if hints.is_empty() {
            return Err(TokenError::NoHints);
        }
        if hints.len() > MAX_HINTS {
            return Err(TokenError::TooManyHints {
                count: hints.len(),
                max: MAX_HINTS,
            });
        }
        if let Some((index, first)) = first_duplicate(&hints) {
            return Err(TokenError::DuplicateHint { index, first });
        }
        let token = SturdyRef { vat, hints, swiss };
        let len = token.text_len();
        if len > MAX_TOKEN_LEN {
            return Err(TokenError::TooLong {
                len,
                max: MAX_TOKEN_LEN,
            });
        }
        Ok(token)
    }

    /// The vat the object lives in.
    pub fn vat(&self) -> &VatId {
        &self.vat
    }

    /// Where the vat may be reached, in order of preference; never empty.
    pub fn hints(&self) -> &[LocationHint] {
        &self.hints
    }

    /// The secret that names the object in its vat.
    pub fn swiss(&self) -> &SwissNumber {
        &self.swiss
    }

    /// Parses a token, naming exactly what is wrong if it is not one. The
    /// text is taken as it is: surrounding whitespace is an error.
    pub fn parse(text: &str) -> Result<SturdyRef, ParseError> {
        if text.is_empty() {
            return Err(ParseError::Empty);
        }
        if text.len() > MAX_TOKEN_LEN {
            return Err(ParseError::TooLong {
                len: text.len(),
                max: MAX_TOKEN_LEN,
            });
        }
        let Some(rest) = text.strip_prefix(SCHEME) else {
            return Err(ParseError::WrongScheme {
                found: quoted_scheme(text),
            });
        };
        let mut position = SCHEME.len();

        let (authority, path) = match rest.split_once('/') {
            Some((authority, path)) => (authority, Some(path)),
            None => (rest, None),
        };
        let Some((vat_text, hints_text)) = authority.split_once('@') else {
            return Err(ParseError::MissingVatId);
        };
        if vat_text.is_empty() {
            return Err(ParseError::MissingVatId);
        }
        let vat = VatId::parse(vat_text).map_err(|error| ParseError::VatId {
            start: position,
            error,
        })?;
        position += vat_text.len() + 1;

        let hints = parse_hints(hints_text, position)?;
        position += hints_text.len() + 1;

        let swiss = match path {
            None | Some("") => return Err(ParseError::MissingSwiss),
            Some(path) => parse_swiss(path, position)?,
        };
        Ok(SturdyRef { vat, hints, swiss })
    }

    /// The length of the token's text, in bytes.
    fn text_len(&self) -> usize {
        let hints: usize = self.hints.iter().map(|h| h.to_string().len() + 1).sum();
        SCHEME.len() + VatId::TEXT_LEN + hints + SwissNumber::TEXT_LEN
    }
}

/// The first hint that repeats an earlier one, as (its index, the earlier
/// one's index).
fn first_duplicate(hints: &[LocationHint]) -> Option<(usize, usize)> {
    hints.iter().enumerate().find_map(|(index, hint)| {
        hints[..index]
            .iter()
            .position(|earlier| earlier == hint)
            .map(|first| (index, first))
    })
}

/// Parses the comma-separated hints between `@` and `/`.
/// `start` is where they start in the token.
fn parse_hints(text: &str, start: usize) -> Result<Vec<LocationHint>, ParseError> {
    if text.is_empty() {
        return Err(ParseError::NoHints);
    }
    let count = text.split(',').count();
    if count > MAX_HINTS {
        return Err(ParseError::TooManyHints {
            count,
            max: MAX_HINTS,
        });
    }
    let mut hints = Vec::with_capacity(count);
    let mut hint_start = start;
    for (index, hint_text) in text.split(',').enumerate() {
        let hint = LocationHint::parse(hint_text).map_err(|reason| ParseError::BadHint {
            index,
            start: hint_start,
            reason,
        })?;
        hint_start += hint_text.len() + 1;
        if let Some(first) = hints.iter().position(|earlier| earlier == &hint) {
            return Err(ParseError::DuplicateHint { index, first });
        }
        hints.push(hint);
    }
    Ok(hints)
}

/// Parses the path after the last `/`: the swiss number, and nothing after
/// it. `start` is where the path starts in the token.
fn parse_swiss(path: &str, start: usize) -> Result<SwissNumber, ParseError> {
    let run = path
        .char_indices()
        .find(|&(_, c)| !is_base64url(c))
        .map_or(path.len(), |(i, _)| i);
    if run == SwissNumber::TEXT_LEN && run < path.len() {
        return Err(ParseError::TrailingGarbage {
            position: start + run,
        });
    }
    SwissNumber::parse(path).map_err(|error| ParseError::Swiss { start, error })
}

/// The scheme a wrong token names, if it starts with `name://` and the
/// name looks like a URI scheme; other text is not quoted, as it may be a
/// bare secret.
fn quoted_scheme(text: &str) -> Option<String> {
    let (name, _) = text.split_once("://")?;
    let looks_like_scheme = !name.is_empty()
        && name.len() <= MAX_QUOTED_SCHEME
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    looks_like_scheme.then(|| name.to_owned())
}

impl fmt::Display for SturdyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEME}{}@", self.vat)?;
        for (i, hint) in self.hints.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{hint}")?;
        }
        write!(f, "/{}", self.swiss.encode().as_str())
    }
}

impl fmt::Debug for SturdyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SturdyRef")
            .field("vat", &self.vat)
            .field("hints", &self.hints)
            .field("swiss", &self.swiss)
            .finish()
    }
}

impl FromStr for SturdyRef {
    type Err = ParseError;

    fn from_str(text: &str) -> Result<SturdyRef, ParseError> {
        SturdyRef::parse(text)
    }
}
