//! One access log line per request, written when the response body ends (so it carries
//! the bytes sent, also for a long SSE stream), on every path: success, refusal, error.
//!
//! The line is built only from redacted parts: the path's query has its sensitive values
//! replaced by the route's `Redactor`, and the caller appears as a subject claim, never a
//! token. Lines go to the `gatehouse::access` target at INFO.

/// What a request's access line and metrics are labelled with, and the redactor its
/// logged path goes through: a route's, the ticket desk's, or the fallback's (`-`).
pub(crate) struct Labels {
    pub name: std::sync::Arc<str>,
    /// Every credential name any route reads, plus `log.redact_params` (one list for all).
    pub redactor: crate::redact::Redactor,
    pub metrics: crate::metrics::RouteMetrics,
}

impl Labels {
    pub(crate) fn new(
        name: &str,
        redactor: crate::redact::Redactor,
        metrics: &crate::metrics::Metrics,
    ) -> Self {
        Self {
            name: std::sync::Arc::from(name),
            redactor,
            metrics: metrics.route(name),
        }
    }
}

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Method, Response, Version};
use http_body_util::BodyExt;

use crate::body::Body;
use crate::redact::Redactor;

pub(crate) struct AccessLine {
    /// Whether access lines were being written when the request began. When not, the
    /// line's text is never built and the response body is not wrapped (a reload that
    /// turns the log on takes effect from the next request).
    logged: bool,
    start: Instant,
    request_id: String,
    client: IpAddr,
    method: Method,
    version: Version,
    path: String,
    route: Arc<str>,
    pub subject: Option<String>,
    /// How long the upstream had the request, once its answer (or failure) came.
    pub upstream_time: Option<Duration>,
    /// When the request went out towards the upstream; a line written before the answer
    /// (a request cut while it waited) counts the upstream's time up to then.
    upstream_since: Option<Instant>,
    pub reason: Option<&'static str>,
    /// W3C trace id (32 hex digits) of the request's trace.
    pub trace_id: Option<String>,
    /// Set once a response took the line over ([`AccessLine::finish`]); a line dropped
    /// before that belongs to a request cut before it was answered (see `Drop`).
    answered: bool,
}

impl AccessLine {
    pub(crate) fn begin<B>(
        request: &http::Request<B>,
        client: IpAddr,
        redactor: &Redactor,
        route: Arc<str>,
        request_id: &http::HeaderValue,
    ) -> Self {
        let logged = tracing::enabled!(target: "gatehouse::access", tracing::Level::INFO);
        Self {
            logged,
            start: Instant::now(),
            request_id: if logged {
                String::from_utf8_lossy(request_id.as_bytes()).into_owned()
            } else {
                String::new()
            },
            client,
            method: request.method().clone(),
            version: request.version(),
            path: if logged {
                redactor.path_and_query_for_log(request.uri())
            } else {
                String::new()
            },
            route,
            subject: None,
            upstream_time: None,
            upstream_since: None,
            reason: None,
            trace_id: None,
            answered: false,
        }
    }

    /// Whether this request's line will be written (see `logged`).
    pub(crate) fn logged(&self) -> bool {
        self.logged
    }

    pub(crate) fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// The request goes out towards the upstream now.
    pub(crate) fn asking_upstream(&mut self) {
        self.upstream_since = Some(Instant::now());
    }

    /// The upstream's answer or failure came: its time is fixed, and returned.
    pub(crate) fn upstream_answered(&mut self) -> Duration {
        let spent = self
            .upstream_since
            .map_or(Duration::ZERO, |since| since.elapsed());
        self.upstream_time = Some(spent);
        spent
    }

    /// The request was refused before the upstream was reached for: `upstream_ms` is `-1`.
    pub(crate) fn upstream_not_asked(&mut self) {
        (self.upstream_since, self.upstream_time) = (None, None);
    }

    /// The upstream's time for the line: fixed when it answered, else the time it has had
    /// the request so far; `None` when it was never asked.
    fn upstream_spent(&self) -> Option<Duration> {
        self.upstream_time
            .or_else(|| self.upstream_since.map(|since| since.elapsed()))
    }

