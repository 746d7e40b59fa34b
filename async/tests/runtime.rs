//! The runtime on every backend that runs in one process (megatcp's own stack over the
//! in-memory wire, the kernel's TCP through epoll and io_uring on loopback): timers fire
//! within 2 ms of their deadline on an idle core, and futures dropped in flight (reads,
//! connects, binds, accepts) neither leak nor misroute a completion; tasks, join handles,
//! stop, and the tokio and futures-io traits.
#![allow(clippy::unwrap_used)]

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use megatcp_async::{AsyncApp, TcpListener, TcpStream, sleep, spawn_local, stats, timeout};
use megatcp_launch::pair::{PairConfig, SERVER_IP, run_pair};
use megatcp_launch::{BackendArgs, BackendKind, Cores, Launch};
use megatcp_test_support::{IdleCheck, alone, beside_others, free_port, machine_on_time};

/// A timer sample counts as taken on an idle core when the runtime's thread waited at most
/// this long in all for a CPU held by other processes meanwhile, and the machine woke other
/// sleepers at most this late between the deadline and the timer's firing (the machine is
/// a shared VM: a thread kept off its CPU, or a CPU the host took away, says nothing about
/// the runtime's timers). A counted sample must still end within the whole 2 ms of its
/// deadline.
const IDLE_SLACK: Duration = Duration::from_millis(1);

/// Where a test runs.
#[derive(Debug, Clone, Copy)]
enum Path {
    /// megatcp's stack on both sides, over the in-memory wire.
    Wire,
    /// The kernel's TCP on loopback through this backend.
    Kernel(BackendKind),
}

const PATHS: [Path; 3] = [
    Path::Wire,
    Path::Kernel(BackendKind::Epoll),
    Path::Kernel(BackendKind::Uring),
];

/// Runs `server(port)` on one core and `client(server address)` on another over `path`;
/// the client's output. The server runs until the client is done (then it is stopped).
fn pair<S, SF, C, CF, T>(path: Path, server: S, client: C) -> T
where
    S: Fn(u16) -> SF + Sync,
    SF: Future<Output = ()>,
    C: Fn(SocketAddrV4) -> CF + Sync,
    CF: Future<Output = T>,
    T: Send,
{
    let grace = Duration::from_millis(100);
    match path {
        Path::Wire => {
            let server = AsyncApp::new(|_| server(7)).grace(grace);
            let client = AsyncApp::new(|_| client(SocketAddrV4::new(SERVER_IP, 7))).grace(grace);
            let r = run_pair(&server, &client, &PairConfig::default()).unwrap();
            r.client.into_iter().next().unwrap().output.unwrap()
        }
        Path::Kernel(backend) => {
            let port = free_port();
            let args = |core| BackendArgs {
                backend,
                cores: Cores(vec![core]),
                ..BackendArgs::default()
            };
            let (server_args, client_args) = (args(0), args(1));
            let server_run = Launch::new(&server_args).pin(false).handle_signals(false);
            let stop = server_run.stop_flag();
            let server = AsyncApp::new(|_| server(port)).grace(grace);
            let client = AsyncApp::new(|_| client(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)))
                .grace(grace);
            std::thread::scope(|s| {
                let server = s.spawn(|| server_run.run(&server));
                // The client starts once the server listens (or after 10 s: a test that
                // binds late, or never, waits in its own way).
                let end = Instant::now() + Duration::from_secs(10);
                while !kernel_listens(port) && Instant::now() < end {
                    std::thread::sleep(Duration::from_millis(5));
                }
                let out = Launch::new(&client_args)
                    .pin(false)
                    .handle_signals(false)
                    .run(&client);
                stop.store(true, Ordering::Relaxed);
                server.join().unwrap().unwrap();
                out.unwrap().remove(0).output.unwrap()
            })
        }
    }
}

/// Whether a kernel socket listens on TCP `port` (from `/proc/net/tcp`: no connection is
/// made, so the server sees none).
fn kernel_listens(port: u16) -> bool {
    let local = format!(":{port:04X}");
    std::fs::read_to_string("/proc/net/tcp").is_ok_and(|t| {
        t.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[1].ends_with(&local) && f[3] == "0A"
        })
    })
}

