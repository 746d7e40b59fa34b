//! The open connections, for `stats conns`: one entry per connection (a number, the peer,
//! the time of its last command), registered when the connection is accepted and removed
//! when its [`ConnHandle`] is dropped.
//!
//! Touched once per accept and close (a lock over a small map) and once per read (a
//! relaxed store into the connection's own entry); `stats conns` reads them all.

use std::collections::BTreeMap;
use std::net::SocketAddrV4;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::clock::RelTime;

/// The first connection number (memcached's are file descriptors, above the listening
/// sockets; ours are counted from here).
const FIRST_ID: u64 = 16;

#[derive(Debug)]
struct Entry {
    peer: SocketAddrV4,
    last_cmd: AtomicU32,
}

#[derive(Debug, Default)]
struct Table {
    map: Mutex<BTreeMap<u64, Arc<Entry>>>,
}

/// Every open connection. See the module docs.
#[derive(Debug)]
pub struct Conns {
    next: AtomicU64,
    table: Arc<Table>,
}

impl Default for Conns {
    fn default() -> Self {
        Self {
            next: AtomicU64::new(FIRST_ID),
            table: Arc::default(),
        }
    }
}

/// One connection's registration; dropping it removes the entry.
#[derive(Debug)]
pub struct ConnHandle {
    id: u64,
    entry: Arc<Entry>,
    table: Arc<Table>,
}

impl ConnHandle {
    /// The connection's number in `stats conns`.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Notes that a command arrived at `now`.
    pub fn saw_command(&self, now: RelTime) {
        self.entry.last_cmd.store(now, Ordering::Relaxed);
    }
}

impl Drop for ConnHandle {
    fn drop(&mut self) {
        self.table
            .map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
    }
}

/// One line group of `stats conns`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnView {
    /// The connection's number.
    pub id: u64,
    /// The peer.
    pub peer: SocketAddrV4,
    /// Its last command's time.
    pub last_cmd: RelTime,
}

impl Conns {
    /// Registers a connection from `peer` accepted at `now`.
    pub fn open(&self, peer: SocketAddrV4, now: RelTime) -> ConnHandle {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let entry = Arc::new(Entry {
            peer,
            last_cmd: AtomicU32::new(now),
        });
        self.table
            .map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, Arc::clone(&entry));
        ConnHandle {
            id,
            entry,
            table: Arc::clone(&self.table),
        }
    }

    /// The open connections, oldest first.
    pub fn list(&self) -> Vec<ConnView> {
        self.table
            .map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(&id, e)| ConnView {
                id,
                peer: e.peer,
                last_cmd: e.last_cmd.load(Ordering::Relaxed),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_and_forgets() {
        let c = Conns::default();
        let peer = SocketAddrV4::new([127, 0, 0, 1].into(), 5000);
        let a = c.open(peer, 3);
        let b = c.open(peer, 4);
        b.saw_command(9);
        let l = c.list();
        assert_eq!(l.len(), 2);
        assert_eq!((l[0].id, l[1].last_cmd), (a.id(), 9));
        drop(a);
        assert_eq!(c.list().len(), 1);
    }
}
