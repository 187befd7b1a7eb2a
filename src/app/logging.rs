//! Log setup: `tracing` to stdout, JSON or text, filtered by `RUST_LOG` (default `info`).
//! What is logged is the callers' business; this module only decides where it goes.
//!
//! A worker never writes to stdout itself: a formatted line goes into a bounded queue
//! ([`QUEUE_LINES`]) and one writer thread writes whatever has queued up in one batch. A
//! stdout that is slow or blocked (a full pipe, a stalled log collector) therefore never
//! holds a request; when the queue is full the line is dropped and counted in
//! `gatehouse_log_lines_dropped_total` instead.

use std::io::{self, Write};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::thread::JoinHandle;

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Lines that may wait for the writer thread; past this, lines are dropped.
pub const QUEUE_LINES: usize = 16 * 1024;
/// Bytes gathered before one write to stdout.
const BATCH_BYTES: usize = 64 * 1024;

/// Flushes the queued lines when dropped: hold it until the process is done logging.
pub struct LogGuard {
    writer: Option<(Queue, JoinHandle<()>)>,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        if let Some((queue, thread)) = self.writer.take() {
            // The subscriber keeps its own sender, so the queue never disconnects: an empty
            // line (which `tracing` never writes) tells the writer to finish.
            if queue.tx.send(Vec::new()).is_ok() {
                let _ = thread.join();
            }
        }
    }
}

/// Installs the global subscriber; a second call (tests starting several proxies) is a no-op.
pub fn init(format: LogFormat) -> LogGuard {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    use std::io::IsTerminal;
    let (queue, thread) = match spawn_writer(io::stdout()) {
        Ok(started) => started,
        // No thread: log as before, straight to stdout.
        Err(_) => return init_with(format, filter, io::stdout),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(queue.clone())
        .with_ansi(std::io::stdout().is_terminal());
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Text => builder.with_target(true).try_init(),
    };
    LogGuard {
        writer: Some((queue, thread)),
    }
}

fn init_with<W>(format: LogFormat, filter: EnvFilter, writer: W) -> LogGuard
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
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

/// The sending end of the line queue; `tracing` writes each formatted event once.
#[derive(Clone)]
pub struct Queue {
    tx: SyncSender<Vec<u8>>,
}

impl Queue {
    fn push(&self, line: &[u8]) {
        if line.is_empty() {
            return;
        }
        match self.tx.try_send(line.to_vec()) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                crate::metrics::count_dropped_log_line();
            }
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

/// Starts the writer thread over `out`.
pub fn spawn_writer<W: Write + Send + 'static>(out: W) -> io::Result<(Queue, JoinHandle<()>)> {
    let (tx, rx) = mpsc::sync_channel(QUEUE_LINES);
    let thread = std::thread::Builder::new()
        .name("gatehouse-log".into())
        .spawn(move || write_batches(&rx, out))?;
    Ok((Queue { tx }, thread))
}

/// Waits for a line, then takes every line already queued and writes them in one go;
/// ends after an empty line (the guard's stop) or when every sender is gone.
fn write_batches<W: Write>(rx: &Receiver<Vec<u8>>, mut out: W) {
    let mut batch = Vec::with_capacity(BATCH_BYTES);
    while let Ok(line) = rx.recv() {
        let mut stop = line.is_empty();
        batch.extend_from_slice(&line);
        while !stop && batch.len() < BATCH_BYTES {
            match rx.try_recv() {
                Ok(line) => {
                    stop = line.is_empty();
                    batch.extend_from_slice(&line);
                }
                Err(_) => break,
            }
        }
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

    /// A writer that blocks until released, as a stalled stdout pipe does.
    struct Blocked {
        gate: Arc<(Mutex<bool>, std::sync::Condvar)>,
        seen: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for Blocked {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
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

    #[test]
    fn a_blocked_stdout_drops_and_counts_lines_instead_of_blocking() {
        let gate = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let out = Blocked {
            gate: gate.clone(),
            seen: seen.clone(),
        };
        let (queue, thread) = spawn_writer(out).unwrap();
        let before = crate::metrics::dropped_log_lines();
        // More lines than the queue holds, while the writer is stuck: none of this blocks.
        for _ in 0..QUEUE_LINES + 100 {
            (&queue).write_all(b"line\n").unwrap();
        }
        assert!(crate::metrics::dropped_log_lines() - before >= 99);
        *gate.0.lock().unwrap() = true;
        gate.1.notify_all();
        drop(queue);
        thread.join().unwrap();
        let written = seen.lock().unwrap().len() / b"line\n".len();
        assert!(
            (QUEUE_LINES..QUEUE_LINES + 100).contains(&written),
            "{written}"
        );
    }
}
