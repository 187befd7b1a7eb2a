//! Authentication: a token or a ticket in, a validated, revocation-checked [`Credential`]
//! out. The service, the ticket desk and the first-message flow all go through one
//! [`Authenticator`], so none of them can skip validation or the revocation check.

use std::sync::Arc;

use http::request::Parts;

use crate::auth::claims::Claims;
use crate::auth::error::AuthError;
use crate::auth::key_board::KeyRef;
use crate::auth::revocation::Revocations;
use crate::auth::token::{self, Origin};
use crate::auth::validate::{Validated, Validator};
use crate::config::{AuthMode, RouteConfig, TokenSource};
use crate::metrics::Metrics;
use crate::proxy::cors;
use crate::proxy::error::ProxyError;
use crate::proxy::ticket_desk::TicketDesk;
use crate::secret::BearerToken;

/// A caller who proved who they are, by token or by ticket.
pub(crate) struct Credential {
    pub claims: Arc<Claims>,
    /// The token itself, for `upstream_auth = "bearer"`; a ticket may carry none.
    pub token: Option<BearerToken>,
    /// The key that verified a JWT: a session it opens ends once the key is withdrawn.
    pub key: Option<Arc<KeyRef>>,
}

/// Validation (with its cache), revocation and the token size limit of one generation.
pub(crate) struct Authenticator {
    validator: Validator,
    revocations: Arc<Revocations>,
    /// `limits.max_token_bytes`.
    max_token_bytes: usize,
}

impl Authenticator {
    pub(crate) fn new(
        validator: Validator,
        revocations: Arc<Revocations>,
        max_token_bytes: usize,
    ) -> Self {
        Self {
            validator,
            revocations,
            max_token_bytes,
        }
    }

    pub(crate) fn validator(&self) -> &Validator {
        &self.validator
    }

    pub(crate) fn revocations(&self) -> &Arc<Revocations> {
        &self.revocations
    }

    /// The route's token or ticket as a credential; `None` when the route does not
    /// authenticate or the request carries none (policy decides what that means). `https`:
    /// the client's scheme, for the cookie's same-site check.
    pub(crate) async fn request(
        &self,
        (parts, https): (&Parts, bool),
        route: &RouteConfig,
        desk: Option<&TicketDesk>,
        metrics: &Metrics,
    ) -> Result<Option<Credential>, ProxyError> {
        if route.auth == AuthMode::None {
            return Ok(None);
        }
        // The cache is asked as the token is found: a token it holds passed the character
        // check when it was validated, the very same bytes, and is not checked again (a
        // third of the cost of authenticating a cached token). A ticket is redeemed, never
        // validated, so it is never looked for among tokens.
        let mut cached = None;
        let known = |raw: &str, origin: Origin| {
            cached = (origin != Origin::Ticket)
                .then(|| self.validator.cached_now(raw))
                .flatten();
            cached.is_some()
        };
        let sources = &route.tokens;
        let Some(found) = token::extract_unless_known(parts, sources, self.max_token_bytes, known)?
        else {
            return Ok(None);
        };
        if found.origin == Origin::Cookie
            && !cors::cookie_credential_allowed(&parts.headers, &route.allowed_origins, https)
        {
            return Err(ProxyError::OriginNotAllowed);
        }
        if found.origin == Origin::Ticket {
            let desk = desk.ok_or(ProxyError::NoRoute)?;
            let grant = Box::pin(desk.redeem(&found.token, &route.path, metrics)).await?;
            self.revocations.check(&grant.claims)?;
            return Ok(Some(Credential {
                claims: grant.claims,
                token: grant.token,
                key: grant.key,
            }));
        }
        let validated = match cached {
            Some(validated) => {
                self.validator.count_hit();
                validated
            }
            None => self.validator.validate_missed(&found.token).await?,
        };
        self.credential(found.token, validated).map(Some)
    }

    /// The token from `sources` (the ticket desk's), which must be there.
    pub(crate) async fn required(
        &self,
        parts: &Parts,
        sources: &[TokenSource],
    ) -> Result<Credential, ProxyError> {
        let found =
            token::extract(parts, sources, self.max_token_bytes)?.ok_or(AuthError::Missing)?;
        self.token(found.token).await
    }

    /// A first message's raw token, size-checked, then validated.
    pub(crate) async fn raw(&self, raw: String) -> Result<Credential, ProxyError> {
        let token = token::accept(raw, self.max_token_bytes)?;
        self.token(token).await
    }

    /// A token's credential, once its signature, claims and revocation status are checked.
    pub(crate) async fn token(&self, token: BearerToken) -> Result<Credential, ProxyError> {
        let validated = self.validator.validate(&token).await?;
        self.credential(token, validated)
    }

    /// A validated token's credential, unless it was revoked.
    fn credential(
        &self,
        token: BearerToken,
        Validated { claims, key }: Validated,
    ) -> Result<Credential, ProxyError> {
        self.revocations.check(&claims)?;
        Ok(Credential {
            claims,
            token: Some(token),
            key,
        })
    }
}
