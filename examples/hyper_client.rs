//! hyper 1.x's HTTP/1 client, unchanged, on megatcp's async runtime: `--connections`
//! keep-alive connections (`megatcp_async::TcpStream` through hyper-util's `TokioIo` into
//! hyper's `http1` client handshake) share `--requests` requests to `--url`, on the first
//! core of the flags. Prints a JSON report on stdout (requests answered 2xx, failed, body
//! bytes, seconds); `--out FILE` saves the last response's body. Exits 1 if a request failed.
//!
//! ```sh
//! hyper-client --backend afxdp --iface mtcp-cli --ip 10.77.0.20/24 --cores 1 \
//!     --url http://10.77.0.1:8080/index.html --requests 1000 --connections 8
//! ```

use std::cell::{Cell, RefCell};
use std::io;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Instant;

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use megatcp_async::{TcpStream, spawn_local};
use megatcp_launch::{BackendArgs, Cores};

/// HTTP/1 client (hyper) on megatcp's async runtime.
#[derive(Parser)]
struct Args {
    #[command(flatten)]
    backend: BackendArgs,
    /// What to fetch: http://HOST[:PORT]/PATH (IPv4).
    #[arg(long)]
    url: Uri,
    /// Requests in all.
    #[arg(long, default_value_t = 1)]
    requests: u64,
    /// Keep-alive connections sharing them.
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// POST this file's bytes (else GET).
    #[arg(long)]
    post: Option<std::path::PathBuf>,
    /// Save the last response's body here.
    #[arg(long)]
    out: Option<std::path::PathBuf>,
}

/// What to ask.
#[derive(Debug, Clone)]
pub struct Fetch {
    /// The URL (http only).
    pub url: Uri,
    /// Requests in all.
    pub requests: u64,
    /// Keep-alive connections sharing them.
    pub connections: usize,
    /// A body to POST (else GET).
    pub post: Option<Bytes>,
}

/// What came back.
#[derive(Debug, Default)]
pub struct FetchReport {
    /// Requests answered with a 2xx status and a whole body.
    pub ok: u64,
    /// Requests that failed (connection, protocol, or a non-2xx status).
    pub failed: u64,
    /// Body bytes received.
    pub bytes: u64,
    /// The last body received.
    pub last_body: Vec<u8>,
    /// The first error, if any.
    pub error: Option<String>,
    /// Wall time.
    pub seconds: f64,
}

/// Host and port of an http URL.
fn authority(url: &Uri) -> io::Result<(String, u16)> {
    let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidInput, format!("{url}: {m}"));
    if url.scheme_str() != Some("http") {
        return Err(bad("only http:// URLs"));
    }
    let host = url.host().ok_or_else(|| bad("no host"))?;
    Ok((host.to_owned(), url.port_u16().unwrap_or(80)))
}

/// One connection: requests until the shared count runs out.
async fn connection(fetch: Rc<Fetch>, left: Rc<Cell<u64>>, report: Rc<RefCell<FetchReport>>) {
    let fail = |e: String| {
        let mut r = report.borrow_mut();
        r.failed += 1;
        r.error.get_or_insert(e);
    };
    let (host, port) = match authority(&fetch.url) {
        Ok(a) => a,
        Err(e) => return fail(e.to_string()),
    };
    let stream = match TcpStream::connect((host.as_str(), port)).await {
        Ok(s) => s,
        Err(e) => return fail(format!("connect: {e}")),
    };
    let (mut sender, conn) = match http1::handshake(TokioIo::new(stream)).await {
        Ok(p) => p,
        Err(e) => return fail(format!("handshake: {e}")),
    };
    spawn_local(conn);
    let path = fetch
        .url
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    while left.get() > 0 {
        left.set(left.get() - 1);
        let method = if fetch.post.is_some() {
            Method::POST
        } else {
            Method::GET
        };
        let req = Request::builder()
            .method(method)
            .uri(path.as_str())
            .header(hyper::header::HOST, format!("{host}:{port}"))
            .body(Full::new(fetch.post.clone().unwrap_or_default()));
        let req = match req {
            Ok(r) => r,
            Err(e) => return fail(format!("request: {e}")),
        };
        if let Err(e) = sender.ready().await {
            return fail(format!("connection: {e}"));
        }
        let resp = match sender.send_request(req).await {
            Ok(r) => r,
            Err(e) => return fail(format!("request: {e}")),
        };
        let status = resp.status();
        let body = match resp.into_body().collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => return fail(format!("body: {e}")),
        };
        if !status.is_success() {
            fail(format!("status {status}"));
            continue;
        }
        let mut r = report.borrow_mut();
        r.ok += 1;
        r.bytes += body.len() as u64;
        r.last_body = body.to_vec();
    }
}

/// Runs `fetch` on this core's runtime.
pub async fn fetch(fetch: Fetch) -> FetchReport {
    let t0 = Instant::now();
    let (fetch, left) = (Rc::new(fetch), Rc::new(Cell::new(0)));
    left.set(fetch.requests);
    let report = Rc::new(RefCell::new(FetchReport::default()));
    let tasks: Vec<_> = (0..fetch.connections.max(1))
        .map(|_| spawn_local(connection(fetch.clone(), left.clone(), report.clone())))
        .collect();
    for t in tasks {
        let _ = t.await;
    }
    let mut r = report.take();
    // Requests no connection got to (they all failed early).
    r.failed += left.get();
    r.seconds = t0.elapsed().as_secs_f64();
    r
}

fn main() -> ExitCode {
    let mut args = Args::parse();
    // Notices of the backends (AF_XDP mode, fallbacks, hints); RUST_LOG overrides.
    megatcp_launch::logging::init("info");
    let post = match &args.post {
        Some(p) => match std::fs::read(p) {
            Ok(b) => Some(Bytes::from(b)),
            Err(e) => {
                eprintln!("hyper-client: {}: {e}", p.display());
                return ExitCode::from(2);
            }
        },
        None => None,
    };
    // One core runs the client.
    args.backend.cores = Cores(vec![args.backend.cores.0[0]]);
    let job = Fetch {
        url: args.url.clone(),
        requests: args.requests,
        connections: args.connections,
        post,
    };
    let cores = match megatcp_async::run(&args.backend, |_core| {
        let job = job.clone();
        async move {
            let r = fetch(job).await;
            (r.ok, r.failed, r.bytes, r.last_body, r.error, r.seconds)
        }
    }) {
        Ok(cores) => cores,
        Err(e) => {
            eprintln!("hyper-client: {e}");
            return ExitCode::from(2);
        }
    };
    let Some((ok, failed, bytes, body, error, seconds)) =
        cores.into_iter().next().and_then(|c| c.output)
    else {
        eprintln!("hyper-client: the core did not finish");
        return ExitCode::from(2);
    };
    if let Some(out) = &args.out
        && let Err(e) = std::fs::write(out, &body)
    {
        eprintln!("hyper-client: {}: {e}", out.display());
        return ExitCode::from(2);
    }
    let report = serde_json::json!({
        "ok": ok, "failed": failed, "bytes": bytes, "seconds": seconds,
        "requests_per_second": ok as f64 / seconds.max(1e-9), "error": error,
    });
    println!("{report}");
    if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
