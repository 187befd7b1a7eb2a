//! The waker an HTTP/1.1 upstream connection is driven with, so a response body can take
//! a frame without waking its own task.
//!
//! A connection is driven inline by the task of the request that holds it
//! (the pool, `pool.rs`), and hyper registers that task's waker on everything the
//! connection waits for, the response body's channel included. Taking a frame from that
//! channel wakes the connection ("room for the next one") from inside the very poll that
//! took it: one more poll of the whole client connection task per response, for nothing,
//! since the body drives its connection itself before it waits on the channel again.
//!
//! So the connection gets a waker of its own that forwards to whichever task drove it last,
//! and holds back the wake-ups that happen on this thread while a body takes a frame. One
//! held back is given to the task after all when the body ends up waiting: only a poll that
//! returned a frame, which obliges nobody to wake anybody, loses its wake-up.

use std::cell::Cell;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use futures_util::task::AtomicWaker;

thread_local! {
    /// `Some` while a response body takes a frame on this thread; `Some(true)` once a
    /// connection's wake-up was held back meanwhile.
    static TAKING: Cell<Option<bool>> = const { Cell::new(None) };
}

/// The task a connection wakes.
#[derive(Default)]
struct Forward(AtomicWaker);

impl Wake for Forward {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let held = TAKING.with(|taking| match taking.get() {
            Some(_) => {
                taking.set(Some(true));
                true
            }
            None => false,
        });
        if !held {
            self.0.wake();
        }
    }
}

/// One connection's waker.
pub(crate) struct ConnWaker {
    forward: Arc<Forward>,
    waker: Waker,
}

impl ConnWaker {
    pub(crate) fn new() -> Self {
        let forward = Arc::new(Forward::default());
        let waker = Waker::from(forward.clone());
        Self { forward, waker }
    }

    /// The waker to poll the connection with on behalf of `driver`'s task.
    pub(crate) fn on_behalf_of(&self, driver: &Context<'_>) -> &Waker {
        self.forward.0.register(driver.waker());
        &self.waker
    }

    /// From now on the connection wakes nobody: it is parked. The next request queued on
    /// it would otherwise wake the task that drove it last, which is often its own.
    pub(crate) fn park(&self) {
        self.forward.0.register(Waker::noop());
    }
}

/// Polls a response body for a frame the connection may already have read: a wake-up of a
/// connection on this thread meanwhile is held back, and given to `cx` if the body waits.
pub(crate) fn taking<T>(
    cx: &mut Context<'_>,
    poll: impl FnOnce(&mut Context<'_>) -> Poll<T>,
) -> Poll<T> {
    let outer = TAKING.with(|taking| taking.replace(Some(false)));
    let polled = poll(cx);
    let held = TAKING.with(|taking| taking.replace(outer)) == Some(true);
    if held && polled.is_pending() {
        cx.waker().wake_by_ref();
    }
    polled
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Default)]
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.wake_by_ref();
        }

        fn wake_by_ref(self: &Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn task() -> (Arc<Count>, Waker) {
        let count = Arc::new(Count::default());
        (count.clone(), Waker::from(count))
    }

    #[test]
    fn a_connection_wakes_the_task_that_drove_it_last() {
        let conn = ConnWaker::new();
        let (first, first_waker) = task();
        let (second, second_waker) = task();
        let registered = conn
            .on_behalf_of(&Context::from_waker(&first_waker))
            .clone();
        conn.on_behalf_of(&Context::from_waker(&second_waker));
        registered.wake_by_ref();
        assert_eq!(first.0.load(Ordering::SeqCst), 0);
        assert_eq!(second.0.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_wake_up_while_taking_a_frame_is_held_back_only_when_one_came() {
        let conn = ConnWaker::new();
        let (driver, driver_waker) = task();
        let mut cx = Context::from_waker(&driver_waker);
        let registered = conn.on_behalf_of(&cx).clone();
        let took = taking(&mut cx, |_| {
            registered.wake_by_ref();
            Poll::Ready(())
        });
        assert!(took.is_ready());
        assert_eq!(
            driver.0.load(Ordering::SeqCst),
            0,
            "woken for a frame it took"
        );
        conn.on_behalf_of(&cx);
        let waited = taking(&mut cx, |_| {
            registered.wake_by_ref();
            Poll::<()>::Pending
        });
        assert!(waited.is_pending());
        assert_eq!(
            driver.0.load(Ordering::SeqCst),
            1,
            "a waiting body lost its wake-up"
        );
        // Outside a take, and for other threads at any time, nothing is held back.
        conn.on_behalf_of(&cx);
        let elsewhere = registered.clone();
        let _ = taking(&mut cx, |_| {
            std::thread::spawn(move || elsewhere.wake_by_ref())
                .join()
                .unwrap();
            Poll::Ready(())
        });
        assert_eq!(driver.0.load(Ordering::SeqCst), 2);
        conn.on_behalf_of(&cx);
        registered.wake_by_ref();
        assert_eq!(driver.0.load(Ordering::SeqCst), 3);
        conn.on_behalf_of(&cx);
        conn.park();
        registered.wake_by_ref();
        assert_eq!(
            driver.0.load(Ordering::SeqCst),
            3,
            "a parked connection woke a task"
        );
    }
}
