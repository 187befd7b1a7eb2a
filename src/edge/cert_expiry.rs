//! `gatehouse_certificate_expiry_timestamp_seconds`: when the certificate we serve runs
//! out. The served chain is read on the TLS reload interval, like the reload itself, so a
//! renewed certificate moves the gauge without a restart. It is the chain being served,
//! not the file: a renewal that fails to load (a certificate whose key is missing or does
//! not match) leaves the old chain in service, and the alerts must keep counting down on it.
//!
//! The value is the earliest `notAfter` in the served chain: an expired intermediate fails
//! clients as surely as an expired leaf.

use std::sync::Arc;
use std::time::Duration;

use der::asn1::{AnyRef, GeneralizedTime, UtcTime};
use der::{Decode, Reader, SliceReader, Tag, TagNumber};
use rustls_pki_types::CertificateDer;
use tokio_util::sync::CancellationToken;

use crate::edge::tls::ReloadingCert;
use crate::metrics::Metrics;

/// The label of the public listener's certificate.
pub(crate) const LISTEN: &str = "listen";

/// The task that sets the gauge now and again every `listen.tls.reload_interval`.
pub(crate) fn watch(
    served: Arc<ReloadingCert>,
    every: Duration,
    metrics: &Arc<Metrics>,
    stop: &CancellationToken,
) -> impl std::future::Future<Output = ()> {
    let (metrics, stop) = (metrics.clone(), stop.clone());
    async move {
        loop {
            match earliest_of(&served.served().cert) {
                Some(unix) => metrics.certificate_expiry(LISTEN, unix),
                None => tracing::warn!("no certificate expiry readable from the served TLS chain"),
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
        }
    }
}

/// The earliest `notAfter` (Unix seconds) of a chain.
fn earliest_of(chain: &[CertificateDer<'_>]) -> Option<i64> {
    chain
        .iter()
        .map(|der| not_after(der.as_ref()))
        .collect::<Option<Vec<_>>>()?
        .into_iter()
        .min()
}

/// `tbsCertificate.validity.notAfter` of one DER certificate (RFC 5280 §4.1), as Unix
/// seconds; `None` for anything that is not shaped like a certificate.
pub(crate) fn not_after(der: &[u8]) -> Option<i64> {
    let mut reader = SliceReader::new(der).ok()?;
    let secs = reader
        .sequence(|cert| {
            let secs = cert.sequence(|tbs| {
                let version = Tag::ContextSpecific {
                    constructed: true,
                    number: TagNumber::N0,
                };
                if tbs.peek_tag()? == version {
                    AnyRef::decode(tbs)?;
                }
                for _serial_signature_issuer in 0..3 {
                    AnyRef::decode(tbs)?;
                }
                let secs = tbs.sequence(|validity| {
                    time(validity)?;
                    time(validity)
                })?;
                skip_rest(tbs)?;
                Ok(secs)
            })?;
            skip_rest(cert)?;
            Ok(secs)
        })
        .ok()?;
    i64::try_from(secs).ok()
}

/// An X.509 `Time`: UTCTime or GeneralizedTime, as Unix seconds.
fn time<'a, R: Reader<'a>>(r: &mut R) -> der::Result<u64> {
    let since_epoch = if r.peek_tag()? == Tag::UtcTime {
        UtcTime::decode(r)?.to_unix_duration()
    } else {
        GeneralizedTime::decode(r)?.to_unix_duration()
    };
    Ok(since_epoch.as_secs())
}

fn skip_rest<'a, R: Reader<'a>>(r: &mut R) -> der::Result<()> {
    while !r.is_finished() {
        AnyRef::decode(r)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls_pki_types::pem::PemObject;

    /// The earliest `notAfter` (Unix seconds) of the PEM certificates in `pem`.
    fn earliest_not_after(pem: &[u8]) -> Option<i64> {
        let chain = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .ok()?;
        earliest_of(&chain)
    }

    fn cert_until(year: i32) -> String {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(year, 6, 1);
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().pem()
    }

    #[test]
    fn reads_utc_and_generalized_not_after() {
        // 2030-06-01T00:00:00Z is UTCTime; 2051-06-01 must be GeneralizedTime (RFC 5280).
        let utc = earliest_not_after(cert_until(2030).as_bytes());
        assert_eq!(utc, Some(1_906_502_400));
        let generalized = earliest_not_after(cert_until(2051).as_bytes());
        assert_eq!(generalized, Some(2_569_190_400));
    }

    #[test]
    fn a_chain_reports_its_earliest_certificate() {
        let chain = format!("{}{}", cert_until(2051), cert_until(2030));
        assert_eq!(earliest_not_after(chain.as_bytes()), Some(1_906_502_400));
    }

    #[test]
    fn garbage_is_none_never_a_panic() {
        assert_eq!(not_after(b""), None);
        assert_eq!(not_after(&[0x30, 0x03, 0x02, 0x01, 0x01]), None);
        assert_eq!(
            earliest_not_after(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
            None
        );
        assert_eq!(earliest_not_after(b"no pem here"), None);
    }
}
