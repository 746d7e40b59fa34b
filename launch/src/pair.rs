//! A server application and a client application in one process, on separate cores, over
//! megatcp's own stack joined by the in-memory wire NIC: the whole system without root or a
//! network (`megatcp-echo pair`, the echo tests).
//!
//! The server's stack has the address [`SERVER_IP`], the client's [`CLIENT_IP`] (one /24).
//! [`run_pair`] starts the server's cores, runs the client application on its cores until
//! it returns everywhere, then stops the server and returns what every core did.

use std::net::Ipv4Addr;
use std::sync::Mutex;

use megatcp_engine::{CoreReport, EngineError, IdlePolicy, Runtime};
use megatcp_nic::NicQueue;
pub use megatcp_nic::fault::FaultConfig;
use megatcp_nic::fault::FaultyQueue;
use megatcp_nic::wire::{self, WireConfig, WireQueue};
use megatcp_stack::{LocalAddr, MacAddr, StackConfig};

use crate::{App, CoreOutcome, LaunchError, Outputs};

/// The server's address on the wire.
pub const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
/// The client's address on the wire.
pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);

/// Where and how a pair runs.
#[derive(Debug, Clone)]
pub struct PairConfig {
    /// CPUs of the server, one stack each.
    pub server_cores: Vec<usize>,
    /// CPUs of the client.
    pub client_cores: Vec<usize>,
    /// TCP buffer per connection and direction, bytes.
    pub buffer: usize,
    /// Busy-poll when idle (else back off and sleep).
    pub busy_poll: bool,
    /// Faults injected into what each side receives (loss, duplication, reordering, ...;
    /// seeded, the seed varied per side and queue), or none.
    pub faults: Option<FaultConfig>,
}

impl Default for PairConfig {
    fn default() -> Self {
        Self {
            server_cores: vec![0],
            client_cores: vec![1],
            buffer: 16 * 1024,
            busy_poll: false,
            faults: None,
        }
    }
}

/// What both sides did, per core.
#[derive(Debug)]
pub struct PairOutcome<S, C> {
    /// The server's cores.
    pub server: Vec<CoreOutcome<S>>,
    /// The client's cores.
    pub client: Vec<CoreOutcome<C>>,
}

/// The stack of one side's core: a locally administered MAC ending in `mac_last`.
fn stack_config(mac_last: u8, ip: Ipv4Addr, core: usize, buffer: usize) -> StackConfig {
    let mut c = StackConfig::new(
        MacAddr([2, 0x6d, 0x74, 0, 0, mac_last]),
        LocalAddr::new(ip, 24),
    );
    c.seed = (u64::from(mac_last) << 32) ^ core as u64 ^ u64::from(std::process::id());
    c.tcp.rx_buffer = buffer;
    c.tcp.tx_buffer = buffer;
    c.default_backlog = 65536;
    c.tx_queue_limit = 16384;
    // A load generator opens thousands of connections at once, before its first ARP answer.
    c.arp.max_queued_per_neighbour = 16384;
    c
}

/// Hands each core its queue, once.
fn queue_source<Q: NicQueue + Send>(queues: Vec<Q>) -> impl Fn(usize) -> Result<Q, String> + Sync {
    let slots = Mutex::new(queues.into_iter().map(Some).collect::<Vec<_>>());
    move |i| {
        let mut s = slots
            .lock()
            .map_err(|_| "queue table poisoned".to_string())?;
        s.get_mut(i)
            .and_then(Option::take)
            .ok_or_else(|| format!("no queue for core {i}"))
    }
}

/// Runs `server` and `client` over a fresh wire pair with one queue per core.
pub fn run_pair<S: App, C: App>(
    server: &S,
    client: &C,
    cfg: &PairConfig,
) -> Result<PairOutcome<S::Output, C::Output>, LaunchError> {
    let queues = cfg.server_cores.len().max(cfg.client_cores.len()) as u16;
    if cfg.server_cores.len() != cfg.client_cores.len() && queues > 1 {
        return Err(LaunchError::Usage(
            "with several cores, give the server and the client the same number".into(),
        ));
    }
    let (sq, cq) = wire::pair(WireConfig {
        queues,
        ring_size: 16384,
        ..WireConfig::default()
    });
    match &cfg.faults {
        None => run_pair_on(queue_source(sq), queue_source(cq), server, client, cfg),
        Some(f) => {
            let (sq, cq) = (faulty(sq, f, 1)?, faulty(cq, f, 2)?);
            run_pair_on(queue_source(sq), queue_source(cq), server, client, cfg)
        }
    }
}

/// `queues` with `faults` on what they receive; each queue its own seed.
fn faulty(
    queues: Vec<WireQueue>,
    faults: &FaultConfig,
    side: u64,
) -> Result<Vec<FaultyQueue<WireQueue>>, LaunchError> {
    queues
        .into_iter()
        .enumerate()
        .map(|(i, q)| {
            let f = FaultConfig {
                seed: faults.seed ^ (side << 32) ^ i as u64,
                ..faults.clone()
            };
            FaultyQueue::new(q, f).map_err(|e| LaunchError::Usage(format!("faults: {e}")))
        })
        .collect()
}

/// Runs `server` and `client`, each core's NIC queue opened by `server_nic(core)` or
/// `client_nic(core)` on the core's own thread.
pub(crate) fn run_pair_on<Q, NS, NC, S, C>(
    server_nic: NS,
    client_nic: NC,
    server: &S,
    client: &C,
    cfg: &PairConfig,
) -> Result<PairOutcome<S::Output, C::Output>, LaunchError>
where
    Q: NicQueue,
    NS: Fn(usize) -> Result<Q, String> + Sync,
    NC: Fn(usize) -> Result<Q, String> + Sync,
    S: App,
    C: App,
{
    let several = cfg.client_cores.len() > 1;
    let idle = if cfg.busy_poll {
        IdlePolicy::BusyPoll
    } else {
        IdlePolicy::default()
    };
    let server_rt = Runtime::new(&cfg.server_cores)
        .idle(idle)
        .handle_signals(false);
    let client_rt = Runtime::new(&cfg.client_cores).idle(idle);
    let server_stop = server_rt.stop_flag();
    let (server_out, client_out) = (Outputs::new(), Outputs::new());
    let collect = |r: Vec<CoreReport>| r.into_iter().map(|r| (r.to_string(), Some(r))).collect();
    let (server_run, client_run) = std::thread::scope(|s| {
        let server_run = s.spawn(|| {
            server_rt.run(
                &server_nic,
                |core| stack_config(1, SERVER_IP, core, cfg.buffer),
                |ctx, ch| server_out.put(ctx.index, server.run(ctx, ch)),
            )
        });
        let client_run = client_rt.run(
            &client_nic,
            |core| {
                let mut c = stack_config(2, CLIENT_IP, core, cfg.buffer);
                if several {
                    c.seed ^= 0x1000 * core as u64;
                }
                c
            },
            |ctx, ch| client_out.put(ctx.index, client.run(ctx, ch)),
        );
        server_stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let server_run = server_run.join().unwrap_or(Err(EngineError::Panicked(0)));
        (server_run, client_run)
    });
    Ok(PairOutcome {
        client: client_out.collect(collect(client_run?)),
        server: server_out.collect(collect(server_run?)),
    })
}
