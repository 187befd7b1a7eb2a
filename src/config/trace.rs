//! `[trace]`: W3C trace context and OTLP span export.

use std::time::Duration;

use http::Uri;
use serde::{Deserialize, Serialize};

use super::fields::{duration, ConfigErrors};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct FileTrace {
    /// Continue a valid incoming `traceparent` instead of starting a new trace.
    pub trust_incoming: bool,
    /// OTLP/HTTP (protobuf) traces URL, e.g. `http://collector:4318/v1/traces`; empty = no export.
    pub otlp_endpoint: String,
    pub service_name: String,
    pub otlp_timeout: String,
}

impl Default for FileTrace {
    fn default() -> Self {
        Self {
            trust_incoming: false,
            otlp_endpoint: String::new(),
            service_name: "gatehouse".into(),
            otlp_timeout: "10s".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceConfig {
    pub trust_incoming: bool,
    pub otlp: Option<OtlpConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtlpConfig {
    pub endpoint: Uri,
    pub service_name: String,
    pub timeout: Duration,
}

pub(super) fn validate_trace(e: &mut ConfigErrors, raw: &FileTrace) -> TraceConfig {
    let timeout = duration(e, "trace.otlp_timeout", &raw.otlp_timeout);
    if raw.service_name.is_empty() {
        e.push("trace.service_name", "must not be empty");
    }
    let otlp = match raw.otlp_endpoint.as_str() {
        "" => None,
        text => match text.parse::<Uri>() {
            Ok(endpoint)
                if matches!(endpoint.scheme_str(), Some("http" | "https"))
                    && endpoint.host().is_some() =>
            {
                Some(OtlpConfig {
                    endpoint,
                    service_name: raw.service_name.clone(),
                    timeout,
                })
            }
            _ => {
                e.push(
                    "trace.otlp_endpoint",
                    "must be an http:// or https:// URL (the collector's /v1/traces)",
                );
                None
            }
        },
    };
    TraceConfig {
        trust_incoming: raw.trust_incoming,
        otlp,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(raw: FileTrace) -> (TraceConfig, usize, String) {
        let mut e = ConfigErrors::default();
        let config = validate_trace(&mut e, &raw);
        (config, e.count(), e.to_string())
    }

    #[test]
    fn defaults_trust_nothing_and_export_nothing() {
        let (config, count, _) = check(FileTrace::default());
        assert_eq!(count, 0);
        assert_eq!(
            config,
            TraceConfig {
                trust_incoming: false,
                otlp: None
            }
        );
    }

    #[test]
    fn an_endpoint_must_be_an_http_url() {
        for bad in [
            "collector:4318",
            "ftp://c/v1/traces",
            "http://",
            "/v1/traces",
        ] {
            let raw = FileTrace {
                otlp_endpoint: bad.into(),
                ..FileTrace::default()
            };
            let (config, count, errors) = check(raw);
            assert!(config.otlp.is_none(), "{bad}");
            assert_eq!(count, 1, "{bad}: {errors}");
            assert!(errors.contains("trace.otlp_endpoint"), "{bad}: {errors}");
        }
        let raw = FileTrace {
            otlp_endpoint: "https://c.example:4318/v1/traces".into(),
            otlp_timeout: "0s".into(),
            service_name: String::new(),
            trust_incoming: true,
        };
        let (config, count, errors) = check(raw);
        assert_eq!(count, 2, "{errors}");
        assert!(errors.contains("trace.otlp_timeout") && errors.contains("trace.service_name"));
        assert!(config.trust_incoming);
        assert_eq!(
            config.otlp.unwrap().endpoint,
            "https://c.example:4318/v1/traces"
        );
    }
}
