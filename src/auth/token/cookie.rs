//! A token in a named cookie (RFC 6265 `Cookie: a=b; c=d`, possibly split over several
//! headers by HTTP/2).

use http::header::COOKIE;
use http::HeaderMap;

pub(super) fn find(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (n, v) = pair.trim().split_once('=')?;
            (n == name).then(|| v.trim_matches('"').to_string())
        })
}
