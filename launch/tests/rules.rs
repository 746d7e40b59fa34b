//! The channel's rules, each test run once against every backend: the bypass engine over the
//! in-memory wire, epoll and io_uring on loopback. Each test drives two channels of the same
//! backend (a server and a client) by hand in one thread, and checks the same completions
//! and errors on all three: the rules live once, in the ledger.
#![allow(clippy::unwrap_used)]

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use megatcp_channel::{
    Backend, Channel, ChannelError, Completion, ConnectError, Handle, HandleKind, StateError,
};
use megatcp_engine::{Bypass, IdlePolicy};
use megatcp_kernel::epoll::Epoll;
use megatcp_kernel::uring::{Uring, UringConfig};
use megatcp_nic::wire::{self, WireConfig, WireQueue};
use megatcp_stack::{LocalAddr, MacAddr, StackConfig};
use megatcp_test_support::completions::{accepted, connected, error_of, listening};
use megatcp_test_support::free_port;

/// A backend whose live handles can be counted.
trait Live: Backend {
    fn live(&self) -> usize;
}

impl Live for Bypass<WireQueue> {
    fn live(&self) -> usize {
        self.live_handles()
    }
}

impl Live for Epoll {
    fn live(&self) -> usize {
        self.live_handles()
    }
}

impl Live for Uring {
    fn live(&self) -> usize {
        self.live_handles()
    }
}

/// A server channel and a client channel of one backend.
struct Pair<B: Backend> {
    s: Channel<B>,
    c: Channel<B>,
    /// Where the server listens.
    addr: SocketAddrV4,
    /// Where nothing listens.
    closed: SocketAddrV4,
}

fn stop() -> Arc<AtomicBool> {
    Arc::new(AtomicBool::new(false))
}

const SERVER: Ipv4Addr = Ipv4Addr::new(10, 5, 0, 1);

fn bypass() -> Pair<Bypass<WireQueue>> {
    let (mut a, mut b) = wire::pair(WireConfig::default());
    let mk = |q, mac, ip| {
        let cfg = StackConfig::new(MacAddr([2, 0, 0, 0, 0, mac]), LocalAddr::new(ip, 24));
        Channel::new(Bypass::new(q, cfg, stop(), IdlePolicy::BusyPoll).unwrap())
    };
    Pair {
        s: mk(a.remove(0), 1, SERVER),
        c: mk(b.remove(0), 2, Ipv4Addr::new(10, 5, 0, 2)),
        addr: SocketAddrV4::new(SERVER, 7),
        closed: SocketAddrV4::new(SERVER, 9),
    }
}

fn loopback() -> (SocketAddrV4, SocketAddrV4) {
    (
        SocketAddrV4::new(Ipv4Addr::LOCALHOST, free_port()),
        SocketAddrV4::new(Ipv4Addr::LOCALHOST, free_port()),
    )
}

fn epoll() -> Pair<Epoll> {
    let (addr, closed) = loopback();
    Pair {
        s: Channel::new(Epoll::new(stop()).unwrap()),
        c: Channel::new(Epoll::new(stop()).unwrap()),
        addr,
        closed,
    }
}

fn uring() -> Pair<Uring> {
    let (addr, closed) = loopback();
    let config = UringConfig {
        files: 256,
        ..UringConfig::default()
    };
    Pair {
        s: Channel::new(Uring::new(stop(), &config).unwrap()),
        c: Channel::new(Uring::new(stop(), &config).unwrap()),
        addr,
        closed,
    }
}

/// Completions seen so far, per side.
#[derive(Default)]
struct Seen {
    s: Vec<Completion>,
    c: Vec<Completion>,
}

