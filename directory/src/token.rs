//! The directory token: one text naming every member and a facet's swiss
//! number, `vatdir://<vat-id>@<hint>[,<hint>]+<vat-id>@<hint>.../<swiss>`.
//!
//! Each member part is a sturdyref's authority (`captp://` without the
//! scheme), so the token is the sturdyrefs `captp://<member>/<swiss>` of
//! every member, written once. docs/PROTOCOL.md ("The directory token").

use std::fmt;
use std::str::FromStr;

use sturdyrefs::{LocationHint, ParseError, SturdyRef, SwissNumber, TokenError, VatId};

/// The scheme.
pub const SCHEME: &str = "vatdir://";
/// The most members a token names.
pub const MAX_MEMBERS: usize = 9;

/// A facet of the directory, and every member that serves it.
#[derive(Clone, PartialEq, Eq)]
pub struct DirectoryToken {
    members: Vec<SturdyRef>,
}

/// Why a text is not a directory token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DirectoryTokenError {
    /// It does not start with `vatdir://`.
    #[error("a directory token starts with {SCHEME}")]
    WrongScheme,
    /// No `/<swiss>` at the end.
    #[error("a directory token ends with /<swiss number>")]
    MissingSwiss,
    /// No member, or more than [`MAX_MEMBERS`].
    #[error("a directory token names 1 to {max} members; this one names {count}")]
    Members {
        /// How many it names.
        count: usize,
        /// The bound.
        max: usize,
    },
    /// The same vat twice.
    #[error("member {index} is the same vat as member {first}")]
    DuplicateMember {
        /// The later one, from 0.
        index: usize,
        /// The first one.
        first: usize,
    },
    /// One member's part is not a sturdyref authority.
    #[error("member {index}: {error}")]
    Member {
        /// Which, from 0.
        index: usize,
        /// What is wrong, as for a sturdyref.
        error: ParseError,
    },
    /// A member with no or too many hints.
    #[error("member {index}: {error}")]
    Hints {
        /// Which, from 0.
        index: usize,
        /// What is wrong.
        error: TokenError,
    },
}

impl DirectoryToken {
    /// The token naming `members` (vat and hints) for the facet `swiss`.
    pub fn new(
        members: &[(VatId, Vec<LocationHint>)],
        swiss: &SwissNumber,
    ) -> Result<DirectoryToken, DirectoryTokenError> {
        let refs = members
            .iter()
            .enumerate()
            .map(|(index, (vat, hints))| {
                SturdyRef::new(*vat, hints.clone(), swiss.clone())
                    .map_err(|error| DirectoryTokenError::Hints { index, error })
            })
            .collect::<Result<Vec<_>, _>>()?;
        DirectoryToken::from_refs(refs)
    }

    fn from_refs(members: Vec<SturdyRef>) -> Result<DirectoryToken, DirectoryTokenError> {
        if members.is_empty() || members.len() > MAX_MEMBERS {
            return Err(DirectoryTokenError::Members {
                count: members.len(),
                max: MAX_MEMBERS,
            });
        }
        for (index, member) in members.iter().enumerate() {
            if let Some(first) = members[..index]
                .iter()
                .position(|m| m.vat() == member.vat())
            {
                return Err(DirectoryTokenError::DuplicateMember { index, first });
            }
        }
        Ok(DirectoryToken { members })
    }

    /// Parses the text form.
    pub fn parse(text: &str) -> Result<DirectoryToken, DirectoryTokenError> {
        let rest = text
            .strip_prefix(SCHEME)
            .ok_or(DirectoryTokenError::WrongScheme)?;
        let (authorities, swiss) = rest
            .rsplit_once('/')
            .ok_or(DirectoryTokenError::MissingSwiss)?;
        if swiss.is_empty() {
            return Err(DirectoryTokenError::MissingSwiss);
        }
        let parts: Vec<&str> = authorities.split('+').collect();
        if parts.len() > MAX_MEMBERS {
            return Err(DirectoryTokenError::Members {
                count: parts.len(),
                max: MAX_MEMBERS,
            });
        }
        let members = parts
            .iter()
            .enumerate()
            .map(|(index, part)| {
                SturdyRef::parse(&format!("{}{part}/{swiss}", sturdyrefs::SCHEME))
                    .map_err(|error| DirectoryTokenError::Member { index, error })
            })
            .collect::<Result<Vec<_>, _>>()?;
        DirectoryToken::from_refs(members)
    }