    /// Wraps the response body so the line is written once the body has been sent or dropped.
    pub(crate) fn finish(mut self, response: Response<Body>) -> Response<Body> {
        self.answered = true;
        if !self.logged {
            return response;
        }
        let mut pending = Pending {
            line: self,
            status: response.status().as_u16(),
            bytes: 0,
        };
        response.map(|body| {
            body.map_frame(move |frame| {
                if let Some(data) = frame.data_ref() {
                    pending.sent(data.len());
                }
                frame
            })
            .boxed()
        })
    }
}

struct Pending {
    line: AccessLine,
    status: u16,
    bytes: u64,
}

impl Pending {
    // A method, not a field update: the closure must own the whole `Pending` (and so drop
    // it, writing the line, when the body goes), not just copy its counter.
    fn sent(&mut self, len: usize) {
        self.bytes += len as u64;
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        write(&self.line, self.status, self.bytes);
    }
}

/// The `status` of a request cut before any response (its connection closed under it, or
/// the shutdown grace period ended); its `reason` is [`UNFINISHED`].
const NO_RESPONSE: u16 = 0;
const UNFINISHED: &str = "unfinished";

impl Drop for AccessLine {
    /// A request whose future is dropped before it was answered still gets its line: a
    /// request cut by the end of a drain would otherwise leave no trace in the access log.
    fn drop(&mut self) {
        if self.answered || !self.logged {
            return;
        }
        self.reason = Some(self.reason.unwrap_or(UNFINISHED));
        write(self, NO_RESPONSE, 0);
    }
}

/// Writes `l`'s line with the response's `status` and the body `bytes` sent.
fn write(l: &AccessLine, status: u16, bytes: u64) {
    if !tracing::enabled!(target: "gatehouse::access", tracing::Level::INFO) {
        return;
    }
    if let Some(sink) = crate::log_sink::get() {
        JSON_LINE.with_borrow_mut(|line| {
            line.clear();
            write_json(l, status, bytes, line, time::OffsetDateTime::now_utc());
            sink(line);
        });
        return;
    }
    // Twice, for `upstream_ms`: a float when the upstream was asked, else the integer -1.
    macro_rules! line {
        ($upstream_ms:expr) => {
            tracing::info!(
                target: "gatehouse::access",
                request_id = %l.request_id,
                trace_id = l.trace_id.as_deref().unwrap_or("-"),
                client = %l.client,
                method = %l.method,
                path = %l.path,
                proto = ?l.version,
                route = %l.route,
                status,
                subject = l.subject.as_deref().unwrap_or("-"),
                reason = l.reason.unwrap_or("-"),
                upstream_ms = $upstream_ms,
                duration_ms = millis(l.start.elapsed()),
                bytes,
            )
        };
    }
    match l.upstream_spent() {
        Some(upstream) => line!(millis(upstream)),
        None => line!(NOT_ASKED),
    }
}

/// `upstream_ms` of a request the upstream never saw.
const NOT_ASKED: i64 = -1;

/// Milliseconds to the microsecond: `3.432`, never `3.4326399999999997`. An integer count
/// of microseconds over 1000 is the double nearest that decimal, which prints as written.
fn millis(d: std::time::Duration) -> f64 {
    d.as_micros() as f64 / 1e3
}

thread_local! {
    /// One line's bytes, reused: a worker formats one line at a time.
    static JSON_LINE: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

#[cfg(test)]
impl Pending {
    fn write_json(&self, out: &mut Vec<u8>, now: time::OffsetDateTime) {
        write_json(&self.line, self.status, self.bytes, out, now);
    }
}

/// The line as `tracing`'s JSON formatter writes it (same keys, order and number forms),
/// so readers of the log cannot tell which one wrote it.
fn write_json(
    l: &AccessLine,
    status: u16,
    bytes: u64,
    out: &mut Vec<u8>,
    now: time::OffsetDateTime,
) {
    out.extend_from_slice(b"{\"timestamp\":\"");
    timestamp(out, now);
    out.extend_from_slice(b"\",\"level\":\"INFO\"");
    string(out, "request_id", &l.request_id);
    string(out, "trace_id", l.trace_id.as_deref().unwrap_or("-"));
    let mut client = [0u8; 64];
    string(out, "client", display(&l.client, &mut client));
    string(out, "method", l.method.as_str());
    string(out, "path", &l.path);
    string(out, "proto", version(l.version));
    string(out, "route", &l.route);
    number(out, "status", u64::from(status));
    string(out, "subject", l.subject.as_deref().unwrap_or("-"));
    string(out, "reason", l.reason.unwrap_or("-"));
    match l.upstream_spent() {
        Some(upstream) => float(out, "upstream_ms", millis(upstream)),
        None => {
            key(out, "upstream_ms");
            let _ = serde_json::to_writer(&mut *out, &NOT_ASKED);
        }
    }
    float(out, "duration_ms", millis(l.start.elapsed()));
    number(out, "bytes", bytes);
    out.extend_from_slice(b",\"target\":\"gatehouse::access\"}\n");
}

fn key(out: &mut Vec<u8>, name: &str) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
}