impl<B: Backend> Pair<B> {
    /// Dispatches both channels until `done` holds for what they returned (10 s at most).
    fn run(&mut self, seen: &mut Seen, mut done: impl FnMut(&Seen) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            seen.s.extend(self.s.dispatch(Some(Duration::ZERO)));
            seen.c.extend(self.c.dispatch(Some(Duration::ZERO)));
            if done(seen) {
                return;
            }
        }
        panic!("not done: server {:?} client {:?}", seen.s, seen.c);
    }

    /// Every byte read on `h` (of the server if `server`, else of the client; one read at a
    /// time) until end of stream, dispatching both sides.
    fn read_to_eof(&mut self, server: bool, h: Handle) -> Vec<u8> {
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        let (reader, other) = if server {
            (&mut self.s, &mut self.c)
        } else {
            (&mut self.c, &mut self.s)
        };
        reader.read(h, 1000);
        while Instant::now() < deadline {
            let _ = other.dispatch(Some(Duration::ZERO));
            for x in reader.dispatch(Some(Duration::ZERO)) {
                match x {
                    Completion::Read { data, .. } => {
                        got.extend_from_slice(&data);
                        reader.read(h, 1000);
                    }
                    Completion::Eof { .. } => return got,
                    other => panic!("reading: {other:?} after {} bytes", got.len()),
                }
            }
        }
        panic!("no end of stream after {} bytes", got.len());
    }

    /// Listens; the listener.
    fn listen(&mut self) -> Handle {
        self.s.listen(self.addr, 128, 1);
        let mut seen = Seen::default();
        self.run(&mut seen, |x| listening(&x.s).is_some());
        listening(&seen.s).unwrap()
    }

    /// A connected pair of handles: (server side, client side).
    fn connect(&mut self, listener: Handle) -> (Handle, Handle) {
        self.s.accept(listener, false, 2);
        self.c.connect(self.addr, 3);
        let mut seen = Seen::default();
        self.run(&mut seen, |x| {
            accepted(&x.s).is_some() && connected(&x.c).is_some()
        });
        (accepted(&seen.s).unwrap(), connected(&seen.c).unwrap())
    }
}

fn has(v: &[Completion], want: impl Fn(&Completion) -> bool) -> bool {
    v.iter().any(want)
}

fn handle_misuse_is_a_clear_error<B: Live>(mut p: Pair<B>) {
    let lst = p.listen();
    let (sh, ch) = p.connect(lst);
    let mut seen = Seen::default();

    // Read on a listening handle.
    p.s.read(lst, 10);
    // Write after shutdown.
    p.c.shutdown(ch, 11);
    p.c.write(ch, b"too late".to_vec(), 12);
    p.run(&mut seen, |x| {
        error_of(&x.s, 10).is_some() && error_of(&x.c, 12).is_some()
    });
    assert_eq!(
        error_of(&seen.s, 10),
        Some(ChannelError::WrongKind(
            lst,
            HandleKind::Listener,
            HandleKind::Connection
        ))
    );
    assert_eq!(
        error_of(&seen.c, 12),
        Some(ChannelError::InvalidState(
            ch,
            StateError::WriteAfterShutdown
        ))
    );
    p.run(&mut seen, |x| {
        has(&x.c, |c| {
            matches!(c, Completion::ShutDown { cookie: 11, .. })
        })
    });

    // Close, then use the stale handle; close it twice.
    p.s.close(sh, 20);
    p.s.write(sh, b"x".to_vec(), 21);
    p.s.close(sh, 22);
    p.s.read(sh, 23);
    seen.s.clear();
    p.run(&mut seen, |x| error_of(&x.s, 23).is_some());
    assert!(has(&seen.s, |c| matches!(
        c,
        Completion::Closed { cookie: 20, .. }
    )));
    for cookie in [21, 22, 23] {
        assert_eq!(
            error_of(&seen.s, cookie),
            Some(ChannelError::BadHandle(sh)),
            "cookie {cookie}"
        );
    }

    // A handle from another channel never reaches this channel's connections.
    p.c.read(lst, 30);
    seen.c.clear();
    p.run(&mut seen, |x| error_of(&x.c, 30).is_some());
    assert_eq!(error_of(&seen.c, 30), Some(ChannelError::BadHandle(lst)));
}

