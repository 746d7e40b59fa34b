//! The bypass backend of the channel: a NIC queue and a [`Stack`] driven in the caller's
//! thread. One `dispatch` = one receive burst, one stack poll, one transmit batch.

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration as StdDuration, Instant as StdInstant};

use hashbrown::HashMap;
use megatcp_channel::{Backend, ChannelError, Command, Completion, Cookie, Handle, SockOpt};
use megatcp_nic::NicQueue;
use megatcp_stack::{
    ConnId, ConnectOpts, Event, Instant, ListenerId, RecvError, SendError, Stack, StackConfig,
};

use crate::handles::{Conn, Entry, Handles, Listener, PendingWrite};
use crate::runtime::CoreMonitor;
use crate::steer::{Route, Steer, SteerStats};

/// What a core does when a poll finds nothing to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdlePolicy {
    /// Spin: lowest latency, one core at 100 %.
    BusyPoll,
    /// Spin `spins` empty iterations, then sleep up to `max_sleep` at a time (bounded by the
    /// stack's next deadline and the dispatch timeout).
    Backoff {
        /// Empty iterations before sleeping.
        spins: u32,
        /// Longest single sleep.
        max_sleep: StdDuration,
    },
}

impl Default for IdlePolicy {
    fn default() -> Self {
        IdlePolicy::Backoff {
            spins: 2000,
            max_sleep: StdDuration::from_micros(200),
        }
    }
}

/// Why a [`Bypass`] could not be made.
#[derive(Debug, thiserror::Error)]
pub enum BypassError {
    /// The stack refused its configuration.
    #[error(transparent)]
    Config(#[from] megatcp_stack::ConfigError),
    /// The operating system's random source failed.
    #[error("cannot draw the stack's secret from the operating system: {0}")]
    Random(getrandom::Error),
}

/// Counters of the engine loop of one core.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoopStats {
    /// Loop iterations.
    pub iterations: u64,
    /// Iterations that received no frame.
    pub idle_iterations: u64,
    /// Sleeps taken by the idle policy.
    pub sleeps: u64,
    /// NIC transmit flushes (batches).
    pub tx_batches: u64,
    /// Frames the NIC refused (ring full); they stayed queued in the stack.
    pub tx_ring_full: u64,
}

/// The bypass backend: one NIC queue + one stack, owned by one core's thread (not `Send`).
pub struct Bypass<Q: NicQueue> {
    nic: Q,
    stack: Stack,
    start: StdInstant,
    /// When the last turn read the clock (one read per turn: clock reads are not free).
    clock: StdInstant,
    handles: Handles,
    by_conn: HashMap<ConnId, Handle>,
    by_listener: HashMap<ListenerId, Handle>,
    /// Connections closed by the application while writes were still pending.
    draining: HashMap<ConnId, VecDeque<PendingWrite>>,
    stop: Arc<AtomicBool>,
    idle: IdlePolicy,
    rx_budget: usize,
    pool: Vec<Vec<u8>>,
    stats: LoopStats,
    monitor: Option<(Arc<Vec<CoreMonitor>>, usize)>,
    /// Rings to and from the other cores, when there are several.
    steer: Option<Steer>,
    /// Bound to the thread that created it.
    _not_send: PhantomData<*const ()>,
}

impl<Q: NicQueue> Bypass<Q> {
    /// A backend over `nic` with a stack made from `cfg`. `stop` is the runtime's stop flag.
    /// A `cfg` without a secret (all zero) gets one from the operating system's random
    /// source, so that two processes (or two restarts) never share ISNs, ports or cookies.
    pub fn new(
        nic: Q,
        mut cfg: StackConfig,
        stop: Arc<AtomicBool>,
        idle: IdlePolicy,
    ) -> Result<Self, BypassError> {
        if cfg.secret == [0; 16] {
            getrandom::fill(&mut cfg.secret).map_err(BypassError::Random)?;
        }
        let start = StdInstant::now();
        let stack = Stack::new(cfg, Instant::from_micros(0))?;
        Ok(Self {
            nic,
            stack,
            start,
            clock: start,
            handles: Handles::default(),
            by_conn: HashMap::new(),
            by_listener: HashMap::new(),
            draining: HashMap::new(),
            stop,
            idle,
            rx_budget: 64,
            pool: Vec::new(),
            stats: LoopStats::default(),
            monitor: None,
            steer: None,
            _not_send: PhantomData,
        })
    }