/// A server that accepts and, per connection, answers each line `N` with N bytes of
/// `b'a' + connection number`, after `N` ms; at EOF it counts the connection in `closed`.
async fn line_server(port: u16, closed: Arc<AtomicU64>) {
    let listener = TcpListener::bind(("0.0.0.0", port)).await.unwrap();
    let mut n = 0u8;
    while let Ok((mut s, _)) = listener.accept().await {
        let (closed, tag) = (closed.clone(), b'a' + n % 26);
        n = n.wrapping_add(1);
        spawn_local(async move {
            let mut line = Vec::new();
            let mut buf = [0u8; 64];
            loop {
                let got = match s.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(got) => got,
                };
                line.extend_from_slice(&buf[..got]);
                while let Some(end) = line.iter().position(|b| *b == b'\n') {
                    let ms: u64 = std::str::from_utf8(&line[..end]).unwrap().parse().unwrap();
                    line.drain(..=end);
                    sleep(Duration::from_millis(ms)).await;
                    s.write_all(&vec![tag; ms as usize]).await.unwrap();
                }
            }
            closed.fetch_add(1, Ordering::Relaxed);
        });
    }
}

/// Reads exactly `n` bytes.
async fn read_n(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    while out.len() < n {
        let v = s.recv().await.unwrap();
        assert!(!v.is_empty(), "EOF after {} of {n} bytes", out.len());
        out.extend_from_slice(&v);
    }
    out
}

#[test]
fn a_timeout_on_a_read_that_never_completes_fires_within_2ms_of_its_deadline() {
    // Measures timer lateness: no other test of this file runs meanwhile.
    let _alone = alone();
    for path in PATHS {
        let closed = Arc::new(AtomicU64::new(0));
        let (late, busy) = pair(
            path,
            |port| line_server(port, closed.clone()),
            |target| async move {
                let mut s = TcpStream::connect(target).await.unwrap();
                let mut buf = [0u8; 16];
                let (mut late, mut busy) = (Vec::new(), 0);
                while late.len() < 10 && busy < 400 {
                    let idle = IdleCheck::start();
                    let deadline = Instant::now() + Duration::from_millis(30);
                    let r = timeout(Duration::from_millis(30), s.read(&mut buf)).await;
                    let l = Instant::now() - deadline;
                    assert!(r.is_err(), "nothing was sent: the read cannot complete");
                    if idle.was_idle(IDLE_SLACK) && machine_on_time(deadline, IDLE_SLACK) {
                        late.push(l);
                    } else {
                        busy += 1;
                    }
                }
                // The cancelled reads lost nothing: the answer comes whole to the next one.
                s.write_all(b"5\n").await.unwrap();
                assert_eq!(read_n(&mut s, 5).await, b"aaaaa");
                late.sort();
                (late, busy)
            },
        );
        eprintln!(
            "{path:?}: timer lateness on an idle core {late:?} ({busy} samples on a busy core set aside)"
        );
        assert_eq!(
            late.len(),
            10,
            "{path:?}: the machine was too busy to measure"
        );
        assert!(
            late[late.len() - 1] <= Duration::from_millis(2),
            "{path:?}: a timeout fired {:?} after its deadline",
            late[late.len() - 1]
        );
    }
}

