//! What redaction must hide, read from the config: `log.redact_params` and every query
//! parameter and cookie a route or the ticket endpoint reads a token from. The
//! [`Redactor`] itself knows only names.

use super::{Config, TokenSource};
use crate::redact::Redactor;

impl Config {
    /// `log.redact_params` plus every name any route or the ticket endpoint reads a token
    /// from: one list for every route, since a browser sends the cookie to all of them.
    pub fn redactor(&self) -> Redactor {
        let params = self.redact_params.iter().map(String::as_str);
        let ticket_param = self.tickets.iter().map(|t| t.param.as_str());
        let sources = self.routes.iter().flat_map(|r| &r.tokens);
        let desk_sources = self.tickets.iter().flat_map(|t| &t.tokens);
        with_sources(
            Redactor::new(params.chain(ticket_param)),
            sources.chain(desk_sources),
        )
    }
}

/// `redactor` plus every query parameter and cookie these token sources read.
pub fn with_sources<'a>(
    redactor: Redactor,
    sources: impl IntoIterator<Item = &'a TokenSource> + Clone,
) -> Redactor {
    let params = sources.clone().into_iter().filter_map(|s| match s {
        TokenSource::Query(name) | TokenSource::Ticket(name) => Some(name.as_str()),
        _ => None,
    });
    let cookies = sources.into_iter().filter_map(|s| match s {
        TokenSource::Cookie(name) => Some(name.as_str()),
        _ => None,
    });
    redactor.with_names(params, cookies)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_list_covers_every_route_and_the_ticket_endpoint() {
        let r = with_sources(
            Redactor::new(["code"]),
            &[
                TokenSource::Header,
                TokenSource::Query("at".into()),
                TokenSource::Ticket("ticket".into()),
                TokenSource::Cookie("session_token".into()),
            ],
        );
        assert_eq!(
            r.for_upstream("at=1&ticket=2&code=3&k=4").as_deref(),
            Some("k=4")
        );
        assert!(r.is_token_cookie("SESSION.token"));
        assert!(r.is_token_cookie("session_token[0]"));
        assert!(!r.is_token_cookie("session"));
        assert!(!r.is_token_cookie("at"));
    }
}