    /// The stack (counters, stats).
    pub fn stack(&self) -> &Stack {
        &self.stack
    }

    /// The stack, mutably (e.g. to install a port filter).
    pub fn stack_mut(&mut self) -> &mut Stack {
        &mut self.stack
    }

    /// The NIC queue.
    pub fn nic(&self) -> &Q {
        &self.nic
    }

    /// Loop counters.
    pub fn loop_stats(&self) -> LoopStats {
        self.stats
    }

    /// Publishes counters to `monitors[index]` from now on (about every 256 iterations).
    pub fn set_monitor(&mut self, monitors: Arc<Vec<CoreMonitor>>, index: usize) {
        self.monitor = Some((monitors, index));
    }

    /// Makes this backend core `me` of several: frames of flows owned by other cores go
    /// through SPSC rings (see `steer`), and active opens choose source ports whose replies
    /// reach this core: by the NIC's Toeplitz hash when it exposes its RSS key, else by the
    /// steering hash.
    pub(crate) fn set_steering(&mut self, links: &crate::steer::Links, me: usize) {
        let key = self
            .nic
            .capabilities()
            .rss
            .as_ref()
            .and_then(|r| r.key.clone());
        let steer = Steer::new(me, links, key.is_some());
        let n = steer.cores();
        self.stack
            .set_port_filter(Some(Box::new(move |local, remote| match &key {
                // Replies come from `remote` to `local`.
                Some(k) => {
                    usize::from(megatcp_nic::rss::tcp4_queue(k, remote, local, n as u16)) == me
                }
                None => megatcp_nic::wire::tuple_hash(local, remote) as usize % n == me,
            })));
        debug_assert_eq!(steer.me(), me);
        self.steer = Some(steer);
    }

    /// Counters of software flow steering (all zero with one core).
    pub fn steer_stats(&self) -> SteerStats {
        self.steer.as_ref().map(|s| s.stats).unwrap_or_default()
    }

    /// Publishes the counters to the monitor now.
    pub fn publish(&self) {
        if let Some((m, i)) = &self.monitor
            && let Some(m) = m.get(*i)
        {
            m.publish(&self.stack.counters());
        }
    }

    /// Live handles (connections and listeners).
    pub fn live_handles(&self) -> usize {
        self.handles.len()
    }

    fn now(&self) -> Instant {
        Instant::from_micros(self.start.elapsed().as_micros() as i64)
    }

    fn buf(&mut self, cap: usize) -> Vec<u8> {
        match self.pool.pop() {
            Some(mut b) => {
                b.clear();
                b.reserve(cap);
                b
            }
            None => Vec::with_capacity(cap),
        }
    }

    fn recycle(&mut self, b: Vec<u8>) {
        if self.pool.len() < 1024 && b.capacity() <= 1 << 20 {
            self.pool.push(b);
        }
    }

    fn conn(&mut self, h: Handle) -> Result<&mut Conn, ChannelError> {
        match self.handles.get_mut(h) {
            Some(Entry::Conn(c)) => Ok(c),
            Some(e) => Err(ChannelError::WrongKind(h, e.kind(), "connection")),
            None => Err(ChannelError::BadHandle(h)),
        }
    }

    fn new_conn(
        &mut self,
        id: ConnId,
        remote: std::net::SocketAddrV4,
        connecting: Option<Cookie>,
    ) -> Handle {
        let h = self.handles.insert(Entry::Conn(Conn {
            id,
            remote,
            connecting,
            read: None,
            writes: VecDeque::new(),
            shutdown: None,
            shut: false,
            peer_closed: false,
            finished: false,
        }));
        self.by_conn.insert(id, h);
        h
    }

    fn execute(&mut self, cmd: Command, out: &mut Vec<Completion>) {
        let cookie = cmd.cookie();
        if let Err(error) = self.try_execute(cmd, out) {
            out.push(Completion::Error { cookie, error });
        }
    }