#[test]
fn cancelled_reads_lose_nothing_and_a_dropped_streams_completion_never_reaches_the_next() {
    let _timing = beside_others();
    for path in PATHS {
        let closed = Arc::new(AtomicU64::new(0));
        let (stale, b, c) = pair(
            path,
            |port| line_server(port, closed.clone()),
            |target| async move {
                // A: a read in flight is cancelled, then A is dropped while its Read is
                // still pending in the channel.
                let mut a = TcpStream::connect(target).await.unwrap();
                let r = timeout(Duration::from_millis(5), a.read(&mut [0; 8])).await;
                assert!(r.is_err());
                drop(a);
                // B takes A's slot (the runtime reuses it): A's late completion (the read
                // ended by the close) must not reach B.
                let mut b = TcpStream::connect(target).await.unwrap();
                let mut c = TcpStream::connect(target).await.unwrap();
                // Both answers are slow (1 s: a loaded machine may stall the client for a
                // while): each read is cancelled twice before it completes.
                b.write_all(b"1000\n").await.unwrap();
                c.write_all(b"1000\n").await.unwrap();
                for _ in 0..2 {
                    let r = timeout(Duration::from_millis(10), b.read(&mut [0; 8])).await;
                    assert!(r.is_err());
                    let r = timeout(Duration::from_millis(10), c.recv()).await;
                    assert!(r.is_err());
                }
                let (rb, rc) = (read_n(&mut b, 1000).await, read_n(&mut c, 1000).await);
                // Let the stale completion come in.
                sleep(Duration::from_millis(50)).await;
                (stats().stale_completions, rb, rc)
            },
        );
        assert!(stale >= 1, "{path:?}: A's read never came back");
        // B and C were the second and third connections: tags b and c, whole.
        assert_eq!(b, vec![b'b'; 1000], "{path:?}");
        assert_eq!(c, vec![b'c'; 1000], "{path:?}");
    }
}

#[test]
fn a_dropped_connect_closes_its_connection_once_it_opens() {
    let _timing = beside_others();
    for path in PATHS {
        let closed = Arc::new(AtomicU64::new(0));
        let seen = closed.clone();
        let (closed_handles, still_works) = pair(
            path,
            |port| line_server(port, closed.clone()),
            |target| {
                let seen = seen.clone();
                async move {
                    // Dropped right after its first poll: the Connect is already queued.
                    let r = timeout(Duration::ZERO, TcpStream::connect(target)).await;
                    assert!(r.is_err());
                    let end = Instant::now() + Duration::from_secs(5);
                    while (stats().stale_handles_closed == 0 || seen.load(Ordering::Relaxed) == 0)
                        && Instant::now() < end
                    {
                        sleep(Duration::from_millis(5)).await;
                    }
                    let mut s = TcpStream::connect(target).await.unwrap();
                    s.write_all(b"3\n").await.unwrap();
                    (stats().stale_handles_closed, read_n(&mut s, 3).await)
                }
            },
        );
        assert_eq!(closed_handles, 1, "{path:?}");
        // The server saw the orphan connection end (EOF), and served the next one.
        assert!(closed.load(Ordering::Relaxed) >= 1, "{path:?}");
        assert_eq!(still_works, b"bbb", "{path:?}");
    }
}

#[test]
fn a_dropped_bind_closes_its_listener_and_a_dropped_accept_loses_no_connection() {
    let _timing = beside_others();
    for path in PATHS {
        let bound = Arc::new(AtomicU64::new(0));
        let served = pair(
            path,
            |p| {
                // A bind dropped in flight, then the real one on the same port (on
                // megatcp's stack a leaked listener would make it fail: in use).
                let bound = bound.clone();
                async move {
                    let r = timeout(Duration::ZERO, TcpListener::bind(("0.0.0.0", p))).await;
                    assert!(r.is_err());
                    sleep(Duration::from_millis(20)).await;
                    assert_eq!(stats().stale_handles_closed, 1);
                    let l = TcpListener::bind(("0.0.0.0", p)).await.unwrap();
                    bound.store(1, Ordering::Relaxed);
                    // Accepts cancelled while nothing comes.
                    for _ in 0..3 {
                        assert!(timeout(Duration::from_millis(5), l.accept()).await.is_err());
                    }
                    while let Ok((mut s, _)) = l.accept().await {
                        spawn_local(async move {
                            let _ = s.send(b"hi".to_vec()).await;
                        });
                    }
                }
            },
            |target| {
                let bound = bound.clone();
                async move {
                    while bound.load(Ordering::Relaxed) == 0 {
                        sleep(Duration::from_millis(5)).await;
                    }
                    // The accepts were cancelled before this connection came: it waits
                    // in the listener's queue for the next one.
                    sleep(Duration::from_millis(30)).await;
                    let mut s = TcpStream::connect(target).await.unwrap();
                    read_n(&mut s, 2).await
                }
            },
        );
        assert_eq!(served, b"hi", "{path:?}");
    }
}

