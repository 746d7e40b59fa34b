//! The events a backend feeds the ledger (its transport became readable or writable, an
//! operation left in flight ended, the peer reset the connection), and what each completes.

use std::collections::VecDeque;

use super::{Conn, Entry, Ledger, POOL_BUFFER_MAX, POOL_MAX, PendingWrite, fail_reset};
use crate::ledger::transport::{Accept, Progress, Receive, Send, Transport};
use crate::{AcceptError, ChannelError, Completion, ConnectError, Cookie, Errno, Handle, OptError};

impl<C, L> Ledger<C, L> {
    /// The listener may have connections to hand out: accepts them while an `Accept` is
    /// pending.
    pub fn acceptable<T>(&mut self, io: &mut T, listener: Handle, out: &mut Vec<Completion>)
    where
        T: Transport<Conn = C, Listener = L>,
    {
        loop {
            let handle = self.table.vacant();
            let Some(Entry::Listener(l)) = self.table.get_mut(listener) else {
                return;
            };
            let Some((cookie, multishot)) = l.accept else {
                return;
            };
            match io.accept(&mut l.io, handle) {
                Accept::Empty => return,
                Accept::Failed(e) => {
                    out.push(Completion::Error {
                        cookie,
                        error: ChannelError::Accept(listener, e),
                    });
                    return;
                }
                Accept::Conn(c, peer) => {
                    if !multishot {
                        l.accept = None;
                    }
                    let handle = self.table.insert(Entry::Conn(Conn::new(c, peer, None)));
                    out.push(Completion::Accepted {
                        listener,
                        handle,
                        peer,
                        cookie,
                    });
                }
            }
        }
    }

    /// Accepting on `listener` failed (a backend that accepts ahead of the commands): the
    /// pending `Accept` ends with the error.
    pub fn accept_failed(
        &mut self,
        listener: Handle,
        error: AcceptError,
        out: &mut Vec<Completion>,
    ) {
        if let Some(Entry::Listener(l)) = self.table.get_mut(listener)
            && let Some((cookie, _)) = l.accept.take()
        {
            out.push(Completion::Error {
                cookie,
                error: ChannelError::Accept(listener, error),
            });
        }
    }

    /// The transport completed the open of `handle`.
    pub fn connected<T>(&mut self, io: &mut T, handle: Handle, out: &mut Vec<Completion>)
    where
        T: Transport<Conn = C, Listener = L>,
    {
        let Some(Entry::Conn(c)) = self.table.get_mut(handle) else {
            return;
        };
        c.open = true;
        if let Some(cookie) = c.connect.take() {
            out.push(Completion::Connected { handle, cookie });
        }
        self.readable(io, handle, out);
        self.writable(io, handle, out);
    }

    /// The open of `handle` failed: the `Connect` fails with `error`, anything else pending
    /// with `Reset`; the handle is gone.
    pub fn connect_failed<T>(
        &mut self,
        io: &mut T,
        handle: Handle,
        error: ConnectError,
        out: &mut Vec<Completion>,
    ) where
        T: Transport<Conn = C, Listener = L>,
    {
        let Some(Entry::Conn(mut c)) = self.remove_conn(handle) else {
            return;
        };
        if let Some(cookie) = c.connect.take() {
            out.push(Completion::Error {
                cookie,
                error: ChannelError::Connect(c.remote, error),
            });
        }
        fail_reset(handle, c.pending(), out);
        self.recycle_writes(c.writes);
        io.close(c.io, handle);
    }

    /// The connection was reset by the peer, timed out, or failed: every pending operation
    /// fails with `Reset`, then [`Completion::Reset`]; the handle is gone.
    pub fn reset<T>(&mut self, io: &mut T, handle: Handle, out: &mut Vec<Completion>)
    where
        T: Transport<Conn = C, Listener = L>,
    {
        let Some(Entry::Conn(c)) = self.remove_conn(handle) else {
            return;
        };
        if !c.closed {
            fail_reset(handle, c.pending(), out);
            out.push(Completion::Reset { handle });
        }
        self.recycle_writes(c.writes);
        io.close(c.io, handle);
    }

    /// Removes a connection (not a listener), counting a closing one out.
    pub(super) fn remove_conn(&mut self, handle: Handle) -> Option<Entry<C, L>> {
        match self.table.get(handle)? {
            Entry::Conn(c) => {
                if c.closed {
                    self.closing -= 1;
                }
                self.table.remove(handle)
            }
            Entry::Listener(_) => None,
        }
    }

    pub(super) fn recycle_writes(&mut self, writes: VecDeque<PendingWrite>) {
        for w in writes {
            self.recycle(w.data);
        }
    }