    fn try_execute(&mut self, cmd: Command, out: &mut Vec<Completion>) -> Result<(), ChannelError> {
        match cmd {
            Command::Listen {
                addr,
                backlog,
                cookie,
            } => {
                let id = self
                    .stack
                    .listen(addr, Some(backlog.max(1) as usize))
                    .map_err(|e| ChannelError::Listen(addr, e.to_string()))?;
                let h = self
                    .handles
                    .insert(Entry::Listener(Listener { id, accept: None }));
                self.by_listener.insert(id, h);
                out.push(Completion::Listening { handle: h, cookie });
            }
            Command::Accept {
                listener,
                multishot,
                cookie,
            } => {
                match self.handles.get_mut(listener) {
                    Some(Entry::Listener(l)) => {
                        megatcp_channel::rules::accept(listener, l.accept.is_some())?;
                        l.accept = Some((cookie, multishot));
                    }
                    Some(e) => return Err(ChannelError::WrongKind(listener, e.kind(), "listener")),
                    None => return Err(ChannelError::BadHandle(listener)),
                }
                self.drain_accepts(listener, out);
            }
            Command::Connect { remote, cookie } => {
                let id = self
                    .stack
                    .connect(self.now(), remote, ConnectOpts::default())
                    .map_err(|e| ChannelError::Connect(remote, e.to_string()))?;
                self.new_conn(id, remote, Some(cookie));
            }
            Command::Read { handle, cookie } => {
                let c = self.conn(handle)?;
                megatcp_channel::rules::read(handle, c.read.is_some())?;
                c.read = Some(cookie);
                self.try_read(handle, out);
            }
            Command::Write {
                handle,
                data,
                cookie,
            } => {
                let c = self.conn(handle)?;
                megatcp_channel::rules::write(handle, c.shut || c.shutdown.is_some())?;
                if c.finished {
                    return Err(ChannelError::Reset(handle));
                }
                if megatcp_channel::rules::empty_write(handle, &data, cookie, out) {
                    return Ok(());
                }
                c.writes.push_back(PendingWrite {
                    data,
                    off: 0,
                    cookie,
                });
                self.try_write(handle, out);
            }
            Command::Shutdown { handle, cookie } => {
                let c = self.conn(handle)?;
                megatcp_channel::rules::shutdown(handle, c.shut || c.shutdown.is_some())?;
                c.shutdown = Some(cookie);
                self.try_write(handle, out);
            }
            Command::Close { handle, cookie } => self.close(handle, cookie, out)?,
            Command::Abort { handle, cookie } => {
                let c = self.conn(handle)?;
                let (id, finished) = (c.id, c.finished);
                if let Some(Entry::Conn(c)) = self.handles.remove(handle) {
                    self.by_conn.remove(&id);
                    if !finished {
                        let _ = self.stack.abort(id);
                    }
                    fail_pending(handle, c, out);
                }
                out.push(Completion::Closed { handle, cookie });
            }
            Command::SetOpt {
                handle,
                opt,
                cookie,
            } => {
                self.set_opt(handle, opt)?;
                out.push(Completion::OptSet { handle, cookie });
            }
        }
        Ok(())
    }

    fn set_opt(&mut self, handle: Handle, opt: SockOpt) -> Result<(), ChannelError> {
        let bad = |_| ChannelError::BadHandle(handle);
        match (self.handles.get_mut(handle), opt) {
            (None, _) => Err(ChannelError::BadHandle(handle)),
            (Some(Entry::Conn(c)), SockOpt::NoDelay(on)) => {
                let id = c.id;
                self.stack.set_nodelay(id, on).map_err(bad)
            }
            (Some(Entry::Conn(c)), SockOpt::KeepAlive(d)) => {
                let id = c.id;
                let d = d.map(|d| megatcp_stack::Duration::from_micros(d.as_micros() as u64));
                self.stack.set_keep_alive(id, d).map_err(bad)
            }
            (Some(Entry::Listener(l)), SockOpt::BufferSizes { rx, tx }) => {
                let id = l.id;
                self.stack
                    .set_listener_buffers(id, rx, tx)
                    .map_err(|e| match e {
                        megatcp_stack::BufferSizeError::Stale => ChannelError::BadHandle(handle),
                        megatcp_stack::BufferSizeError::OutOfRange { .. } => {
                            ChannelError::InvalidState(
                                handle,
                                "buffer sizes must be 1 KiB ..= 1 GiB",
                            )
                        }
                    })
            }
            (Some(_), opt) => Err(ChannelError::Unsupported(opt)),
        }
    }

