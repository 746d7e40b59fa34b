//! hyper 1.x's HTTP/1 server, unchanged, on megatcp's async runtime: each accepted
//! `megatcp_async::TcpStream` goes to hyper's `http1` server connection through
//! hyper-util's `TokioIo` (our stream implements tokio's I/O traits). One runtime per core
//! of the flags, on every backend; SIGINT/SIGTERM shut each connection down gracefully
//! (hyper's `graceful_shutdown`: the request in progress is answered, then the connection
//! closes).
//!
//! With `--tokio` the very same service runs on tokio's current-thread runtime and the
//! kernel's TCP, on the first CPU of `--cores`: the baseline of the benchmark.
//!
//! ```sh
//! hyper-server --backend afxdp --iface mtcp-srv --ip 10.77.0.10/24 --port 8080 --cores 0
//! hyper-server --tokio --port 8080 --cores 0
//! ```
//!
//! Routes: `GET /` answers `Hello, world!\n`; `GET /bytes/N` answers N bytes (byte `i` is
//! `i % 251`, N at most 64 MiB); `POST /echo` answers the request's body; anything else 404.

use std::convert::Infallible;
use std::io;
use std::pin::pin;
use std::process::ExitCode;
use std::task::Poll;

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use megatcp_async::{TcpListener, spawn_local};
use megatcp_launch::BackendArgs;

/// HTTP/1 server (hyper) on megatcp's async runtime.
#[derive(Parser)]
struct Args {
    #[command(flatten)]
    backend: BackendArgs,
    /// Listening port.
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Run the same server on tokio's current-thread runtime and the kernel's TCP instead.
    #[arg(long)]
    tokio: bool,
}

/// The body of `GET /`.
pub const HELLO: &[u8] = b"Hello, world!\n";
/// The largest `GET /bytes/N`.
const MAX_BYTES: usize = 64 << 20;

/// The `N` bytes of `GET /bytes/N`.
pub fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

fn respond(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    r
}

/// The service (the same on megatcp and on tokio).
pub async fn handle(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_owned();
    Ok(match (req.method(), path.as_str()) {
        (&Method::GET, "/") => respond(StatusCode::OK, Bytes::from_static(HELLO)),
        (&Method::POST, "/echo") => match req.into_body().collect().await {
            Ok(body) => respond(StatusCode::OK, body.to_bytes()),
            Err(_) => respond(StatusCode::BAD_REQUEST, Bytes::new()),
        },
        (&Method::GET, p) if p.starts_with("/bytes/") => {
            match p["/bytes/".len()..].parse::<usize>() {
                Ok(n) if n <= MAX_BYTES => respond(StatusCode::OK, pattern(n).into()),
                _ => respond(StatusCode::BAD_REQUEST, Bytes::new()),
            }
        }
        _ => respond(StatusCode::NOT_FOUND, Bytes::new()),
    })
}

/// Serves HTTP/1 on `port` on megatcp until the runtime stops; the connections accepted.
pub async fn serve(port: u16) -> io::Result<u64> {
    let listener = TcpListener::bind_with_backlog(("0.0.0.0", port), 4096).await?;
    let mut accepted = 0;
    while let Ok((stream, _peer)) = listener.accept().await {
        accepted += 1;
        spawn_local(async move {
            let conn =
                http1::Builder::new().serve_connection(TokioIo::new(stream), service_fn(handle));
            let mut conn = pin!(conn);
            let mut stopping = pin!(megatcp_async::stopping());
            let mut shutting = false;
            // The connection, until it ends; once the runtime stops, gracefully.
            let _ = std::future::poll_fn(|cx| {
                if !shutting && stopping.as_mut().poll(cx).is_ready() {
                    shutting = true;
                    conn.as_mut().graceful_shutdown();
                }
                match conn.as_mut().poll(cx) {
                    Poll::Ready(r) => Poll::Ready(r),
                    Poll::Pending => Poll::Pending,
                }
            })
            .await;
        });
    }
    Ok(accepted)
}

/// The same server on tokio's current-thread runtime and the kernel's TCP, on `cpu`.
fn serve_tokio(port: u16, cpu: usize) -> io::Result<()> {
    core_affinity::set_for_current(core_affinity::CoreId { id: cpu });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(("0.0.0.0", port)).await?;
        loop {
            let (stream, _) = listener.accept().await?;
            tokio::spawn(async move {
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service_fn(handle))
                    .await;
            });
        }
    })
}

fn main() -> ExitCode {
    let args = Args::parse();
    // Notices of the backends (AF_XDP mode, fallbacks, hints); RUST_LOG overrides.
    megatcp_launch::logging::init("info");
    let port = args.port;
    if args.tokio {
        eprintln!("hyper-server: tokio (kernel TCP) on port {port}");
        return match serve_tokio(port, args.backend.cores.0[0]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("hyper-server: {e}");
                ExitCode::from(2)
            }
        };
    }
    eprintln!(
        "hyper-server: {:?} on port {port}, cores {:?}",
        args.backend.backend, args.backend.cores.0
    );
    megatcp_examples::server_exit(
        "hyper-server",
        megatcp_async::run(&args.backend, |_core| serve(port)),
    )
}