    /// The connection may have bytes (or end of stream) to read: completes the pending
    /// `Read`, if any.
    pub fn readable<T>(&mut self, io: &mut T, handle: Handle, out: &mut Vec<Completion>)
    where
        T: Transport<Conn = C, Listener = L>,
    {
        let Some(Entry::Conn(c)) = self.table.get_mut(handle) else {
            return;
        };
        let Some(cookie) = c.read else { return };
        if !c.open {
            return;
        }
        if c.eof {
            c.read = None;
            out.push(Completion::Eof { handle, cookie });
            return;
        }
        let mut data = self.pool.pop().unwrap_or_default();
        match io.receive(&mut c.io, handle, &mut data) {
            Receive::Data => {
                c.read = None;
                out.push(Completion::Read {
                    handle,
                    data,
                    cookie,
                });
            }
            Receive::Nothing => self.recycle(data),
            Receive::Eof => {
                c.eof = true;
                c.read = None;
                out.push(Completion::Eof { handle, cookie });
                self.recycle(data);
            }
            Receive::Failed => {
                self.recycle(data);
                self.reset(io, handle, out);
            }
        }
    }

    /// The connection may take bytes: sends what is queued, then the shutdown, then (for a
    /// closed connection) closes it.
    pub fn writable<T>(&mut self, io: &mut T, handle: Handle, out: &mut Vec<Completion>)
    where
        T: Transport<Conn = C, Listener = L>,
    {
        let Some(Entry::Conn(c)) = self.table.get_mut(handle) else {
            return;
        };
        if c.busy {
            return;
        }
        while let Some(w) = c.writes.front_mut().filter(|_| c.open) {
            if w.off < w.len {
                match io.send(&mut c.io, handle, &mut w.data, w.off) {
                    Send::Taken(n) => w.off += n,
                    Send::InFlight => {
                        c.busy = true;
                        return;
                    }
                    Send::Failed => return self.reset(io, handle, out),
                }
                if w.off < w.len {
                    return;
                }
            }
            if let Some(w) = c.writes.pop_front() {
                if !c.closed {
                    out.push(Completion::Written {
                        handle,
                        len: w.len,
                        cookie: w.cookie,
                    });
                }
                if self.pool.len() < POOL_MAX && w.data.capacity() <= POOL_BUFFER_MAX {
                    let mut b = w.data;
                    b.clear();
                    self.pool.push(b);
                }
            }
        }
        if !c.writes.is_empty() {
            return;
        }
        if c.closed {
            if let Some(Entry::Conn(c)) = self.remove_conn(handle) {
                io.close(c.io, handle);
            }
            return;
        }
        if c.open && c.shutdown.is_some() {
            match io.shutdown(&mut c.io, handle) {
                Progress::Done => {
                    if let Some(cookie) = c.shutdown.take() {
                        out.push(Completion::ShutDown { handle, cookie });
                    }
                }
                Progress::InFlight => c.busy = true,
            }
        }
    }

    /// A send left in flight ended: the transport hands the buffer back with the bytes it
    /// sent, or the error.
    pub fn sent<T>(
        &mut self,
        io: &mut T,
        handle: Handle,
        data: Vec<u8>,
        result: Result<usize, Errno>,
        out: &mut Vec<Completion>,
    ) where
        T: Transport<Conn = C, Listener = L>,
    {
        let Some(Entry::Conn(c)) = self.table.get_mut(handle) else {
            return self.recycle(data);
        };
        c.busy = false;
        match (result, c.writes.front_mut()) {
            (Ok(n), Some(w)) => {
                w.data = data;
                w.off += n;
                self.writable(io, handle, out);
            }
            _ => {
                self.recycle(data);
                self.reset(io, handle, out);
            }
        }
    }

    /// A shutdown left in flight ended.
    pub fn shut<T>(
        &mut self,
        io: &mut T,
        handle: Handle,
        result: Result<(), Errno>,
        out: &mut Vec<Completion>,
    ) where
        T: Transport<Conn = C, Listener = L>,
    {
        let Some(Entry::Conn(c)) = self.table.get_mut(handle) else {
            return;
        };
        c.busy = false;
        if let Some(cookie) = c.shutdown.take() {
            out.push(match result {
                Ok(()) => Completion::ShutDown { handle, cookie },
                Err(e) => Completion::Error {
                    cookie,
                    error: ChannelError::Shutdown(handle, e),
                },
            });
        }
        if c.closed {
            self.writable(io, handle, out);
        }
    }

    /// An option left in flight ended.
    pub fn option_set(
        handle: Handle,
        cookie: Cookie,
        result: Result<(), OptError>,
        out: &mut Vec<Completion>,
    ) {
        out.push(match result {
            Ok(()) => Completion::OptSet { handle, cookie },
            Err(e) => Completion::Error {
                cookie,
                error: ChannelError::SetOpt(handle, e),
            },
        });
    }
}