fn connecting_to_a_closed_port_fails_with_the_peer_named<B: Live>(mut p: Pair<B>) {
    let target = p.closed;
    p.c.connect(target, 40);
    let mut seen = Seen::default();
    p.run(&mut seen, |x| error_of(&x.c, 40).is_some());
    match error_of(&seen.c, 40) {
        Some(ChannelError::Connect(to, why)) => {
            assert_eq!(to, target);
            assert!(
                matches!(why, ConnectError::Refused | ConnectError::RefusedOrTimedOut),
                "{why}"
            );
        }
        other => panic!("expected a connect error, got {other:?}"),
    }
    assert_eq!(
        p.c.backend().live(),
        0,
        "the failed connection's handle is gone"
    );
}

fn one_accept_and_one_read_at_a_time_and_an_empty_write_completes_at_once<B: Live>(mut p: Pair<B>) {
    let lst = p.listen();
    p.s.accept(lst, true, 2);
    p.s.accept(lst, true, 50);
    p.c.connect(p.addr, 3);
    let mut seen = Seen::default();
    p.run(&mut seen, |x| {
        accepted(&x.s).is_some() && connected(&x.c).is_some() && error_of(&x.s, 50).is_some()
    });
    assert_eq!(
        error_of(&seen.s, 50),
        Some(ChannelError::InvalidState(lst, StateError::AcceptPending))
    );
    let (sh, ch) = (accepted(&seen.s).unwrap(), connected(&seen.c).unwrap());
    p.s.read(sh, 51);
    p.s.read(sh, 52);
    p.c.write(ch, Vec::new(), 53);
    seen = Seen::default();
    p.run(&mut seen, |x| {
        error_of(&x.s, 52).is_some()
            && has(&x.c, |c| {
                matches!(c, Completion::Written { cookie: 53, .. })
            })
    });
    assert_eq!(
        error_of(&seen.s, 52),
        Some(ChannelError::InvalidState(sh, StateError::ReadPending))
    );
    assert!(has(&seen.c, |c| matches!(
        c,
        Completion::Written {
            cookie: 53,
            len: 0,
            ..
        }
    )));
    // The first read is still pending, and gets the next bytes.
    p.c.write(ch, b"hello".to_vec(), 54);
    p.run(&mut seen, |x| {
        has(&x.s, |c| matches!(c, Completion::Read { cookie: 51, .. }))
    });
    assert!(has(&seen.s, |c| matches!(
        c,
        Completion::Read { cookie: 51, data, .. } if data == b"hello"
    )));
}

fn half_close_then_the_peer_still_sends<B: Live>(mut p: Pair<B>) {
    let lst = p.listen();
    let (sh, ch) = p.connect(lst);
    p.c.write(ch, b"ping".to_vec(), 60);
    p.c.shutdown(ch, 61);
    let mut seen = Seen::default();
    p.run(&mut seen, |x| {
        has(&x.c, |c| {
            matches!(c, Completion::ShutDown { cookie: 61, .. })
        })
    });
    assert_eq!(p.read_to_eof(true, sh), b"ping", "bytes then FIN");
    p.c.write(ch, b"late".to_vec(), 63);
    p.run(&mut seen, |x| error_of(&x.c, 63).is_some());
    assert_eq!(
        error_of(&seen.c, 63),
        Some(ChannelError::InvalidState(
            ch,
            StateError::WriteAfterShutdown
        ))
    );
    p.s.write(sh, b"pong".to_vec(), 64);
    p.s.close(sh, 65);
    assert_eq!(p.read_to_eof(false, ch), b"pong");
    p.c.close(ch, 67);
    seen = Seen::default();
    p.run(&mut seen, |x| {
        has(&x.c, |c| matches!(c, Completion::Closed { cookie: 67, .. }))
    });
    p.c.read(ch, 68);
    p.run(&mut seen, |x| error_of(&x.c, 68).is_some());
    assert_eq!(error_of(&seen.c, 68), Some(ChannelError::BadHandle(ch)));
    assert_eq!(p.c.backend().live(), 0);
    assert_eq!(p.s.backend().live(), 1, "only the listener is left");
}