    /// Each member's sturdyref for this facet, in the token's order.
    pub fn members(&self) -> &[SturdyRef] {
        &self.members
    }

    /// The facet's swiss number.
    pub fn swiss(&self) -> &SwissNumber {
        self.members[0].swiss()
    }

    /// The same facet at other members (from a status the directory gave).
    pub fn with_members(
        &self,
        members: &[(VatId, Vec<LocationHint>)],
    ) -> Result<DirectoryToken, DirectoryTokenError> {
        DirectoryToken::new(members, self.swiss())
    }
}

impl fmt::Display for DirectoryToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(SCHEME)?;
        for (index, member) in self.members.iter().enumerate() {
            if index > 0 {
                f.write_str("+")?;
            }
            write!(f, "{}@", member.vat())?;
            for (i, hint) in member.hints().iter().enumerate() {
                if i > 0 {
                    f.write_str(",")?;
                }
                write!(f, "{hint}")?;
            }
        }
        write!(f, "/{}", self.swiss().encode().as_str())
    }
}

/// Never the swiss number.
impl fmt::Debug for DirectoryToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let vats: Vec<String> = self.members.iter().map(|m| m.vat().to_string()).collect();
        f.debug_struct("DirectoryToken")
            .field("members", &vats)
            .finish_non_exhaustive()
    }
}

impl FromStr for DirectoryToken {
    type Err = DirectoryTokenError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        DirectoryToken::parse(text)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests

    use super::*;

    #[test]
    fn a_token_round_trips_and_names_each_member() {
        let swiss = SwissNumber::from_bytes([5; 32]);
        let members = vec![
            (
                VatId::from_bytes([1; 32]),
                vec!["127.0.0.1:4001".parse().unwrap()],
            ),
            (
                VatId::from_bytes([2; 32]),
                vec![
                    "10.0.0.2:4002".parse().unwrap(),
                    "dir.example:4002".parse().unwrap(),
                ],
            ),
        ];
        let token = DirectoryToken::new(&members, &swiss).unwrap();
        let text = token.to_string();
        assert!(text.starts_with("vatdir://"));
        assert_eq!(text.matches('+').count(), 1);
        let parsed: DirectoryToken = text.parse().unwrap();
        assert_eq!(parsed, token);
        assert_eq!(parsed.members()[1].hints().len(), 2);
        assert!(!format!("{token:?}").contains(swiss.encode().as_str()));
    }

    #[test]
    fn bad_tokens_say_what_is_wrong() {
        assert_eq!(
            DirectoryToken::parse("captp://x"),
            Err(DirectoryTokenError::WrongScheme)
        );
        assert_eq!(
            DirectoryToken::parse("vatdir://abc"),
            Err(DirectoryTokenError::MissingSwiss)
        );
        assert!(matches!(
            DirectoryToken::parse("vatdir://abc@127.0.0.1:1/xyz"),
            Err(DirectoryTokenError::Member { index: 0, .. })
        ));
        let swiss = SwissNumber::from_bytes([5; 32]);
        let one = (
            VatId::from_bytes([1; 32]),
            vec!["127.0.0.1:4001".parse().unwrap()],
        );
        let twice = DirectoryToken::new(&[one.clone(), one], &swiss);
        assert_eq!(
            twice,
            Err(DirectoryTokenError::DuplicateMember { index: 1, first: 0 })
        );
    }
}
