//! What a directory call can fail with. The facts a caller acts on are
//! fields: how many members were reached, which bound was hit, whether a
//! retry may apply the write twice.

use crate::token::DirectoryTokenError;

/// Why a directory call did not do what it asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DirectoryError {
    /// The member that answered reaches fewer members than a quorum: it
    /// refuses writes and linearizable reads at once. A write answered so
    /// was not applied (a write an earlier attempt of which got no answer
    /// fails as [`Unavailable`](DirectoryError::Unavailable) instead).
    #[error("no quorum: this member reaches {reached} of {members} members")]
    NoQuorum {
        /// Members it reaches, itself included.
        reached: u32,
        /// Voters in the membership.
        members: u32,
    },
    /// The directory refused the request; nothing was applied.
    #[error("refused ({kind:?}): {message}")]
    Refused {
        /// Why.
        kind: RefusalKind,
        /// The bound, for `TooLarge` and `TooMany`.
        limit: Option<u64>,
        /// What was offered, for `TooLarge`.
        size: Option<u64>,
        /// For people.
        message: String,
    },
    /// No member answered with a leader in time. A write may or may not
    /// have been applied; retrying it with the same client (same request
    /// id) is safe.
    #[error("the directory is unavailable: {reason}")]
    Unavailable {
        /// What the last attempt met.
        reason: String,
    },
    /// The member is not part of a cluster yet.
    #[error("this vat is not a member of a directory cluster yet")]
    NotInitialized,
    /// A token is malformed.
    #[error("bad directory token: {0}")]
    Token(#[from] DirectoryTokenError),
    /// The call failed on the wire.
    #[error("directory call failed: {0}")]
    Call(#[from] vat::Error),
}

impl DirectoryError {
    /// This error as the final answer to a write: if an earlier attempt
    /// got no answer (`in_doubt`), it may have been applied, and
    /// `NoQuorum`, which says it was not, becomes `Unavailable`, which says
    /// it may have been.
    pub(crate) fn for_write(self, in_doubt: bool) -> DirectoryError {
        match self {
            DirectoryError::NoQuorum { .. } if in_doubt => DirectoryError::Unavailable {
                reason: format!(
                    "{self}, after an attempt that got no answer: the write may have been applied"
                ),
            },
            other => other,
        }
    }

    /// Whether the same call may simply be made again: always for reads;
    /// for writes, with the same request id (the client does that).
    pub fn retry_is_safe(&self) -> bool {
        matches!(
            self,
            DirectoryError::NoQuorum { .. }
                | DirectoryError::Unavailable { .. }
                | DirectoryError::Call(_)
        )
    }
}

/// Why the directory refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    /// The facet does not allow it (or does not exist, or was revoked).
    NotPermitted,
    /// The key is malformed or too long.
    BadKey,
    /// The record is larger than the bound.
    TooLarge,
    /// The record's kind does not belong under the key's prefix.
    WrongKind,
    /// The facet holds as many records as it may.
    TooMany,
    /// No such vat to renew.
    NoSuchVat,
    /// A retry older than what the directory remembers of its client.
    Forgotten,
    /// An argument is malformed.
    BadArgument,
}
