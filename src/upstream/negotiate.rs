//! The one response body gatehouse rewrites: a SignalR negotiate answer on a route with
//! `affinity = "signalr"`, whose connection token gets the endpoint's seal.
//!
//! Negotiate version 1 and later: the client sends `connectionToken` back as `id`, so that
//! is sealed; version 0 has no token and the client sends `connectionId`, so that is.
//! A redirect answer (`url` + `accessToken`, Azure SignalR) and an error answer (`error`)
//! pass unchanged. The body is read whole, at most [`MAX_NEGOTIATE_BYTES`]: a real one is a
//! few hundred bytes.

use bytes::Bytes;
use http::header::{CONTENT_ENCODING, CONTENT_LENGTH};
use http::{Method, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use serde_json::Value;

use super::affinity::{Sealer, Tag};

pub(crate) const MAX_NEGOTIATE_BYTES: usize = 64 * 1024;

/// Whether this request is a SignalR negotiate: `POST <hub>/negotiate`.
pub(crate) fn is_negotiate(method: &Method, path: &str) -> bool {
    method == Method::POST && path.ends_with("/negotiate")
}

/// Why a negotiate answer could not be sealed; the client gets 502 either way.
#[derive(Debug, thiserror::Error)]
pub enum NegotiateError {
    #[error("negotiate answer larger than {MAX_NEGOTIATE_BYTES} bytes or cut off")]
    Body,
    #[error("negotiate answer is encoded (Content-Encoding)")]
    Encoded,
    #[error("negotiate answer is not the JSON object SignalR defines")]
    NotJson,
}

/// The answer with its connection token sealed for `tag`; other statuses pass as they are.
pub(crate) async fn seal_response(
    response: Response<crate::body::Body>,
    sealer: &Sealer,
    tag: &Tag,
) -> Result<Response<crate::body::Body>, NegotiateError> {
    if response.status() != StatusCode::OK {
        return Ok(response);
    }
    if response.headers().contains_key(CONTENT_ENCODING) {
        return Err(NegotiateError::Encoded);
    }
    let (mut parts, body) = response.into_parts();
    let bytes = Limited::new(body, MAX_NEGOTIATE_BYTES)
        .collect()
        .await
        .map_err(|_| NegotiateError::Body)?
        .to_bytes();
    let sealed = seal_body(&bytes, sealer, tag)?;
    // hyper writes the new length from the body.
    parts.headers.remove(CONTENT_LENGTH);
    Ok(Response::from_parts(parts, crate::body::full(sealed)))
}

/// The sealed JSON; `bytes` unchanged when the answer carries nothing to seal.
pub(crate) fn seal_body(bytes: &[u8], sealer: &Sealer, tag: &Tag) -> Result<Bytes, NegotiateError> {
    let mut answer: serde_json::Map<String, Value> =
        serde_json::from_slice(bytes).map_err(|_| NegotiateError::NotJson)?;
    if answer.contains_key("url") || answer.contains_key("error") {
        return Ok(Bytes::copy_from_slice(bytes));
    }
    let version = answer
        .get("negotiateVersion")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let field = if version >= 1 {
        "connectionToken"
    } else {
        "connectionId"
    };
    let token = match answer.get(field) {
        Some(Value::String(token)) if !token.is_empty() => token.clone(),
        _ => return Err(NegotiateError::NotJson),
    };
    answer.insert(field.into(), Value::String(sealer.seal(tag, &token)));
    serde_json::to_vec(&answer)
        .map(Bytes::from)
        .map_err(|_| NegotiateError::NotJson)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealer() -> Sealer {
        Sealer::new(b"k")
    }

    #[test]
    fn version_one_seals_the_token_and_version_zero_the_id() {
        let s = sealer();
        let tag = s.tag(&"a:1".parse().unwrap());
        let v1 = br#"{"negotiateVersion":1,"connectionId":"cid","connectionToken":"tok","availableTransports":[]}"#;
        let out: Value = serde_json::from_slice(&seal_body(v1, &s, &tag).unwrap()).unwrap();
        assert_eq!(out["connectionId"], "cid");
        let token = out["connectionToken"].as_str().unwrap();
        assert_eq!(s.unseal(token), Some((tag, "tok")));
        assert_eq!(out["availableTransports"], serde_json::json!([]));

        let v0 = br#"{"connectionId":"cid","availableTransports":[]}"#;
        let out: Value = serde_json::from_slice(&seal_body(v0, &s, &tag).unwrap()).unwrap();
        assert_eq!(
            s.unseal(out["connectionId"].as_str().unwrap()),
            Some((tag, "cid"))
        );
    }

    #[test]
    fn redirects_and_errors_pass_and_garbage_is_refused() {
        let s = sealer();
        let tag = s.tag(&"a:1".parse().unwrap());
        let redirect = br#"{"url":"https://x/","accessToken":"t"}"#;
        assert_eq!(&seal_body(redirect, &s, &tag).unwrap()[..], &redirect[..]);
        let error = br#"{"error":"Negotiate failed"}"#;
        assert_eq!(&seal_body(error, &s, &tag).unwrap()[..], &error[..]);
        for bad in [
            &b"[]"[..],
            b"not json",
            br#"{"negotiateVersion":1}"#,
            br#"{"connectionToken":5,"negotiateVersion":1}"#,
        ] {
            assert!(seal_body(bad, &s, &tag).is_err());
        }
    }

    #[test]
    fn only_post_to_negotiate_is_a_negotiate() {
        assert!(is_negotiate(&Method::POST, "/hub/negotiate"));
        assert!(!is_negotiate(&Method::GET, "/hub/negotiate"));
        assert!(!is_negotiate(&Method::POST, "/hub"));
    }
}
