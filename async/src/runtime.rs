//! The loop: one core's channel, its tasks and its timers, run on the core's thread.
//!
//! One turn: poll the ready tasks (each queues its commands), hand the queued commands to
//! the channel, fire the due timers, `dispatch` (waiting no longer than the next deadline,
//! and not at all when a task is ready), and route each completion to the socket its cookie
//! names, waking the one task that waits for it.

use std::future::Future;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use megatcp_channel::{Backend, Channel};

use crate::executor::{Core, Enter, current};
use crate::reactor::{RuntimeStats, set_waker};

/// The longest an idle turn waits in `dispatch`: a wake from another thread is seen within
/// this time.
pub const REMOTE_WAKE: Duration = Duration::from_millis(10);

/// One core's async runtime over a channel: build it on the core's thread with the core's
/// channel, then [`block_on`](Runtime::block_on) the core's main future.
///
/// ```no_run
/// use megatcp_async::{Runtime, TcpListener, spawn_local};
/// use megatcp_channel::{Backend, Channel};
///
/// fn serve<B: Backend>(ch: &mut Channel<B>) -> std::io::Result<()> {
///     Runtime::new(ch).block_on(async {
///         let listener = TcpListener::bind("0.0.0.0:7").await?;
///         while let Ok((mut stream, _)) = listener.accept().await {
///             spawn_local(async move {
///                 while let Ok(data) = stream.recv().await {
///                     if data.is_empty() || stream.send(data).await.is_err() {
///                         break;
///                     }
///                 }
///             });
///         }
///         Ok(())
///     })
/// }
/// ```
pub struct Runtime<'c, B: Backend> {
    ch: &'c mut Channel<B>,
    core: Rc<Core>,
    grace: Duration,
    wakers: Vec<Waker>,
}

impl<'c, B: Backend> Runtime<'c, B> {
    /// A runtime over `ch` (one core's channel).
    pub fn new(ch: &'c mut Channel<B>) -> Self {
        Self {
            ch,
            core: Core::new(),
            grace: Duration::from_secs(1),
            wakers: Vec::new(),
        }
    }

    /// How long the other tasks may run on once the main future of
    /// [`block_on`](Runtime::block_on) is done (default 1 s; they are dropped then).
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// The runtime's counters.
    pub fn stats(&self) -> RuntimeStats {
        self.core.io.borrow().stats
    }

    /// The channel.
    pub fn channel(&mut self) -> &mut Channel<B> {
        self.ch
    }

    /// Runs `future` (and the tasks it spawns) to completion; its output.
    ///
    /// When `future` is done, the tasks still running get the grace period to finish, then
    /// are dropped: their streams and listeners close (queued writes still go out, then the
    /// FIN). Panics if a runtime already runs on this thread; a panicking task panics here.
    pub fn block_on<F: Future>(&mut self, future: F) -> F::Output {
        let _enter = Enter::new(self.core.clone());
        let mut future = std::pin::pin!(future);
        self.core.wake_main();
        let out = loop {
            if let Some(v) = self.core.run_ready(&mut |cx| future.as_mut().poll(cx)) {
                break v;
            }
            self.turn(None);
        };
        let end = Instant::now() + self.grace;
        while self.core.tasks() > 0 && Instant::now() < end {
            self.core.run_ready(&mut |_| Poll::<()>::Pending);
            self.turn(Some(end));
        }
        self.core.drop_tasks();
        self.hand_over();
        self.ch.flush();
        out
    }

    /// Moves the commands the futures queued into the channel.
    fn hand_over(&mut self) {
        let mut io = self.core.io.borrow_mut();
        for c in io.cmds.drain(..) {
            self.ch.push(c);
        }
    }

    /// One turn of the loop (see the module docs); waits at most until `end`.
    fn turn(&mut self, end: Option<Instant>) {
        self.hand_over();
        let now = Instant::now();
        let next = {
            let mut io = self.core.io.borrow_mut();
            io.stats.turns += 1;
            let fired = io.timers.fire(now, &mut self.wakers);
            io.stats.timers_fired += fired;
            io.timers.next()
        };
        let woke = !self.wakers.is_empty();
        for w in self.wakers.drain(..) {
            w.wake();
        }
        let wait = if woke || !self.core.ready.is_empty() {
            Duration::ZERO
        } else {
            let mut wait = REMOTE_WAKE;
            for at in [next, end].into_iter().flatten() {
                wait = wait.min(at.saturating_duration_since(now));
            }
            wait
        };
        let mut batch = self.ch.dispatch(Some(wait));
        {
            let mut io = self.core.io.borrow_mut();
            for c in batch.drain(..) {
                io.complete(c, &mut self.wakers);
            }
            if !io.stopping && self.ch.is_stopping() {
                io.stop(&mut self.wakers);
            }
        }
        self.ch.recycle(batch);
        for w in self.wakers.drain(..) {
            w.wake();
        }
    }
}

impl<B: Backend> Drop for Runtime<'_, B> {
    fn drop(&mut self) {
        // Streams dropped after the last block_on still close.
        self.hand_over();
        self.ch.flush();
    }
}

/// The counters of this thread's runtime. Panics outside one.
pub fn stats() -> RuntimeStats {
    current().io.borrow().stats
}

/// Whether this core's runtime was asked to stop (SIGINT/SIGTERM through `launch`, or
/// [`request_stop`]). Panics outside a runtime.
pub fn is_stopping() -> bool {
    current().io.borrow().stopping
}

/// Asks this core's runtime to stop: [`stopping`] completes, `accept` fails with
/// [`Stopped`](crate::Stopped). Panics outside a runtime.
pub fn request_stop() {
    let core = current();
    let mut wake = Vec::new();
    {
        let mut io = core.io.borrow_mut();
        if !io.stopping {
            io.stop(&mut wake);
        }
    }
    for w in wake {
        w.wake();
    }
}

/// Completes once this core's runtime is asked to stop (see [`is_stopping`]): a server's
/// signal to wind down (stop accepting, finish its connections). Panics outside a runtime.
pub async fn stopping() {
    let core = current();
    std::future::poll_fn(|cx| {
        let mut io = core.io.borrow_mut();
        if io.stopping {
            return Poll::Ready(());
        }
        if !io.stop_wakers.iter().any(|w| w.will_wake(cx.waker())) {
            let mut slot = None;
            set_waker(&mut slot, cx.waker());
            io.stop_wakers.extend(slot);
        }
        Poll::Pending
    })
    .await;
}
