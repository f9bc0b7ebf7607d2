//! Sturdyref tokens: durable, unguessable, revocable text references to
//! objects in vats.
//!
//! A sturdyref names one object in one vat in a way that outlives
//! connections, restarts and time. People hand each other its text form,
//! a token; whoever holds a valid token may reach the object, and nobody
//! else: not a guesser (the secret is 256 random bits), not the holder of a
//! revoked or expired token, not a thief of a token bound to another vat.
//!
//! This crate knows nothing of the network or of the vat runtime. It holds:
//!
//! - [`VatId`], a vat's ed25519 public key, and its one text form;
//! - [`SwissNumber`], the secret naming an object, and [`SwissHash`], the
//!   only form in which secrets are stored;
//! - [`LocationHint`], where a vat may be reached;
//! - [`SturdyRef`] and the token format below, with a parser that names
//!   exactly what is wrong in a bad token ([`ParseError`]);
//! - [`TokenRecord`] and the [`Store`] trait with its default backend
//!   [`RedbStore`]: minting, lookup, revocation, expiry, binding to a vat,
//!   purging of expired and used records in bounded passes, and persistent
//!   object state committed in ACID transactions.
//!
//! # The token format
//!
//! ```text
//! captp://<vat-id>@<hint>[,<hint>...]/<swiss-number>
//! ```
//!
//! For example (one line):
//!
//! ```text
//! captp://2a3b5hx7ehpmwpwydlmukalbpz3quomvyyskoqs2bmkgiedshbfa@192.0.2.7:4000,[2001:db8::7]:4000,vat.example.org:4000/3q2-7wY1sAbW4qL0rT9vXnPz8mKcHd5eFgJhIiOuRyE
//! ```
//!
//! - `captp://`: the scheme, lowercase.
//! - `<vat-id>`: the vat's ed25519 public key in lowercase RFC 4648 base32
//!   without padding, 52 characters of `a-z2-7` ([`VatId`]). It sits where
//!   a URI puts user information: it says *who* must answer, and a
//!   connection counts only if the peer proves this key.
//! - `<hint>`: one to [`MAX_HINTS`] comma-separated location hints, in
//!   order of preference, each `host:port` with a port from 1 to 65535: an
//!   IPv4 address (`192.0.2.7:4000`), an IPv6 address in brackets in its
//!   RFC 5952 form (`[2001:db8::7]:4000`), or a lowercase DNS name
//!   (`vat.example.org:4000`). Hints say only *where to try*: they are not
//!   trusted, since the vat id is checked on connection.
//! - `<swiss-number>`: 256 bits in unpadded base64url (RFC 4648 §5), 43
//!   characters of `A-Za-z0-9-_`. It is the secret: whoever has it has the
//!   object.
//!
//! A token is at most [`MAX_TOKEN_LEN`] bytes, uses only URI characters,
//! and needs no escaping in a URI, a shell word, JSON or a chat message.
//!
//! **One token, one spelling.** Parsing is strict: no case folding (unlike
//! generic URI schemes and hosts), no padding, no non-canonical base32 or
//! base64 endings, no leading zeros in ports or addresses, no
//! non-canonical IPv6, no trailing dot, no surrounding whitespace, no
//! repeated hints. Every string the parser accepts is exactly what
//! `Display` writes for the result, so two tokens are the same reference
//! exactly when their texts are equal, and a changed character never
//! passes silently for the original. Errors never quote the secret (see
//! [`error`]).
//!
//! ```
//! use sturdyrefs::{LocationHint, ParseError, SturdyRef, SwissNumber, VatId};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let vat = VatId::from_bytes([7; 32]);
//! let hints = vec!["192.0.2.7:4000".parse::<LocationHint>()?];
//! let token = SturdyRef::new(vat, hints, SwissNumber::generate()?)?;
//!
//! let text = token.to_string();
//! assert!(text.starts_with("captp://a4dqobyha4dqobyha4dqobyha4dqobyha4dqobyha4dqobyha4dq@192.0.2.7:4000/"));
//! assert_eq!(text.parse::<SturdyRef>()?, token);
//!
//! // A bad token says what is wrong with it.
//! let err = "captp://a4dqobyha4dqobyha4dqobyha4dqobyha4dqobyha4dqobyha4dq@192.0.2.7/x"
//!     .parse::<SturdyRef>()
//!     .unwrap_err();
//! assert!(matches!(err, ParseError::BadHint { index: 0, .. }));
//! assert_eq!(
//!     err.to_string(),
//!     "bad location hint #1 at position 61: missing port: write host:port"
//! );
//! # Ok(())
//! # }
//! ```
//!
//! # Records and the store
//!
//! A store keeps a [`TokenRecord`] per token, under the token's
//! [`SwissHash`]: the object it reaches, when it was made, when it
//! expires, the vat it is bound to, whether it was revoked. The swiss
//! number itself is never stored: [`Store::mint`] hands it to the caller
//! and keeps its hash; [`Store::lookup`] hashes what is presented and
//! looks the hash up. A token bound to one vat and presented by another is
//! reported [`Lookup::Unknown`], exactly like a token that never existed.
//!
//! ```
//! use sturdyrefs::{Lookup, MintOptions, ObjectRef, RedbStore, Store};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! let store = RedbStore::open(dir.path().join("vat.redb"))?;
//! let counter = ObjectRef::new("counter", 1)?;
//!
//! let minted = store.mint(counter.clone(), MintOptions::default())?;
//! assert!(matches!(store.lookup(&minted.swiss, None)?, Lookup::Found(r) if r.object == counter));
//!
//! store.put_state(&counter, b"42")?;
//! store.revoke(&minted.record.swiss_hash)?;
//! assert_eq!(store.lookup(&minted.swiss, None)?, Lookup::Revoked);
//! assert_eq!(store.get_state(&counter)?.as_deref(), Some(&b"42"[..]));
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]

pub mod error;
mod hint;
mod record;
mod store;
mod swiss;
mod token;
mod vat_id;

pub use error::{HintError, ParseError, SwissError, TokenError, VatIdError};
pub use hint::{DnsName, Host, LocationHint};
pub use record::{KindError, Lookup, MintOptions, Minted, ObjectRef, TokenRecord, MAX_KIND_LEN};
pub use store::{Purged, RedbStore, StateBatch, StateChange, Store, StoreError};
pub use swiss::{RandomError, SwissHash, SwissNumber};
pub use token::{SturdyRef, MAX_HINTS, MAX_TOKEN_LEN, SCHEME};
pub use vat_id::VatId;
