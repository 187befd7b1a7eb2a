//! Log setup: `tracing` to stdout, JSON or text, filtered by `RUST_LOG` (default `info`).
//! What is logged is the callers' business; this module only decides where it goes.
//!
//! A worker never writes to stdout itself: it appends the formatted line to one shared
//! buffer, and one writer thread writes whatever has gathered in one go. The writer is
//! woken only by the first line after a write and then waits [`GATHER`] for more, so under
//! load the workers pay a short uncontended lock per line and the process one wake-up and
//! one `write` per batch, not per request. A stdout that is slow or blocked (a full pipe, a
//! stalled log collector) therefore never holds a request: past [`MAX_BUFFERED`] bytes a
//! line is dropped and counted in `gatehouse_log_lines_dropped_total` instead.

use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Bytes that may wait for the writer thread; past this, lines are dropped.
pub const MAX_BUFFERED: usize = 8 * 1024 * 1024;
/// How long the writer lets lines gather after the first one: the longest a line waits.
const GATHER: Duration = Duration::from_millis(10);

/// Flushes the buffered lines when dropped: hold it until the process is done logging.
pub struct LogGuard {
    writer: Option<(Queue, JoinHandle<()>)>,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        if let Some((queue, thread)) = self.writer.take() {
            queue.shared.lock().stop = true;
            queue.shared.ready.notify_one();
            let _ = thread.join();
        }
    }
}

/// Installs the global subscriber; a second call (tests starting several proxies) is a no-op.
pub fn init(format: LogFormat) -> LogGuard {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let (queue, thread) = match spawn_writer(io::stdout(), MAX_BUFFERED) {
        Ok(started) => started,
        // No thread: log as before, straight to stdout.
        Err(_) => return init_with(format, filter, io::stdout),
    };
    if format == LogFormat::Json {
        let sink = queue.clone();
        crate::log_sink::install(Box::new(move |line| sink.push(line)));
    }
    init_with(format, filter, queue.clone());
    LogGuard {
        writer: Some((queue, thread)),
    }
}

/// Installs the subscriber over `writer`; a guard that flushes nothing (the caller keeps
/// the writer's own guard, if it has one).
fn init_with<W>(format: LogFormat, filter: EnvFilter, writer: W) -> LogGuard
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(io::stdout().is_terminal());
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Text => builder.with_target(true).try_init(),
    };
    LogGuard { writer: None }
}

struct Pending {
    bytes: Vec<u8>,
    stop: bool,
}

struct Shared {
    pending: Mutex<Pending>,
    /// Signalled by the first line after a write, and by the guard's stop.
    ready: Condvar,
    max: usize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        // Only byte appends happen under the lock: a panic cannot leave it inconsistent.
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The workers' end of the buffer; `tracing` writes each formatted event once.
#[derive(Clone)]
pub struct Queue {
    shared: Arc<Shared>,
}

impl Queue {
    fn push(&self, line: &[u8]) {
        let mut pending = self.shared.lock();
        if pending.bytes.len() + line.len() > self.shared.max {
            drop(pending);
            crate::metrics::count_dropped_log_line();
            return;
        }
        let first = pending.bytes.is_empty();
        pending.bytes.extend_from_slice(line);
        drop(pending);
        if first {
            self.shared.ready.notify_one();
        }
    }
}

impl Write for &Queue {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.push(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Queue {
    type Writer = &'a Queue;

    fn make_writer(&'a self) -> Self::Writer {
        self
    }
}

/// Starts the writer thread over `out`, buffering at most `max` bytes.
pub fn spawn_writer<W: Write + Send + 'static>(
    out: W,
    max: usize,
) -> io::Result<(Queue, JoinHandle<()>)> {
    let shared = Arc::new(Shared {
        pending: Mutex::new(Pending {
            bytes: Vec::new(),
            stop: false,
        }),
        ready: Condvar::new(),
        max,
    });
    let theirs = shared.clone();
    let thread = std::thread::Builder::new()
        .name("gatehouse-log".into())
        .spawn(move || write_batches(&theirs, out))?;
    Ok((Queue { shared }, thread))
}

/// Waits for a line, lets more gather for [`GATHER`], then writes all of them in one go;
/// after the guard's stop, writes what is left and ends.
fn write_batches<W: Write>(shared: &Shared, mut out: W) {
    let mut batch = Vec::new();
    loop {
        let mut pending = shared.lock();
        while pending.bytes.is_empty() && !pending.stop {
            pending = shared
                .ready
                .wait(pending)
                .unwrap_or_else(|p| p.into_inner());
        }
        if !pending.stop {
            drop(pending);
            std::thread::sleep(GATHER);
            pending = shared.lock();
        }
        std::mem::swap(&mut pending.bytes, &mut batch);
        let stop = pending.stop;
        drop(pending);
        // A failed write (stdout closed) loses this batch; logging must not stop serving.
        let _ = out.write_all(&batch).and_then(|()| out.flush());
        batch.clear();
        if stop {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use std::thread::JoinHandle;

    /// A writer that blocks until released, as a stalled stdout pipe does.
    struct Blocked {
        gate: Arc<(Mutex<bool>, std::sync::Condvar)>,
        seen: Arc<Mutex<Vec<u8>>>,
        entered: Arc<std::sync::atomic::AtomicBool>,
    }

    impl Write for Blocked {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.entered
                .store(true, std::sync::atomic::Ordering::SeqCst);
            let (open, cv) = &*self.gate;
            let mut g = open.lock().unwrap();
            while !*g {
                g = cv.wait(g).unwrap();
            }
            self.seen.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn stop(queue: Queue, thread: JoinHandle<()>) {
        drop(LogGuard {
            writer: Some((queue, thread)),
        });
    }

    #[test]
    fn a_blocked_stdout_drops_and_counts_lines_instead_of_blocking() {
        let gate = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let entered = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let out = Blocked {
            gate: gate.clone(),
            seen: seen.clone(),
            entered: entered.clone(),
        };
        let line = b"line\n";
        let (queue, thread) = spawn_writer(out, 200 * line.len()).unwrap();
        // The writer takes this one and then blocks on the stalled stdout.
        (&queue).write_all(line).unwrap();
        while !entered.load(std::sync::atomic::Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(1));
        }
        let before = crate::metrics::dropped_log_lines();
        // More lines than the buffer holds, while the writer is stuck: none of this blocks.
        for _ in 0..300 {
            (&queue).write_all(line).unwrap();
        }
        assert!(crate::metrics::dropped_log_lines() - before >= 100);
        *gate.0.lock().unwrap() = true;
        gate.1.notify_all();
        stop(queue, thread);
        assert_eq!(seen.lock().unwrap().len(), 201 * line.len());
    }

    #[test]
    fn a_line_is_written_soon_without_waiting_for_more() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        struct Shared(Arc<Mutex<Vec<u8>>>);
        impl Write for Shared {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let (queue, thread) = spawn_writer(Shared(seen.clone()), MAX_BUFFERED).unwrap();
        (&queue).write_all(b"one\n").unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while seen.lock().unwrap().is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(&seen.lock().unwrap()[..], b"one\n");
        // What is still buffered when the guard goes is written before it returns.
        (&queue).write_all(b"two\n").unwrap();
        stop(queue, thread);
        assert_eq!(&seen.lock().unwrap()[..], b"one\ntwo\n");
    }
}