fn string(out: &mut Vec<u8>, name: &str, value: &str) {
    key(out, name);
    // serde_json escapes exactly as the formatter it stands in for; writing to a Vec
    // cannot fail.
    let _ = serde_json::to_writer(&mut *out, value);
}

fn number(out: &mut Vec<u8>, name: &str, value: u64) {
    key(out, name);
    let _ = serde_json::to_writer(&mut *out, &value);
}

fn float(out: &mut Vec<u8>, name: &str, value: f64) {
    key(out, name);
    let _ = serde_json::to_writer(&mut *out, &value);
}

/// `2026-11-30T11:47:02.332887Z`: RFC 3339, UTC, microseconds.
fn timestamp(out: &mut Vec<u8>, now: time::OffsetDateTime) {
    let digits = |out: &mut Vec<u8>, value: u32, width: u32| {
        for place in (0..width).rev() {
            let digit = (value / 10u32.pow(place)) % 10;
            out.push(b'0' + digit as u8);
        }
    };
    digits(out, now.year().unsigned_abs(), 4);
    out.push(b'-');
    digits(out, u32::from(u8::from(now.month())), 2);
    out.push(b'-');
    digits(out, u32::from(now.day()), 2);
    out.push(b'T');
    digits(out, u32::from(now.hour()), 2);
    out.push(b':');
    digits(out, u32::from(now.minute()), 2);
    out.push(b':');
    digits(out, u32::from(now.second()), 2);
    out.push(b'.');
    digits(out, now.microsecond(), 6);
    out.push(b'Z');
}

/// An address as text, without an allocation (the longest IPv6 form is 45 bytes).
fn display<'a>(ip: &IpAddr, buf: &'a mut [u8; 64]) -> &'a str {
    use std::io::Write;
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    let _ = write!(cursor, "{ip}");
    let len = usize::try_from(cursor.position()).unwrap_or(0);
    std::str::from_utf8(&buf[..len]).unwrap_or("-")
}

