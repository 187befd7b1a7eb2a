//! Who the caller is and what they may do: the token sources ([`token`]), the claims a
//! validated token carries ([`claims`]), JWT validation ([`validate`], [`token_cache`], [`jwt_crypto`], [`prepared_key`],
//! [`numeric_date`]), key sets ([`jwks`]), introspection of opaque tokens ([`introspect`]),
//! revocation ([`revocation`]) and route policy ([`policy`]); Ed25519 keys are
//! [`ed25519`]'s. Every failure is an
//! [`error::AuthError`].

pub mod claims;
pub mod ed25519;
pub mod error;
pub(crate) mod introspect;
pub mod jwks;
pub mod jwt_crypto;
pub(crate) mod key_board;
pub(crate) mod numeric_date;
pub mod policy;
pub mod prepared_key;
pub(crate) mod revocation;
pub mod token;
pub(crate) mod token_cache;
pub mod validate;
