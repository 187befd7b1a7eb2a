//! Where pre-formatted JSON log lines go when the process logs JSON through its own
//! writer: the access log formats its one line per request itself (a few hundred
//! nanoseconds) instead of through `tracing`'s JSON formatter (several microseconds, most
//! of it generic field visiting). Unset (text logs, or a library user with their own
//! subscriber), lines go through `tracing` as every other event does.

use std::sync::OnceLock;

type Sink = Box<dyn Fn(&[u8]) + Send + Sync>;

static SINK: OnceLock<Sink> = OnceLock::new();

/// Installs the sink; the first installation stands.
pub fn install(sink: Sink) {
    let _ = SINK.set(sink);
}

/// The sink, when JSON lines may be written to it directly.
pub(crate) fn get() -> Option<&'static Sink> {
    SINK.get()
}