fn version(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/?",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(subject: Option<&str>, upstream: Option<Duration>) -> Pending {
        let request = http::Request::get("/hub?access_token=secret&x=1")
            .body(())
            .unwrap();
        let redactor = Redactor::new(["access_token"]);
        let id = http::HeaderValue::from_static("rid-1");
        let client = "2001:db8::1".parse().unwrap();
        let log_on = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_writer(std::io::sink)
            .finish();
        let mut line = tracing::subscriber::with_default(log_on, || {
            AccessLine::begin(&request, client, &redactor, Arc::from("/hub"), &id)
        });
        assert!(line.logged());
        line.subject = subject.map(str::to_string);
        line.upstream_time = upstream;
        line.trace_id = Some("4bf92f3577b34da6a3ce929d0e0e4736".into());
        line.answered = true;
        Pending {
            line,
            status: 200,
            bytes: 46,
        }
    }

    #[test]
    fn with_the_log_off_a_request_builds_no_line() {
        let request = http::Request::get("/hub?x=1").body(()).unwrap();
        let id = http::HeaderValue::from_static("rid-1");
        let client = "192.0.2.1".parse().unwrap();
        let redactor = Redactor::new(["access_token"]);
        let log_off = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_writer(std::io::sink)
            .finish();
        let line = tracing::subscriber::with_default(log_off, || {
            AccessLine::begin(&request, client, &redactor, Arc::from("/hub"), &id)
        });
        assert!(!line.logged());
        assert!(line.path.is_empty() && line.request_id.is_empty());
    }

    #[test]
    fn the_line_is_one_json_object_with_the_formatters_keys_in_order() {
        // 2026-11-30T09:07:02.000305Z
        let now =
            time::OffsetDateTime::from_unix_timestamp_nanos(1_796_029_622_000_305_000).unwrap();
        let mut out = Vec::new();
        let p = pending(Some("al\"ice"), Some(Duration::from_micros(1500)));
        p.write_json(&mut out, now);
        let text = String::from_utf8(out).unwrap();
        assert!(text.ends_with("}\n"), "{text}");
        assert!(text.starts_with("{\"timestamp\":\"2026-11-30T09:07:02.000305Z\",\"level\":\"INFO\",\"request_id\":\"rid-1\""), "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let at = |key: &str| text.find(&format!("\"{key}\":")).unwrap();
        let keys = [
            "timestamp",
            "level",
            "request_id",
            "trace_id",
            "client",
            "method",
            "path",
            "proto",
            "route",
            "status",
            "subject",
            "reason",
            "upstream_ms",
            "duration_ms",
            "bytes",
            "target",
        ];
        assert_eq!(v.as_object().unwrap().len(), keys.len());
        assert!(
            keys.windows(2).all(|pair| at(pair[0]) < at(pair[1])),
            "{text}"
        );
        assert_eq!(v["client"], "2001:db8::1");
        assert_eq!(v["path"], "/hub?access_token=REDACTED&x=1");
        assert_eq!(v["subject"], "al\"ice");
        assert_eq!(v["upstream_ms"], 1.5);
        assert_eq!(v["status"], 200);
        assert_eq!(v["proto"], "HTTP/1.1");
        assert_eq!(v["target"], "gatehouse::access");
        assert!(!text.contains("secret"));
        let mut out = Vec::new();
        pending(None, None).write_json(&mut out, now);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            (v["subject"].as_str(), v["reason"].as_str()),
            (Some("-"), Some("-"))
        );
        assert!(
            String::from_utf8_lossy(&out).contains("\"upstream_ms\":-1,"),
            "the README's -1, not -1.0"
        );
    }

    /// `upstream_ms` is the upstream's time from the moment the request went out, also
    /// when the line is written before any answer (a request cut while it waited), and
    /// `-1` only for a request refused before the upstream was reached for.
    #[test]
    fn upstream_time_counts_from_the_request_going_out_answered_or_not() {
        let now = time::OffsetDateTime::from_unix_timestamp(1_796_029_622).unwrap();
        let upstream_ms = |p: &Pending| {
            let mut out = Vec::new();
            p.write_json(&mut out, now);
            let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
            v["upstream_ms"].as_f64().unwrap()
        };
        let mut waiting = pending(None, None);
        waiting.line.asking_upstream();
        std::thread::sleep(Duration::from_millis(20));
        assert!(upstream_ms(&waiting) >= 20.0, "a cut request's wait");
        let answered = waiting.line.upstream_answered();
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(
            upstream_ms(&waiting),
            millis(answered),
            "fixed at the answer"
        );
        waiting.line.upstream_not_asked();
        assert_eq!(upstream_ms(&waiting), -1.0);
    }

    #[test]
    fn milliseconds_are_rounded_to_the_microsecond_without_float_noise() {
        assert_eq!(
            serde_json::to_string(&millis(Duration::from_nanos(3_432_639))).unwrap(),
            "3.432"
        );
        assert_eq!(millis(Duration::from_micros(1500)), 1.5);
        let mut out = Vec::new();
        let now = time::OffsetDateTime::from_unix_timestamp(1_796_029_622).unwrap();
        pending(None, Some(Duration::from_nanos(3_432_639_999))).write_json(&mut out, now);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("\"upstream_ms\":3432.639,"), "{text}");
        let duration = text.split("\"duration_ms\":").nth(1).unwrap_or_default();
        let digits = duration.split(',').next().unwrap_or_default();
        let decimals = digits.split('.').nth(1).map_or(0, str::len);
        assert!(decimals <= 3, "{text}");
    }
}
