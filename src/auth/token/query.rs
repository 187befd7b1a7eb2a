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
        let (raw_name, raw_value) = crate::redact::split_pair(pair);
        if raw_name != name {
            continue;
        }
        // Percent-encoding can only shrink a value, so this bounds the decoding work too.
        if raw_value.len() > max_bytes.saturating_mul(3) {
            return Err(AuthError::TooLarge);
        }
        return Ok(Some(decode(raw_value)));
    }
    Ok(None)
}

/// A query value as a form decoder reads it (`+` is a space, `%XX` a byte). A JWT or a
/// ticket has neither, and is taken as it is: the decoder would copy it twice and check
/// its UTF-8 again, on every upgrade.
fn decode(raw: &str) -> String {
    if memchr::memchr2(b'%', b'+', raw.as_bytes()).is_none() {
        return raw.to_string();
    }
    form_urlencoded::parse(format!("v={raw}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_decode_as_a_form_decoder_reads_them() {
        for raw in [
            "abc.DEF-_~",
            "a%2Eb",
            "a+b",
            "%zz",
            "%C3%A9",
            "%FF",
            "",
            "=x=",
        ] {
            let form = form_urlencoded::parse(format!("v={raw}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default();
            assert_eq!(decode(raw), form, "{raw:?}");
        }
    }

    #[test]
    fn the_first_exact_name_wins() {
        let q = Some("x=1&access_token=a%2Eb&access_token=c");
        assert_eq!(
            find(q, "access_token", 100).unwrap().as_deref(),
            Some("a.b")
        );
        assert_eq!(
            find(Some("Access_Token=a"), "access_token", 100).unwrap(),
            None
        );
        assert!(find(Some("access_token=aaaa"), "access_token", 1).is_err());
    }
}
