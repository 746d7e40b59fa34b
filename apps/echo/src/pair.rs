//! Server and load generator in one process, on separate cores, joined by the in-memory
//! wire NIC: the whole system without root or a network.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Mutex;

use megatcp_engine::{CoreReport, IdlePolicy, Runtime};
use megatcp_nic::wire::{self, WireConfig, WireQueue};
use megatcp_stack::{LocalAddr, MacAddr, StackConfig};

use crate::{LoadOpts, LoadReport, run_load, serve};

/// What to run.
#[derive(Debug, Clone)]
pub struct PairOpts {
    /// The load (its `target` is ignored: the pair's server is used).
    pub load: LoadOpts,
    /// CPUs of the server, one stack each.
    pub server_cores: Vec<usize>,
    /// CPUs of the load generator.
    pub client_cores: Vec<usize>,
    /// TCP buffer per connection and direction.
    pub buffer: usize,
    /// Busy-poll when idle.
    pub busy_poll: bool,
}

/// What a pair run produced.
#[derive(Debug)]
pub struct PairReport {
    /// The load generator's merged report.
    pub load: LoadReport,
    /// Per-core reports of the server.
    pub server: Vec<CoreReport>,
    /// Per-core reports of the client.
    pub client: Vec<CoreReport>,
}

const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
const PAIR_PORT: u16 = 7;

fn stack_config(mac_last: u8, ip: Ipv4Addr, core: usize, buffer: usize) -> StackConfig {
    let mut c = StackConfig::new(
        MacAddr([2, 0x6d, 0x74, 0, 0, mac_last]),
        LocalAddr::new(ip, 24),
    );
    c.seed = (u64::from(mac_last) << 32) ^ core as u64 ^ std::process::id() as u64;
    c.tcp.rx_buffer = buffer;
    c.tcp.tx_buffer = buffer;
    c.default_backlog = 65536;
    c.tx_queue_limit = 16384;
    // A load generator opens thousands of connections at once, before its first ARP answer.
    c.arp.max_queued_per_neighbour = 16384;
    c
}

/// Hands each core its queue, once.
fn queue_source(queues: Vec<WireQueue>) -> impl Fn(usize) -> Result<WireQueue, String> + Sync {
    let slots = Mutex::new(queues.into_iter().map(Some).collect::<Vec<_>>());
    move |i| {
        let mut s = slots
            .lock()
            .map_err(|_| "queue table poisoned".to_string())?;
        s.get_mut(i)
            .and_then(Option::take)
            .ok_or_else(|| format!("no wire queue for core {i}"))
    }
}

/// Runs a pair; errors are described in the string.
pub fn run_pair(p: PairOpts) -> Result<PairReport, String> {
    let PairOpts {
        load,
        server_cores,
        client_cores,
        buffer,
        busy_poll,
    } = p;
    let queues = server_cores.len().max(client_cores.len()) as u16;
    if server_cores.len() != client_cores.len() && queues > 1 {
        return Err("with several cores, give the server and the client the same number".into());
    }
    let (sq, cq) = wire::pair(WireConfig {
        queues,
        ring_size: 16384,
        ..WireConfig::default()
    });
    let idle = if busy_poll {
        IdlePolicy::BusyPoll
    } else {
        IdlePolicy::default()
    };
    let server_rt = Runtime::new(&server_cores).idle(idle).handle_signals(false);
    let client_rt = Runtime::new(&client_cores).idle(idle);
    let server_stop = server_rt.stop_flag();
    let ncores = client_cores.len();
    let opts = move |core: usize| LoadOpts {
        target: SocketAddrV4::new(SERVER_IP, PAIR_PORT),
        ..load.share(ncores, core)
    };
    std::thread::scope(|s| {
        let server = s.spawn(|| {
            server_rt.run(
                queue_source(sq),
                |core| stack_config(1, SERVER_IP, core, buffer),
                |_, ch| {
                    if let Err(e) = serve(ch, PAIR_PORT, 65536) {
                        eprintln!("server: {e}");
                    }
                },
            )
        });
        let reports = Mutex::new(Vec::new());
        let client = client_rt.run(
            queue_source(cq),
            |core| {
                let mut c = stack_config(2, CLIENT_IP, core, buffer);
                if queues > 1 {
                    c.seed ^= 0x1000 * core as u64;
                }
                c
            },
            |ctx, ch| {
                let r = run_load(ch, opts(ctx.index));
                if let Ok(mut v) = reports.lock() {
                    v.push(r);
                }
            },
        );
        server_stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let server = server
            .join()
            .map_err(|_| "server thread panicked".to_string())?;
        let client = client.map_err(|e| e.to_string())?;
        let server = server.map_err(|e| e.to_string())?;
        let reports = reports
            .into_inner()
            .map_err(|_| "report lock poisoned".to_string())?;
        let load = LoadReport::merge(&reports).ok_or_else(|| "no load report".to_string())?;
        Ok(PairReport {
            load,
            server,
            client,
        })
    })
}
