//! What the application does with an open connection: send, receive, shut down, close,
//! abort, set options, ask its state.

use core::net::SocketAddrV4;

use smoltcp::socket::tcp;

use crate::flow::{Flow, FlowTable, Phase};
use crate::{ConnId, Duration, HandleError, RecvError, SendError, Stack, TcpState, mark_dirty};

impl Stack {
    /// Queues bytes for sending; returns how many were taken (limited by free send-buffer
    /// space; when short, [`Event::Writable`] follows once space frees). They leave at the
    /// next `poll`.
    pub fn send(&mut self, id: ConnId, data: &[u8]) -> Result<usize, SendError> {
        let flow = open_flow(&mut self.flows, id)?;
        if flow.shut_wr {
            return Err(SendError::InvalidState);
        }
        let n = flow
            .socket_mut()
            .send_slice(data)
            .map_err(|_| SendError::InvalidState)?;
        if n < data.len() {
            flow.want_writable = true;
        }
        if n > 0 {
            mark_dirty(&mut self.dirty, flow, id);
        }
        Ok(n)
    }

    /// Free space in the send buffer.
    pub fn send_space(&self, id: ConnId) -> Result<usize, HandleError> {
        let s = self.flows.get(id).ok_or(HandleError::Stale)?.socket();
        Ok(s.send_capacity() - s.send_queue())
    }

    /// Copies received bytes into `buf`. `Ok(0)`: nothing to read now (wait for
    /// [`Event::Readable`]); `Err(RecvError::Finished)`: end of stream.
    pub fn recv(&mut self, id: ConnId, buf: &mut [u8]) -> Result<usize, RecvError> {
        self.recv_with(id, |data| {
            let n = data.len().min(buf.len());
            buf[..n].copy_from_slice(&data[..n]);
            n
        })
    }

    /// Lends received bytes to `f` without copying; `f` returns how many it consumed. The
    /// buffer is a ring: when the data wraps, `f` sees the first part only (call again).
    pub fn recv_with(
        &mut self,
        id: ConnId,
        f: impl FnOnce(&[u8]) -> usize,
    ) -> Result<usize, RecvError> {
        let flow = open_flow(&mut self.flows, id)?;
        let s = flow.socket_mut();
        let n = match s.recv(|data| {
            let n = f(data).min(data.len());
            (n, n)
        }) {
            Ok(n) => n,
            Err(tcp::RecvError::Finished) => {
                if !flow.eof_seen {
                    // A connection in TIME-WAIT may now become a record.
                    flow.eof_seen = true;
                    mark_dirty(&mut self.dirty, flow, id);
                }
                return Err(RecvError::Finished);
            }
            Err(tcp::RecvError::InvalidState) => return Err(RecvError::InvalidState),
        };
        flow.reported_rx = flow.socket().recv_queue();
        flow.x.read = flow.x.read.wrapping_add(n as u32);
        if n > 0 {
            // The window opened: smoltcp may owe the peer a window update.
            mark_dirty(&mut self.dirty, flow, id);
        }
        Ok(n)
    }

    /// Bytes waiting to be read.
    pub fn recv_queue(&self, id: ConnId) -> Result<usize, HandleError> {
        Ok(self
            .flows
            .get(id)
            .ok_or(HandleError::Stale)?
            .socket()
            .recv_queue())
    }

    /// Bytes queued but not yet acknowledged by the peer.
    pub fn send_queue(&self, id: ConnId) -> Result<usize, HandleError> {
        Ok(self
            .flows
            .get(id)
            .ok_or(HandleError::Stale)?
            .socket()
            .send_queue())
    }

    /// Closes the write side after the queued data (FIN); receiving goes on.
    pub fn shutdown(&mut self, id: ConnId) -> Result<(), HandleError> {
        let flow = open_flow(&mut self.flows, id)?;
        flow.shut_wr = true;
        flow.socket_mut().close();
        mark_dirty(&mut self.dirty, flow, id);
        self.refresh(id);
        Ok(())
    }

