//! An error and its causes as one readable line, for log lines: `client error (Connect):
//! tcp connect error: Connection refused (os error 111)` says refused, DNS or TLS where the
//! outer error alone (`client error (Connect)`) or a `Debug` dump does not.

use std::error::Error;

/// `error` and each of its sources, joined by `: `; a cause whose text its wrapper already
/// ends with (libraries that repeat it) is written once.
pub(crate) fn chain(error: &(dyn Error + 'static)) -> String {
    let mut line = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        let text = e.to_string();
        if !text.is_empty() && !line.ends_with(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        cause = e.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("client error (Connect)")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn every_cause_is_named_once() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let text = chain(&Outer(refused));
        assert_eq!(text, "client error (Connect): connection refused");
        let io = std::io::Error::other("x");
        assert_eq!(chain(&io), "x");
    }
}
