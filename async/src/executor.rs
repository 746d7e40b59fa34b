//! Tasks: [`spawn_local`], [`JoinHandle`], [`yield_now`], and the per-thread context the
//! runtime's futures find their core in.
//!
//! A task is a boxed future in a slot of the core's task table. Its waker names the slot
//! (index and generation) and puts that one task on the ready queue, once, however often it
//! is woken before it runs. Tasks need not be `Send`: they never leave their core's thread.
//! Wakers are `Send` (the standard library requires it): a wake from another thread lands in
//! the same queue and is seen at the runtime's next turn (at most [`crate::REMOTE_WAKE`]
//! later on an idle core).

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};

use crate::error::JoinError;
use crate::reactor::Reactor;
use crate::slots::{Key, Slots};

/// The main future's id on the ready queue.
const MAIN: Key = Key {
    index: u32::MAX,
    generation: u32::MAX,
};

/// Tasks woken and not yet run (any thread may add to it).
#[derive(Default)]
pub(crate) struct ReadyQueue(Mutex<Vec<Key>>);

impl ReadyQueue {
    fn push(&self, id: Key) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(id);
    }

    /// Moves the queued ids into `into` (empty).
    fn take(&self, into: &mut Vec<Key>) {
        std::mem::swap(
            &mut *self.0.lock().unwrap_or_else(PoisonError::into_inner),
            into,
        );
    }

    /// Whether a task waits to run.
    pub(crate) fn is_empty(&self) -> bool {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty()
    }
}

/// What a task's waker holds.
struct TaskWaker {
    id: Key,
    queued: AtomicBool,
    ready: Arc<ReadyQueue>,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.queued.swap(true, Ordering::AcqRel) {
            self.ready.push(self.id);
        }
    }
}

struct Task {
    /// `None` while the task is being polled.
    future: Option<Pin<Box<dyn Future<Output = ()>>>>,
    flag: Arc<TaskWaker>,
    waker: Waker,
}

/// One core's runtime state, shared by its futures (never across threads).
pub(crate) struct Core {
    pub(crate) io: RefCell<Reactor>,
    tasks: RefCell<Slots<Task>>,
    pub(crate) ready: Arc<ReadyQueue>,
    main: Arc<TaskWaker>,
    /// Ids taken off the ready queue, reused.
    batch: RefCell<Vec<Key>>,
}

impl Core {
    pub(crate) fn new() -> Rc<Self> {
        let ready = Arc::new(ReadyQueue::default());
        Rc::new(Self {
            io: RefCell::new(Reactor::default()),
            tasks: RefCell::new(Slots::default()),
            main: Arc::new(TaskWaker {
                id: MAIN,
                queued: AtomicBool::new(false),
                ready: ready.clone(),
            }),
            ready,
            batch: RefCell::new(Vec::new()),
        })
    }

    fn spawn(&self, future: Pin<Box<dyn Future<Output = ()>>>) {
        let mut tasks = self.tasks.borrow_mut();
        let id = tasks.insert(Task {
            future: None,
            flag: self.main.clone(),
            waker: Waker::noop().clone(),
        });
        let flag = Arc::new(TaskWaker {
            id,
            queued: AtomicBool::new(true),
            ready: self.ready.clone(),
        });
        if let Some(t) = tasks.get_mut(id) {
            t.future = Some(future);
            t.waker = Waker::from(flag.clone());
            t.flag = flag;
        }
        drop(tasks);
        self.ready.push(id);
        self.io.borrow_mut().stats.spawned += 1;
    }

    /// Queues the main future to be polled.
    pub(crate) fn wake_main(&self) {
        self.main.clone().wake();
    }

    /// Tasks alive.
    pub(crate) fn tasks(&self) -> usize {
        self.tasks.borrow().len()
    }

