//! A token in a query parameter, like SignalR's `?access_token=`. The value is
//! percent-decoded; the parameter itself is removed from the upstream URI by `redact`.

use crate::auth::error::AuthError;

pub(super) fn find(
    query: Option<&str>,
    name: &str,
    max_bytes: usize,
) -> Result<Option<String>, AuthError> {
    let Some(query) = query else { return Ok(None) };
    for pair in query.split('&') {
        let (raw_name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        if raw_name != name {
            continue;
        }
        // Percent-encoding can only shrink a value, so this bounds the decoding work too.
        if raw_value.len() > max_bytes.saturating_mul(3) {
            return Err(AuthError::TooLarge);
        }
        let value = form_urlencoded::parse(format!("v={raw_value}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        return Ok(Some(value));
    }
    Ok(None)
}