    fn close(
        &mut self,
        handle: Handle,
        cookie: Cookie,
        out: &mut Vec<Completion>,
    ) -> Result<(), ChannelError> {
        match self
            .handles
            .remove(handle)
            .ok_or(ChannelError::BadHandle(handle))?
        {
            Entry::Listener(l) => {
                self.by_listener.remove(&l.id);
                let _ = self.stack.unlisten(l.id);
                if let Some((c, _)) = l.accept {
                    out.push(Completion::Error {
                        cookie: c,
                        error: ChannelError::InvalidState(handle, "listener closed"),
                    });
                }
            }
            Entry::Conn(c) => {
                self.by_conn.remove(&c.id);
                if let Some(r) = c.read {
                    out.push(Completion::Error {
                        cookie: r,
                        error: ChannelError::InvalidState(handle, "closed while reading"),
                    });
                }
                if let Some(k) = c.connecting {
                    out.push(Completion::Error {
                        cookie: k,
                        error: ChannelError::InvalidState(handle, "closed while connecting"),
                    });
                }
                if let Some(s) = c.shutdown {
                    // The close sends the FIN after the pending writes, as the shutdown would.
                    out.push(Completion::ShutDown { handle, cookie: s });
                }
                if !c.finished {
                    if c.writes.is_empty() {
                        let _ = self.stack.close(c.id);
                    } else {
                        // The writes complete now (the connection takes them over) and still go out
                        // before the FIN.
                        for w in &c.writes {
                            out.push(Completion::Written {
                                handle,
                                len: w.data.len(),
                                cookie: w.cookie,
                            });
                        }
                        self.draining.insert(c.id, c.writes);
                        self.drain_closed(c.id);
                    }
                }
            }
        }
        out.push(Completion::Closed { handle, cookie });
        Ok(())
    }

    /// Pushes the writes of a connection the application closed; closes it once they are in.
    fn drain_closed(&mut self, id: ConnId) {
        let Some(writes) = self.draining.get_mut(&id) else {
            return;
        };
        while let Some(w) = writes.front_mut() {
            match self.stack.send(id, &w.data[w.off..]) {
                Ok(n) => {
                    w.off += n;
                    if w.off < w.data.len() {
                        return;
                    }
                    writes.pop_front();
                }
                Err(_) => {
                    self.draining.remove(&id);
                    let _ = self.stack.abort(id);
                    return;
                }
            }
        }
        self.draining.remove(&id);
        let _ = self.stack.close(id);
    }

    fn drain_accepts(&mut self, listener: Handle, out: &mut Vec<Completion>) {
        loop {
            let Some(Entry::Listener(l)) = self.handles.get_mut(listener) else {
                return;
            };
            let Some((cookie, multishot)) = l.accept else {
                return;
            };
            let lid = l.id;
            let Some((id, peer)) = self.stack.accept(lid) else {
                return;
            };
            if !multishot {
                l.accept = None;
            }
            let handle = self.new_conn(id, peer, None);
            out.push(Completion::Accepted {
                listener,
                handle,
                peer,
                cookie,
            });
        }
    }

    fn try_read(&mut self, handle: Handle, out: &mut Vec<Completion>) {
        let Ok(c) = self.conn(handle) else { return };
        let Some(cookie) = c.read else { return };
        let (id, finished) = (c.id, c.finished);
        if finished {
            self.conn_read_done(handle);
            out.push(Completion::Eof { handle, cookie });
            return;
        }
        let avail = self.stack.recv_queue(id).unwrap_or(0);
        if avail == 0 {
            let eof = matches!(self.stack.recv(id, &mut []), Err(RecvError::Finished));
            if eof {
                self.conn_read_done(handle);
                out.push(Completion::Eof { handle, cookie });
            }
            return;
        }
        let mut data = self.buf(avail);
        while data.len() < avail {
            let got = self.stack.recv_with(id, |bytes| {
                data.extend_from_slice(bytes);
                bytes.len()
            });
            if !matches!(got, Ok(n) if n > 0) {
                break;
            }
        }
        self.conn_read_done(handle);
        out.push(Completion::Read {
            handle,
            data,
            cookie,
        });
    }

    fn conn_read_done(&mut self, handle: Handle) {
        if let Ok(c) = self.conn(handle) {
            c.read = None;
        }
    }