    /// Polls every task that was ready when called, and the main future (through `main`)
    /// if it was; the main future's output once it has one.
    pub(crate) fn run_ready<T>(
        &self,
        main: &mut dyn FnMut(&mut Context<'_>) -> Poll<T>,
    ) -> Option<T> {
        let mut batch = self.batch.take();
        self.ready.take(&mut batch);
        let mut out = None;
        let mut polls = 0;
        let mut ids = batch.drain(..);
        for id in ids.by_ref() {
            polls += 1;
            if id == MAIN {
                self.main.queued.store(false, Ordering::Release);
                let waker = Waker::from(self.main.clone());
                if let Poll::Ready(v) = main(&mut Context::from_waker(&waker)) {
                    out = Some(v);
                    break;
                }
                continue;
            }
            let Some((mut future, waker)) = self.tasks.borrow_mut().get_mut(id).and_then(|t| {
                t.flag.queued.store(false, Ordering::Release);
                Some((t.future.take()?, t.waker.clone()))
            }) else {
                continue;
            };
            if future
                .as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_ready()
            {
                let task = self.tasks.borrow_mut().remove(id);
                drop((task, future));
            } else if let Some(t) = self.tasks.borrow_mut().get_mut(id) {
                t.future = Some(future);
            }
        }
        // The main future finished first: the rest stay queued.
        for id in ids {
            self.ready.push(id);
        }
        self.batch.replace(batch);
        self.io.borrow_mut().stats.polls += polls;
        out
    }

    /// Drops every task (their sockets close).
    pub(crate) fn drop_tasks(&self) {
        let keys = self.tasks.borrow().keys();
        for k in keys {
            let task = self.tasks.borrow_mut().remove(k);
            drop(task);
        }
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Rc<Core>>> = const { RefCell::new(None) };
}

/// The core of the runtime running on this thread. Panics outside one.
pub(crate) fn current() -> Rc<Core> {
    CURRENT
        .with(|c| c.borrow().clone())
        .expect("megatcp-async: no runtime on this thread (call it inside Runtime::block_on)")
}

/// Makes `core` this thread's runtime until dropped.
pub(crate) struct Enter(());

impl Enter {
    pub(crate) fn new(core: Rc<Core>) -> Self {
        CURRENT.with(|c| {
            let mut c = c.borrow_mut();
            assert!(
                c.is_none(),
                "megatcp-async: a runtime already runs on this thread (block_on inside block_on)"
            );
            *c = Some(core);
        });
        Self(())
    }
}

impl Drop for Enter {
    fn drop(&mut self) {
        CURRENT.with(|c| c.borrow_mut().take());
    }
}

/// What a task and its [`JoinHandle`] share.
struct Join<T> {
    value: Option<T>,
    /// The task is gone (completed or dropped).
    done: bool,
    waker: Option<Waker>,
}

/// Marks the task gone when its future is dropped, completed or not.
struct Finish<T>(Rc<RefCell<Join<T>>>);

impl<T> Drop for Finish<T> {
    fn drop(&mut self) {
        let waker = {
            let mut j = self.0.borrow_mut();
            j.done = true;
            j.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// Awaits a spawned task's output. Dropping it detaches the task (it runs on).
pub struct JoinHandle<T> {
    join: Rc<RefCell<Join<T>>>,
}

impl<T> JoinHandle<T> {
    /// Whether the task is gone (completed, or dropped with its runtime).
    pub fn is_finished(&self) -> bool {
        self.join.borrow().done
    }
}

impl<T> Future for JoinHandle<T> {
    type Output = Result<T, JoinError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut j = self.join.borrow_mut();
        if let Some(v) = j.value.take() {
            return Poll::Ready(Ok(v));
        }
        if j.done {
            return Poll::Ready(Err(JoinError));
        }
        crate::reactor::set_waker(&mut j.waker, cx.waker());
        Poll::Pending
    }
}

/// Runs `future` as a task of this core's runtime, concurrently with the others, on this
/// thread (it need not be `Send`). Panics outside a runtime.
///
/// Tasks still running when [`Runtime::block_on`](crate::Runtime::block_on) returns (after
/// its grace period) are dropped, and their sockets closed.
pub fn spawn_local<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + 'static,
{
    let join = Rc::new(RefCell::new(Join {
        value: None,
        done: false,
        waker: None,
    }));
    let finish = Finish(join.clone());
    current().spawn(Box::pin(async move {
        let v = future.await;
        finish.0.borrow_mut().value = Some(v);
        drop(finish);
    }));
    JoinHandle { join }
}

/// Lets the other ready tasks (and the network) run before the caller goes on.
pub async fn yield_now() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            return Poll::Ready(());
        }
        yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    })
    .await;
}
