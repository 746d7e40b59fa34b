//! Timers: [`sleep`], [`sleep_until`], [`timeout`]. Deadlines wait in a binary heap; the
//! runtime's loop fires the due ones before each dispatch and bounds the dispatch's wait by
//! the next deadline, so a timer on an idle core fires as soon as the backend returns
//! (`tests/runtime.rs` checks within 2 ms of the deadline over the wire, epoll and io_uring). A
//! dropped timer leaves its heap entry behind, skipped when it comes up; the heap is rebuilt
//! when such entries outnumber live timers.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::error::Elapsed;
use crate::executor::{Core, current};
use crate::reactor::set_waker;
use crate::slots::{Key, Slots};

struct Entry {
    waker: Option<Waker>,
}

/// The core's timers.
#[derive(Default)]
pub(crate) struct Timers {
    heap: BinaryHeap<Reverse<(Instant, u32, u32)>>,
    entries: Slots<Entry>,
}

impl Timers {
    fn insert(&mut self, deadline: Instant, waker: &Waker) -> Key {
        let key = self.entries.insert(Entry {
            waker: Some(waker.clone()),
        });
        self.heap
            .push(Reverse((deadline, key.index, key.generation)));
        key
    }

    fn cancel(&mut self, key: Key) {
        self.entries.remove(key);
        if self.heap.len() > 64 && self.heap.len() > 4 * self.entries.len() {
            let entries = &mut self.entries;
            self.heap.retain(|Reverse((_, index, generation))| {
                entries
                    .get_mut(Key {
                        index: *index,
                        generation: *generation,
                    })
                    .is_some()
            });
        }
    }

    /// Removes the timers due at `now`; their wakers go to `out`. How many fired.
    pub(crate) fn fire(&mut self, now: Instant, out: &mut Vec<Waker>) -> u64 {
        let mut fired = 0;
        while let Some(Reverse((deadline, index, generation))) = self.heap.peek().copied() {
            if deadline > now {
                break;
            }
            self.heap.pop();
            if let Some(e) = self.entries.remove(Key { index, generation }) {
                fired += 1;
                out.extend(e.waker);
            }
        }
        fired
    }

    /// The earliest deadline of a live timer.
    pub(crate) fn next(&mut self) -> Option<Instant> {
        while let Some(Reverse((deadline, index, generation))) = self.heap.peek().copied() {
            if self.entries.get_mut(Key { index, generation }).is_some() {
                return Some(deadline);
            }
            self.heap.pop();
        }
        None
    }

    /// Live timers.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

/// A future that completes at a deadline. See [`sleep`].
#[must_use = "futures do nothing unless polled"]
pub struct Sleep {
    deadline: Instant,
    key: Option<Key>,
    core: Rc<Core>,
}

impl Sleep {
    /// Its deadline.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Moves the deadline (the timer restarts, even if it had fired).
    pub fn reset(&mut self, deadline: Instant) {
        self.forget();
        self.deadline = deadline;
    }

    fn forget(&mut self) {
        if let Some(key) = self.key.take() {
            self.core.io.borrow_mut().timers.cancel(key);
        }
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.deadline {
            self.forget();
            return Poll::Ready(());
        }
        let this = &mut *self;
        let mut io = this.core.io.borrow_mut();
        let timers = &mut io.timers;
        match this.key.and_then(|k| timers.entries.get_mut(k)) {
            Some(e) => set_waker(&mut e.waker, cx.waker()),
            None => this.key = Some(timers.insert(this.deadline, cx.waker())),
        }
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some(key) = self.key.take()
            && let Ok(mut io) = self.core.io.try_borrow_mut()
        {
            io.timers.cancel(key);
        }
    }
}

/// Completes after `duration`. Panics outside a runtime.
pub fn sleep(duration: Duration) -> Sleep {
    sleep_until(Instant::now() + duration)
}

/// Completes at `deadline`. Panics outside a runtime.
pub fn sleep_until(deadline: Instant) -> Sleep {
    Sleep {
        deadline,
        key: None,
        core: current(),
    }
}

/// Runs `future` for at most `duration`: its output, or [`Elapsed`] (the future is dropped
/// then: cancelled). Panics outside a runtime.
pub async fn timeout<F: Future>(duration: Duration, future: F) -> Result<F::Output, Elapsed> {
    let mut future = std::pin::pin!(future);
    let mut sleep = sleep(duration);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(v) = future.as_mut().poll(cx) {
            return Poll::Ready(Ok(v));
        }
        match Pin::new(&mut sleep).poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Elapsed)),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::task::Wake;

    struct Nop;
    impl Wake for Nop {
        fn wake(self: Arc<Self>) {}
    }

    #[test]
    fn due_timers_fire_in_order_and_cancelled_ones_never() {
        let w = Waker::from(Arc::new(Nop));
        let mut t = Timers::default();
        let t0 = Instant::now();
        let a = t.insert(t0 + Duration::from_millis(5), &w);
        let _b = t.insert(t0 + Duration::from_millis(1), &w);
        t.cancel(a);
        assert_eq!(t.next(), Some(t0 + Duration::from_millis(1)));
        let mut out = Vec::new();
        assert_eq!(t.fire(t0, &mut out), 0);
        assert_eq!(t.fire(t0 + Duration::from_millis(10), &mut out), 1);
        assert_eq!(out.len(), 1);
        assert_eq!(t.next(), None);
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn cancelled_entries_do_not_pile_up() {
        let w = Waker::from(Arc::new(Nop));
        let mut t = Timers::default();
        let far = Instant::now() + Duration::from_secs(30);
        for _ in 0..100_000 {
            let k = t.insert(far, &w);
            t.cancel(k);
        }
        assert!(t.heap.len() <= 65, "{} heap entries", t.heap.len());
    }
}