    fn try_write(&mut self, handle: Handle, out: &mut Vec<Completion>) {
        let Some(Entry::Conn(c)) = self.handles.get_mut(handle) else {
            return;
        };
        let id = c.id;
        let mut done = Vec::new();
        let mut failed = None;
        while let Some(w) = c.writes.front_mut() {
            match self.stack.send(id, &w.data[w.off..]) {
                Ok(n) => {
                    w.off += n;
                    if w.off < w.data.len() {
                        break;
                    }
                    if let Some(w) = c.writes.pop_front() {
                        done.push(w);
                    }
                }
                Err(SendError::InvalidState) if c.connecting.is_some() => break,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = failed {
            for w in c.writes.drain(..) {
                out.push(Completion::Error {
                    cookie: w.cookie,
                    error: ChannelError::InvalidState(handle, send_error_text(e)),
                });
            }
        }
        let shutdown = if c.writes.is_empty() {
            c.shutdown.take()
        } else {
            None
        };
        if shutdown.is_some() {
            c.shut = true;
        }
        for w in done {
            out.push(Completion::Written {
                handle,
                len: w.data.len(),
                cookie: w.cookie,
            });
            self.recycle(w.data);
        }
        if let Some(cookie) = shutdown {
            let _ = self.stack.shutdown(id);
            out.push(Completion::ShutDown { handle, cookie });
        }
    }

    /// Turns the stack's events into completions.
    fn on_events(&mut self, out: &mut Vec<Completion>) {
        while let Some(e) = self.stack.next_event() {
            match e {
                Event::Acceptable { listener } => {
                    if let Some(&h) = self.by_listener.get(&listener) {
                        self.drain_accepts(h, out);
                    }
                }
                Event::Connected { conn } => {
                    let Some(&h) = self.by_conn.get(&conn) else {
                        continue;
                    };
                    if let Ok(c) = self.conn(h)
                        && let Some(cookie) = c.connecting.take()
                    {
                        out.push(Completion::Connected { handle: h, cookie });
                        self.try_write(h, out);
                    }
                }
                Event::ConnectFailed { conn } => {
                    let Some(h) = self.by_conn.remove(&conn) else {
                        continue;
                    };
                    if let Some(Entry::Conn(c)) = self.handles.remove(h) {
                        let remote = c.remote;
                        if let Some(cookie) = c.connecting {
                            out.push(Completion::Error {
                                cookie,
                                error: ChannelError::Connect(
                                    remote,
                                    "refused or timed out".to_string(),
                                ),
                            });
                        }
                        fail_pending(h, c, out);
                    }
                }
                Event::Readable { conn } => {
                    if let Some(&h) = self.by_conn.get(&conn) {
                        self.try_read(h, out);
                    }
                }
                Event::Writable { conn } => {
                    if let Some(&h) = self.by_conn.get(&conn) {
                        self.try_write(h, out);
                    } else if self.draining.contains_key(&conn) {
                        self.drain_closed(conn);
                    }
                }
                Event::PeerClosed { conn } => {
                    if let Some(&h) = self.by_conn.get(&conn) {
                        if let Ok(c) = self.conn(h) {
                            c.peer_closed = true;
                        }
                        self.try_read(h, out);
                    }
                }
                Event::Closed { conn } => {
                    // An orderly end of a connection the application still holds (it shut
                    // down and the peer closed): reads see end of stream.
                    let Some(h) = self.by_conn.remove(&conn) else {
                        continue;
                    };
                    if let Ok(c) = self.conn(h) {
                        c.finished = true;
                    }
                    self.try_read(h, out);
                }
                Event::Reset { conn } => {
                    self.draining.remove(&conn);
                    let Some(h) = self.by_conn.remove(&conn) else {
                        continue;
                    };
                    if let Some(Entry::Conn(c)) = self.handles.remove(h) {
                        fail_pending(h, c, out);
                        out.push(Completion::Reset { handle: h });
                    }
                }
            }
        }
    }

    /// One engine iteration; returns the frames received.
    fn turn(&mut self, out: &mut Vec<Completion>) -> usize {
        self.clock = StdInstant::now();
        let now = Instant::from_micros(self.clock.duration_since(self.start).as_micros() as i64);
        // Output first: what the commands just submitted and the previous input owe leaves
        // now, in one NIC batch. Input is only taken after, and its output waits for the
        // next turn, which comes after the application has seen the completions: a reply
        // written in response to received bytes (or a request written on `Connected`) then
        // leaves in the same segment as the ACK, not one packet after it.
        self.stack.poll(now);
        self.on_events(out);
        let nic = &mut self.nic;
        let mut refused = 0u64;
        // Frames are written straight into the NIC's transmit buffers.
        let sent = self.stack.transmit_into(&mut |fill| {
            let ok = nic.tx_frame(fill).is_ok();
            refused += u64::from(!ok);
            ok
        });
        if sent > 0 {
            self.nic.tx_flush();
            self.stats.tx_batches += 1;
        }
        self.stats.tx_ring_full += refused;
        let stack = &mut self.stack;
        let steer = &mut self.steer;
        let mut n = self.nic.rx_burst(self.rx_budget, &mut |f| match steer {
            None => stack.receive(now, f.data),
            Some(s) => match s.route(f.data) {
                Route::Local => stack.receive(now, f.data),
                Route::Everywhere => {
                    stack.receive(now, f.data);
                    s.broadcast(f.data);
                }
                Route::To(core) => s.send(core, f.data),
            },
        });
        if let Some(s) = steer {
            n += s.receive(&mut |frame| stack.receive(now, frame));
        }
        self.on_events(out);
        self.stats.iterations += 1;
        if self.stats.iterations % 256 == 0 {
            self.publish();
        }
        n
    }

    /// Closes every handle (graceful shutdown) and runs the stack until connections have
    /// finished closing or `grace` has passed.
    pub fn shutdown_all(&mut self, grace: StdDuration) {
        let mut out = Vec::new();
        for h in self.handles.handles() {
            let _ = self.close(h, 0, &mut out);
        }
        let end = StdInstant::now() + grace;
        while StdInstant::now() < end {
            out.clear();
            self.turn(&mut out);
            let s = self.stack.stats();
            let c = self.stack.counters();
            let open = c.conns_opened + c.conns_accepted
                - c.conns_closed
                - c.conns_reset
                - c.conns_connect_failed;
            if s.queued_frames == 0 && (s.flows == 0 || open == 0) && self.draining.is_empty() {
                break;
            }
            std::thread::sleep(StdDuration::from_micros(100));
        }
    }
}

fn send_error_text(e: SendError) -> &'static str {
    match e {
        SendError::Handle(_) => "connection is gone",
        SendError::InvalidState => "connection cannot send",
    }
}

fn fail_pending(h: Handle, c: Conn, out: &mut Vec<Completion>) {
    let cookies = c
        .read
        .into_iter()
        .chain(c.shutdown)
        .chain(c.writes.iter().map(|w| w.cookie));
    megatcp_channel::rules::fail_reset(h, cookies, out);
}

impl<Q: NicQueue> Backend for Bypass<Q> {
    fn submit(&mut self, commands: &mut Vec<Command>, out: &mut Vec<Completion>) {
        for cmd in commands.drain(..) {
            self.execute(cmd, out);
        }
    }

