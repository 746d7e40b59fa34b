//! Driving one [`Session`] without a server, as the server would (a backlog is drained
//! before the next read): for the property tests, the fuzz target and examples.

use core::net::SocketAddrV4;

use crate::date::DATE_LEN;
use crate::files::Files;
use crate::session::{Counters, Env, Flow, Limits, Session};

/// A session with its own files, limits, counters and a fixed date and time.
pub struct Harness {
    /// The files served.
    pub files: Files,
    /// The limits applied.
    pub limits: Limits,
    /// The counters so far.
    pub counters: Counters,
    /// The time given to the session, milliseconds.
    pub now_ms: u64,
    date: [u8; DATE_LEN],
    session: Session,
}

impl Harness {
    /// A new connection to a server of `files` under `limits`, at time 0.
    pub fn new(files: Files, limits: Limits) -> Self {
        Self {
            files,
            limits,
            counters: Counters::default(),
            now_ms: 0,
            date: crate::date::format(1_000_000_000),
            session: Session::new(0),
        }
    }

    /// The session.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// Feeds `data` as one read, then resumes while a backlog waits; returns everything
    /// answered and what the session said last.
    pub fn feed(&mut self, data: &[u8]) -> (Vec<u8>, Flow) {
        let mut all = Vec::new();
        let mut data = data;
        loop {
            let mut env = Env {
                files: &self.files,
                limits: &self.limits,
                date: &self.date,
                now_ms: self.now_ms,
                counters: &mut self.counters,
                log: None,
                peer: SocketAddrV4::new([127, 0, 0, 1].into(), 1),
            };
            // One output buffer per resume, as the server sends what a feed wrote before it
            // resumes: the session's output bound applies to what is not yet sent.
            let mut out = Vec::new();
            let flow = self.session.feed(data, &mut env, &mut out);
            all.extend_from_slice(&out);
            if flow == Flow::Close || !self.session.has_backlog() {
                return (all, flow);
            }
            data = &[];
        }
    }
}
