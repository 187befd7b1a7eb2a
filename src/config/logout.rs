//! `[logout]` validation: the endpoint a caller signs itself out at.

use super::fields::ConfigErrors;
use super::types::LogoutConfig;
use super::FileConfig;

pub(super) fn validate_logout(
    e: &mut ConfigErrors,
    raw: &FileConfig,
    can_validate: bool,
) -> Option<LogoutConfig> {
    let logout = raw.logout.as_ref()?;
    let errors_before = e.count();
    if !logout.endpoint.starts_with('/') || logout.endpoint.contains(['?', '#']) {
        e.push("logout.endpoint", "a path like /.gatehouse/logout");
    }
    let endpoint = logout.endpoint.trim_end_matches('/').to_string();
    let same_as_tickets = raw.tickets.as_ref().is_some_and(|t| {
        t.endpoint
            .trim_end_matches('/')
            .eq_ignore_ascii_case(&endpoint)
    });
    if same_as_tickets {
        e.push("logout.endpoint", "must differ from tickets.endpoint");
    }
    if logout.rate_limit_per_minute == 0 {
        e.push("logout.rate_limit_per_minute", "must be at least 1");
    }
    if !can_validate {
        e.push(
            "logout",
            "signing out needs at least one [[issuer]] or [[introspection]]",
        );
    }
    (e.count() == errors_before).then(|| LogoutConfig {
        endpoint,
        rate_limit_per_minute: logout.rate_limit_per_minute,
    })
}