#[test]
fn tasks_run_concurrently_and_join_handles_return_their_output() {
    let _timing = beside_others();
    let (got, took) = pair(
        Path::Wire,
        |port| line_server(port, Arc::new(AtomicU64::new(0))),
        |target| async move {
            let t0 = Instant::now();
            let tasks: Vec<_> = (0..20)
                .map(|i| {
                    spawn_local(async move {
                        let mut s = TcpStream::connect(target).await.unwrap();
                        s.write_all(b"50\n").await.unwrap();
                        (i, read_n(&mut s, 50).await.len())
                    })
                })
                .collect();
            let mut got = Vec::new();
            for t in tasks {
                got.push(t.await.unwrap());
            }
            (got, t0.elapsed())
        },
    );
    assert_eq!(got, (0..20).map(|i| (i, 50)).collect::<Vec<_>>());
    // Twenty 50 ms answers at once, not one after another (1 s).
    assert!(took < Duration::from_millis(800), "{took:?}");
}

#[test]
fn stop_ends_accept_loops_and_wakes_stopping() {
    let _timing = beside_others();
    let stopped = pair(
        Path::Kernel(BackendKind::Epoll),
        |_| async {},
        |_| async {
            let l = TcpListener::bind(("127.0.0.1", free_port())).await.unwrap();
            let waiter = spawn_local(megatcp_async::stopping());
            let accept = spawn_local(async move { l.accept().await.map(|_| ()) });
            sleep(Duration::from_millis(10)).await;
            assert!(!megatcp_async::is_stopping());
            megatcp_async::request_stop();
            let e = accept.await.unwrap().unwrap_err();
            waiter.await.unwrap();
            e.get_ref()
                .and_then(|e| e.downcast_ref::<megatcp_async::Stopped>())
                .is_some()
        },
    );
    assert!(stopped, "accept ended with Stopped");
}

#[test]
fn streams_work_through_the_tokio_and_futures_io_traits() {
    let _timing = beside_others();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    for path in PATHS {
        let (a, b, eof) = pair(
            path,
            |port| line_server(port, Arc::new(AtomicU64::new(0))),
            |target| async move {
                let mut s = TcpStream::connect(target).await.unwrap();
                AsyncWriteExt::write_all(&mut s, b"7\n").await.unwrap();
                let mut a = [0u8; 7];
                AsyncReadExt::read_exact(&mut s, &mut a).await.unwrap();
                futures_write(&mut s, b"3\n").await;
                let mut b = [0u8; 3];
                let mut got = 0;
                while got < 3 {
                    got += futures_read(&mut s, &mut b[got..]).await;
                }
                AsyncWriteExt::shutdown(&mut s).await.unwrap();
                // The server sees EOF and closes: our read ends.
                let eof = AsyncReadExt::read(&mut s, &mut [0; 4]).await.unwrap();
                (a, b, eof)
            },
        );
        assert_eq!(&a, b"aaaaaaa", "{path:?}");
        assert_eq!(&b, b"aaa", "{path:?}");
        assert_eq!(eof, 0, "{path:?}");
    }
}

async fn futures_write(s: &mut TcpStream, buf: &[u8]) {
    let n =
        std::future::poll_fn(|cx| futures_io::AsyncWrite::poll_write(Pin::new(&mut *s), cx, buf))
            .await
            .unwrap();
    assert_eq!(n, buf.len());
}

async fn futures_read(s: &mut TcpStream, buf: &mut [u8]) -> usize {
    std::future::poll_fn(|cx| futures_io::AsyncRead::poll_read(Pin::new(&mut *s), cx, buf))
        .await
        .unwrap()
}