fn close_while_writing_sends_every_byte_then_the_fin<B: Live>(mut p: Pair<B>) {
    let lst = p.listen();
    let (sh, ch) = p.connect(lst);
    let data: Vec<u8> = (0..1u32 << 20).map(|i| (i % 251) as u8).collect();
    for (i, chunk) in data.chunks(256 * 1024).enumerate() {
        p.c.write(ch, chunk.to_vec(), 70 + i as u64);
    }
    p.c.close(ch, 79);
    // The writes and the close complete at once; the handle is stale at once.
    let done = p.c.dispatch(Some(Duration::ZERO));
    for cookie in 70..74 {
        assert!(
            has(
                &done,
                |c| matches!(c, Completion::Written { cookie: k, len, .. } if *k == cookie && *len == 256 * 1024)
            ),
            "write {cookie}: {done:?}"
        );
    }
    assert!(has(&done, |c| matches!(
        c,
        Completion::Closed { cookie: 79, .. }
    )));
    assert_eq!(p.c.backend().live(), 0);
    // The peer gets every byte, in order, then end of stream; the client keeps sending
    // meanwhile.
    let got = p.read_to_eof(true, sh);
    assert_eq!(got.len(), data.len());
    assert!(got == data, "bytes changed or out of order");
}

fn abort_and_reset_fail_what_is_pending<B: Live>(mut p: Pair<B>) {
    let lst = p.listen();
    let (sh, ch) = p.connect(lst);
    p.s.read(sh, 90);
    p.c.read(ch, 91);
    let mut seen = Seen::default();
    p.run(&mut seen, |_| true);
    p.c.abort(ch, 92);
    p.run(&mut seen, |x| {
        has(&x.s, |c| matches!(c, Completion::Reset { .. }))
            && has(&x.c, |c| matches!(c, Completion::Closed { cookie: 92, .. }))
    });
    // The aborting side: its pending read fails, the handle is gone.
    assert_eq!(error_of(&seen.c, 91), Some(ChannelError::Reset(ch)));
    assert_eq!(p.c.backend().live(), 0);
    // The peer: the RST fails its pending read, then the connection is reported reset.
    assert_eq!(error_of(&seen.s, 90), Some(ChannelError::Reset(sh)));
    let at = |v: &[Completion], f: &dyn Fn(&Completion) -> bool| v.iter().position(f);
    assert!(
        at(&seen.s, &|c| matches!(
            c,
            Completion::Error { cookie: 90, .. }
        )) < at(
            &seen.s,
            &|c| matches!(c, Completion::Reset { handle } if *handle == sh)
        ),
        "pending operations fail before the reset is reported: {:?}",
        seen.s
    );
    assert_eq!(p.s.backend().live(), 1, "only the listener is left");
}

fn closing_a_listener_ends_its_pending_accept<B: Live>(mut p: Pair<B>) {
    let lst = p.listen();
    p.s.accept(lst, true, 100);
    p.s.close(lst, 101);
    let mut seen = Seen::default();
    p.run(&mut seen, |x| {
        has(&x.s, |c| {
            matches!(c, Completion::Closed { cookie: 101, .. })
        })
    });
    assert_eq!(
        error_of(&seen.s, 100),
        Some(ChannelError::InvalidState(lst, StateError::ListenerClosed))
    );
    assert_eq!(p.s.backend().live(), 0);
}

/// One module per backend, each with every test above.
macro_rules! on_every_backend {
    ($($test:ident),* $(,)?) => {
        mod bypass_over_the_wire {
            $(#[test] fn $test() { super::$test(super::bypass()) })*
        }
        mod epoll {
            $(#[test] fn $test() { super::$test(super::epoll()) })*
        }
        mod uring {
            $(#[test] fn $test() { super::$test(super::uring()) })*
        }
    };
}

on_every_backend!(
    handle_misuse_is_a_clear_error,
    connecting_to_a_closed_port_fails_with_the_peer_named,
    one_accept_and_one_read_at_a_time_and_an_empty_write_completes_at_once,
    half_close_then_the_peer_still_sends,
    close_while_writing_sends_every_byte_then_the_fin,
    abort_and_reset_fail_what_is_pending,
    closing_a_listener_ends_its_pending_accept,
);
