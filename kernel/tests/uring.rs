//! io_uring semantics against a plain Linux peer on loopback: a refused connect, half-close,
//! stale handles, and receiving paused past 1 MiB unread, then resumed in order. (The
//! channel's rules on every backend: `launch/tests/rules.rs`.)
#![allow(clippy::unwrap_used)]

use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use megatcp_channel::Backend;
use megatcp_kernel::uring::{Uring, UringConfig};
use megatcp_test_support::free_port;

type Stop = Arc<AtomicBool>;

fn uring(_core: usize, stop: Stop) -> Result<Uring, megatcp_kernel::uring::UringError> {
    let config = UringConfig {
        files: 4096,
        ..UringConfig::default()
    };
    Uring::new(stop, &config)
}

/// Dispatches until `pick` finds a completion (5 s at most).
fn wait<B: Backend>(
    ch: &mut megatcp_channel::Channel<B>,
    mut pick: impl FnMut(&megatcp_channel::Completion) -> bool,
) -> megatcp_channel::Completion {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut seen = Vec::new();
    while std::time::Instant::now() < deadline {
        for c in ch.dispatch(Some(Duration::from_millis(20))) {
            if pick(&c) {
                return c;
            }
            seen.push(c);
        }
    }
    panic!("no such completion; saw {seen:?}");
}

#[test]
fn uring_reports_refused_connects_stale_handles_and_half_close() {
    use megatcp_channel::{Channel, ChannelError, Completion, ConnectError};
    let stop = Stop::default();
    let mut ch = Channel::new(uring(0, stop).unwrap());
    // Nobody listens on this port: the connect fails with the kernel's reason.
    let closed = SocketAddrV4::new(Ipv4Addr::LOCALHOST, free_port());
    ch.connect(closed, 1);
    match wait(&mut ch, |c| {
        matches!(c, Completion::Error { cookie: 1, .. })
    }) {
        Completion::Error {
            error: ChannelError::Connect(addr, why),
            ..
        } => {
            assert_eq!(addr, closed);
            assert_eq!(why, ConnectError::Refused, "{why}");
        }
        other => panic!("{other:?}"),
    }
    // A Linux peer: half-close from our side, then the peer's bytes still arrive.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = match l.local_addr().unwrap() {
        std::net::SocketAddr::V4(a) => a,
        std::net::SocketAddr::V6(_) => unreachable!(),
    };
    ch.connect(addr, 2);
    // The kernel completes the handshake before the peer's accept.
    let h = match wait(&mut ch, |c| matches!(c, Completion::Connected { .. })) {
        Completion::Connected { handle, .. } => handle,
        other => panic!("{other:?}"),
    };
    let (mut peer, _) = l.accept().unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    ch.write(h, b"ping".to_vec(), 3);
    ch.shutdown(h, 4);
    wait(&mut ch, |c| {
        matches!(c, Completion::ShutDown { cookie: 4, .. })
    });
    let mut got = Vec::new();
    std::io::Read::read_to_end(&mut peer, &mut got).unwrap();
    assert_eq!(got, b"ping", "bytes then FIN");
    ch.write(h, b"late".to_vec(), 5);
    assert!(matches!(
        wait(&mut ch, |c| matches!(
            c,
            Completion::Error { cookie: 5, .. }
        )),
        Completion::Error {
            error: ChannelError::InvalidState(..),
            ..
        }
    ));
    std::io::Write::write_all(&mut peer, b"pong").unwrap();
    drop(peer);
    ch.read(h, 6);
    match wait(&mut ch, |c| matches!(c, Completion::Read { cookie: 6, .. })) {
        Completion::Read { data, .. } => assert_eq!(data, b"pong"),
        other => panic!("{other:?}"),
    }
    ch.read(h, 7);
    wait(&mut ch, |c| matches!(c, Completion::Eof { cookie: 7, .. }));
    ch.close(h, 8);
    wait(&mut ch, |c| {
        matches!(c, Completion::Closed { cookie: 8, .. })
    });
    // The handle is stale now.
    ch.read(h, 9);
    assert!(matches!(
        wait(&mut ch, |c| matches!(
            c,
            Completion::Error { cookie: 9, .. }
        )),
        Completion::Error {
            error: ChannelError::BadHandle(_),
            ..
        }
    ));
    assert_eq!(ch.backend().live_handles(), 0);
}

#[test]
fn uring_stops_receiving_while_unread_and_resumes_in_order() {
    use megatcp_channel::{Channel, Completion};
    let mut ch = Channel::new(uring(0, Stop::default()).unwrap());
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = match l.local_addr().unwrap() {
        std::net::SocketAddr::V4(a) => a,
        std::net::SocketAddr::V6(_) => unreachable!(),
    };
    ch.connect(addr, 1);
    let h = match wait(&mut ch, |c| matches!(c, Completion::Connected { .. })) {
        Completion::Connected { handle, .. } => handle,
        other => panic!("{other:?}"),
    };
    let (mut peer, _) = l.accept().unwrap();
    // 8 MiB, far past the 1 MiB the backend receives ahead of the application.
    let data: Vec<u8> = (0..8u32 << 20).map(|i| (i % 251) as u8).collect();
    let sent = data.clone();
    let writer = std::thread::spawn(move || {
        std::io::Write::write_all(&mut peer, &sent).unwrap();
    });
    // Nobody reads for a while: the inbox fills and receiving pauses.
    let idle = std::time::Instant::now() + Duration::from_millis(300);
    while std::time::Instant::now() < idle {
        let _ = ch.dispatch(Some(Duration::from_millis(10)));
    }
    let mut got = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while got.len() < data.len() {
        assert!(
            std::time::Instant::now() < deadline,
            "stalled at {} bytes",
            got.len()
        );
        ch.read(h, 2);
        match wait(&mut ch, |c| {
            matches!(c, Completion::Read { .. } | Completion::Eof { .. })
        }) {
            Completion::Read { data: d, .. } => got.extend_from_slice(&d),
            other => panic!("{other:?} after {} bytes", got.len()),
        }
    }
    writer.join().unwrap();
    assert!(got == data, "bytes out of order or changed");
    assert!(
        ch.backend().stats().recv_rearms > 0,
        "receiving never paused: {:?}",
        ch.backend().stats()
    );
    ch.close(h, 3);
    wait(&mut ch, |c| {
        matches!(c, Completion::Closed { cookie: 3, .. })
    });
}