    /// Closes the connection: queued data is sent, then FIN. The id is released for the
    /// application at once; the stack finishes the closing handshake, reports
    /// [`Event::Closed`] when it is done, and frees the connection (after TIME-WAIT where
    /// applicable). Unread received data makes it a reset instead, as in Linux.
    pub fn close(&mut self, id: ConnId) -> Result<(), HandleError> {
        let orphan_timeout = self.cfg.tcp.orphan_timeout;
        let now = self.now;
        let flow = open_flow(&mut self.flows, id)?;
        flow.phase = Phase::Orphan;
        if flow.socket().recv_queue() > 0 {
            flow.aborted = true;
            flow.socket_mut().abort();
        } else {
            flow.socket_mut().close();
            flow.give_up = Some(now + orphan_timeout);
            if flow.deadline.is_none_or(|d| d > now + orphan_timeout) {
                flow.deadline = Some(now + orphan_timeout);
                self.timers.schedule(now + orphan_timeout, id);
            }
        }
        mark_dirty(&mut self.dirty, flow, id);
        self.refresh(id);
        Ok(())
    }

    /// Resets the connection (RST) and releases the id at once.
    pub fn abort(&mut self, id: ConnId) -> Result<(), HandleError> {
        let flow = open_flow(&mut self.flows, id)?;
        flow.phase = Phase::Orphan;
        flow.aborted = true;
        flow.socket_mut().abort();
        mark_dirty(&mut self.dirty, flow, id);
        self.refresh(id);
        Ok(())
    }

    /// Turns Nagle's algorithm off (`true`) or on.
    pub fn set_nodelay(&mut self, id: ConnId, nodelay: bool) -> Result<(), HandleError> {
        open_flow(&mut self.flows, id)?
            .socket_mut()
            .set_nagle_enabled(!nodelay);
        Ok(())
    }

    /// Sets the delayed-ACK timeout (`None`: acknowledge at once).
    pub fn set_ack_delay(
        &mut self,
        id: ConnId,
        delay: Option<Duration>,
    ) -> Result<(), HandleError> {
        let delay = delay.map(|d| self.clock.stretch(d));
        open_flow(&mut self.flows, id)?
            .socket_mut()
            .set_ack_delay(delay);
        Ok(())
    }

    /// Sets the keep-alive interval (`None`: off).
    pub fn set_keep_alive(
        &mut self,
        id: ConnId,
        interval: Option<Duration>,
    ) -> Result<(), HandleError> {
        let interval = interval.map(|d| self.clock.stretch(d));
        let flow = open_flow(&mut self.flows, id)?;
        flow.socket_mut().set_keep_alive(interval);
        mark_dirty(&mut self.dirty, flow, id);
        Ok(())
    }

    /// TCP state of a connection.
    pub fn state(&self, id: ConnId) -> Result<TcpState, HandleError> {
        Ok(self
            .flows
            .get(id)
            .ok_or(HandleError::Stale)?
            .socket()
            .state())
    }

    /// Every connection in the flow table, in any phase (half-open, queued, open, closing
    /// orphans); TIME-WAIT records are not connections. For listings (`megatcp-stat`), not
    /// the data path: it allocates.
    pub fn connections(&self) -> Vec<ConnId> {
        self.flows.ids()
    }

    /// The peer's address and port.
    pub fn peer_addr(&self, id: ConnId) -> Result<SocketAddrV4, HandleError> {
        Ok(self.flows.get(id).ok_or(HandleError::Stale)?.tuple.remote)
    }

    /// This side's address and port.
    pub fn local_addr(&self, id: ConnId) -> Result<SocketAddrV4, HandleError> {
        Ok(self.flows.get(id).ok_or(HandleError::Stale)?.tuple.local)
    }
}

/// The connection `id` if the application holds it (open or connecting).
pub(crate) fn open_flow(flows: &mut FlowTable, id: ConnId) -> Result<&mut Flow, HandleError> {
    match flows.get_mut(id) {
        Some(f) if matches!(f.phase, Phase::Open | Phase::Connecting) => Ok(f),
        _ => Err(HandleError::Stale),
    }
}