    fn poll(&mut self, timeout: Option<StdDuration>, out: &mut Vec<Completion>) {
        // The timeout counts from the last turn's clock reading (the application's time
        // since then counts too): no clock read of its own.
        let start = self.clock;
        let mut empty_turns = 0u32;
        loop {
            let got = self.turn(out);
            if !out.is_empty() || self.stop.load(Ordering::Relaxed) {
                return;
            }
            if timeout.is_some_and(|t| self.clock.saturating_duration_since(start) >= t) {
                return;
            }
            if got > 0 {
                empty_turns = 0;
                continue;
            }
            self.stats.idle_iterations += 1;
            empty_turns += 1;
            if let IdlePolicy::Backoff { spins, max_sleep } = self.idle
                && empty_turns > spins
            {
                let mut sleep = max_sleep;
                if let Some(t) = timeout {
                    sleep =
                        sleep.min(t.saturating_sub(self.clock.saturating_duration_since(start)));
                }
                if let Some(at) = self.stack.poll_at() {
                    let now = self.now();
                    let until = (at - now.min(at)).total_micros();
                    sleep = sleep.min(StdDuration::from_micros(until));
                }
                if !sleep.is_zero() {
                    self.stats.sleeps += 1;
                    std::thread::sleep(sleep);
                }
            }
        }
    }

    fn is_stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}
