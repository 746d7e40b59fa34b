//! A safe io_uring ring for the io_uring backend: the one module of this crate with
//! `unsafe` code.
//!
//! io_uring is the Linux kernel's own batched completion channel: one shared submission
//! queue in, one completion queue out, many operations per system call. [`Ring`] sets it up
//! the way a kernel-path server should: `SINGLE_ISSUER` + `DEFER_TASKRUN` (completions are
//! produced only when the owning thread asks, no inter-processor interrupts), a sparse
//! table of **fixed (direct) descriptors** for connections (accepted straight into it, never
//! in the process's fd table: the kernel's lightweight sockets), multishot accept and
//! multishot receive into a **provided buffer ring**.
//!
//! # Safety
//!
//! Every `unsafe fn` has a `# Safety` section and every `unsafe` block a `// SAFETY:`
//! comment. The invariant they rest on: memory the kernel reads or writes (send buffers,
//! socket addresses, option values, the buffer ring) is owned by the [`Ring`] from
//! submission until the operation's last completion (or leaked, never freed, if the ring
//! is dropped while the kernel may still use it), so the operations offered are safe.
//!
//! # Driving it
//!
//! One `Ring` per thread (it is not `Send`: `SINGLE_ISSUER`). [`Ring::push`] queues an
//! [`Op`] with a `token` of the caller's choice and returns its [`OpId`] (for
//! [`Op::Cancel`]); [`Ring::enter`] submits everything queued and waits (at most the given
//! time) for completions; [`Ring::completion`] then hands each completion ([`Cqe`]) back
//! with its token. Multishot operations complete many times (`more` is true until the last
//! completion).

use core::net::{Ipv4Addr, SocketAddrV4};
use std::collections::VecDeque;
use std::marker::PhantomData;
use std::os::fd::RawFd;
use std::time::Duration;

use io_uring::{IoUring, cqueue, opcode, squeue, types};

/// Buffer group id of the provided buffer ring.
const BGID: u16 = 0;
/// Length of a `sockaddr_in`.
const SOCKADDR_IN_LEN: u32 = core::mem::size_of::<libc::sockaddr_in>() as u32;

/// A slot in the ring's table of fixed (direct) descriptors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileSlot(pub u32);

/// Identifies one queued operation, for [`Op::Cancel`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OpId {
    index: u32,
    generation: u32,
}

/// The value of a socket option set with [`Op::SetOpt`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptValue {
    /// An `int` option.
    Int(i32),
    /// `SO_LINGER`: on, seconds.
    Linger(bool, i32),
}

/// An operation.
#[derive(Debug)]
pub enum Op {
    /// Accept connections on a listening socket (a regular descriptor) into fixed slots, until
    /// cancelled or failed (multishot). Each completion's result is the new slot.
    AcceptMulti {
        /// The listener.
        listener: RawFd,
    },
    /// Receive on a connection into the provided buffers until end of stream, failure, or
    /// cancellation (multishot). Each completion carries the bytes.
    RecvMulti {
        /// The connection.
        file: FileSlot,
    },
    /// Send `data[offset..]`; the completion hands the buffer back with the count sent.
    Send {
        /// The connection.
        file: FileSlot,
        /// The bytes.
        data: Vec<u8>,
        /// Where to start.
        offset: usize,
    },
    /// `shutdown(SHUT_WR)`.
    ShutdownWrite {
        /// The connection.
        file: FileSlot,
    },
    /// Close a fixed descriptor (frees the slot).
    Close {
        /// The connection.
        file: FileSlot,
    },
    /// A new TCP/IPv4 socket in a fixed slot (the result).
    Socket,
    /// Connect a socket made by [`Op::Socket`].
    Connect {
        /// The socket.
        file: FileSlot,
        /// The peer.
        addr: SocketAddrV4,
    },
    /// The peer's address (`getsockopt(SO_PEERNAME)`, done by the ring: direct descriptors
    /// have no `getpeername`).
    PeerName {
        /// The connection.
        file: FileSlot,
    },
    /// `setsockopt`.
    SetOpt {
        /// The socket.
        file: FileSlot,
        /// `SOL_SOCKET`, `IPPROTO_TCP`, ...
        level: i32,
        /// The option.
        name: i32,
        /// Its value.
        value: OptValue,
    },
    /// Cancel one operation.
    Cancel(OpId),
    /// Cancel every operation on a fixed descriptor.
    CancelFile(FileSlot),
}

/// What came back with a completion.
#[derive(Debug)]
pub enum Payload {
    /// Nothing.
    None,
    /// Bytes received (a receive completion with a positive result).
    Data(Vec<u8>),
    /// The buffer of a send, and the offset it was sent from (the result is the count sent).
    Sent(Vec<u8>, usize),
    /// The peer address of [`Op::PeerName`] (`None` if not IPv4).
    Peer(Option<SocketAddrV4>),
}

/// A completion.
#[derive(Debug)]
pub struct Cqe {
    /// The token given to [`Ring::push`].
    pub token: u64,
    /// The operation's result: non-negative on success, `-errno` on failure.
    pub result: i32,
    /// A multishot operation that will complete again.
    pub more: bool,
    /// Data or buffers that came back.
    pub payload: Payload,
}

/// Sizes of a [`Ring`].
#[derive(Debug, Clone, Copy)]
pub struct RingConfig {
    /// Submission queue entries (the completion queue is four times larger).
    pub entries: u32,
    /// Fixed descriptor slots (connections); capped by `RLIMIT_NOFILE`, which
    /// [`raise_nofile`](crate::raise_nofile) raises first.
    pub files: u32,
    /// Provided receive buffers (a power of two, at most 32768).
    pub buffers: u16,
    /// Size of each receive buffer.
    pub buffer_size: u32,
}

impl Default for RingConfig {
    fn default() -> Self {
        Self {
            entries: 2048,
            files: 65536,
            buffers: 2048,
            buffer_size: 4096,
        }
    }
}

/// Why a ring could not be set up or entered.
#[derive(Debug, thiserror::Error)]
pub enum RingError {
    /// `io_uring_setup` failed (e.g. io_uring disabled by `kernel.io_uring_disabled`).
    #[error("cannot create an io_uring: {0}")]
    Setup(std::io::Error),
    /// Registering the fixed descriptor table failed.
    #[error("cannot register {files} fixed descriptors: {source}")]
    Files {
        /// Slots asked for.
        files: u32,
        /// Why.
        source: std::io::Error,
    },
    /// Registering the provided buffer ring failed.
    #[error("cannot register the provided buffer ring: {0}")]
    Buffers(std::io::Error),
    /// A bad configuration.
    #[error("bad ring configuration: {0}")]
    Config(&'static str),
    /// `io_uring_enter` failed.
    #[error("io_uring_enter: {0}")]
    Enter(std::io::Error),
}

impl RingError {
    /// The operating system's error number behind the error (`EINVAL` for a bad
    /// configuration).
    pub fn errno(&self) -> megatcp_channel::Errno {
        match self {
            RingError::Setup(e) | RingError::Buffers(e) | RingError::Enter(e) => {
                megatcp_channel::Errno::of(e)
            }
            RingError::Files { source, .. } => megatcp_channel::Errno::of(source),
            RingError::Config(_) => megatcp_channel::Errno(libc::EINVAL),
        }
    }
}

/// Memory an in-flight operation lends the kernel (held, not read, until it completes).
#[allow(dead_code)]
enum Lent {
    None,
    Send(Vec<u8>, usize),
    Addr(Box<libc::sockaddr_in>),
    Peer(Box<PeerBuf>),
    Opt(Box<[u8; 8]>),
}

/// Space for `SO_PEERNAME`'s answer.
#[repr(C)]
struct PeerBuf {
    addr: libc::sockaddr_storage,
}

struct Inflight {
    token: u64,
    generation: u32,
    recv: bool,
    lent: Lent,
}

/// The provided buffer ring: entries shared with the kernel plus the buffers they point to.
struct BufRing {
    /// `entries * 16` bytes, page aligned (mmap'd).
    ring: *mut libc::c_void,
    ring_len: usize,
    entries: u16,
    /// The buffers, `entries * size` bytes.
    bufs: Vec<u8>,
    size: u32,
    tail: u16,
}

impl BufRing {
    fn new(entries: u16, size: u32) -> Result<Self, RingError> {
        if !entries.is_power_of_two() || entries > 32768 || size == 0 {
            return Err(RingError::Config(
                "buffers must be a power of two <= 32768 and buffer_size > 0",
            ));
        }
        let ring_len = usize::from(entries) * core::mem::size_of::<types::BufRingEntry>();
        // SAFETY: an anonymous private mapping; no existing memory is touched. The result is
        // checked against MAP_FAILED.
        let ring = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                ring_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if ring == libc::MAP_FAILED {
            return Err(RingError::Buffers(std::io::Error::last_os_error()));
        }
        let mut b = Self {
            ring,
            ring_len,
            entries,
            bufs: vec![0u8; usize::from(entries) * size as usize],
            size,
            tail: 0,
        };
        for bid in 0..entries {
            b.put(bid);
        }
        b.publish();
        Ok(b)
    }

    /// Queues buffer `bid` for the kernel (visible after [`BufRing::publish`]).
    fn put(&mut self, bid: u16) {
        let slot = usize::from(self.tail & (self.entries - 1));
        let base = self.ring.cast::<types::BufRingEntry>();
        let addr = self.bufs.as_ptr() as u64 + u64::from(bid) * u64::from(self.size);
        // SAFETY: `slot < entries`, so the entry lies inside the mapping of `entries`
        // entries; the kernel only reads entries between its head and our published tail,
        // and this slot is past the published tail.
        let e = unsafe { &mut *base.add(slot) };
        e.set_addr(addr);
        e.set_len(self.size);
        e.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Makes the buffers put so far visible to the kernel.
    fn publish(&self) {
        let base = self.ring.cast::<types::BufRingEntry>().cast_const();
        // SAFETY: the tail field lies in the first entry of our live mapping; `AtomicU16`
        // has the alignment of `u16`, and the kernel only reads it.
        unsafe {
            let tail = types::BufRingEntry::tail(base).cast_mut();
            core::sync::atomic::AtomicU16::from_ptr(tail)
                .store(self.tail, core::sync::atomic::Ordering::Release);
        }
    }

    fn buffer(&self, bid: u16, len: usize) -> Option<&[u8]> {
        let start = usize::from(bid) * self.size as usize;
        self.bufs.get(start..start + len.min(self.size as usize))
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: the mapping was made by `new` with this length and is unregistered from
        // the kernel (the ring's Drop runs first).
        unsafe {
            libc::munmap(self.ring, self.ring_len);
        }
    }
}

/// One thread's io_uring. See the module docs.
pub struct Ring {
    ring: IoUring,
    bufs: BufRing,
    inflight: Vec<Option<Inflight>>,
    free: Vec<u32>,
    generation: u32,
    pool: Vec<Vec<u8>>,
    raw: VecDeque<(u64, i32, u32)>,
    live: usize,
    files: u32,
    /// `SINGLE_ISSUER`: the ring must stay on the thread that made it.
    _not_send: PhantomData<*const ()>,
}

impl Ring {
    /// A ring with `config`'s sizes.
    pub fn new(config: &RingConfig) -> Result<Self, RingError> {
        let ring = IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .setup_cqsize(config.entries.saturating_mul(4))
            .build(config.entries)
            .map_err(RingError::Setup)?;
        let files = config.files.min(crate::raise_nofile());
        ring.submitter()
            .register_files_sparse(files)
            .map_err(|source| RingError::Files { files, source })?;
        let bufs = BufRing::new(config.buffers, config.buffer_size)?;
        // SAFETY: the ring memory is a live page-aligned mapping of `entries` entries owned by
        // `bufs`, which the `Ring` keeps until Drop unregisters it; the buffers it points to
        // live as long.
        unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(bufs.ring as u64, bufs.entries, BGID, 0)
                .map_err(RingError::Buffers)?;
        }
        Ok(Self {
            ring,
            bufs,
            inflight: Vec::new(),
            free: Vec::new(),
            generation: 0,
            pool: Vec::new(),
            raw: VecDeque::new(),
            live: 0,
            files,
            _not_send: PhantomData,
        })
    }

    /// Fixed descriptor slots available.
    pub fn files(&self) -> u32 {
        self.files
    }

    /// Operations submitted and not yet finished.
    pub fn in_flight(&self) -> usize {
        self.live
    }

    /// Gives a drained buffer back for reuse by receive completions.
    pub fn recycle(&mut self, mut b: Vec<u8>) {
        if self.pool.len() < 1024 && b.capacity() >= 64 {
            b.clear();
            self.pool.push(b);
        }
    }

    /// Queues `op`; its completions carry `token`.
    pub fn push(&mut self, token: u64, op: Op) -> Result<OpId, RingError> {
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.inflight.push(None);
                (self.inflight.len() - 1) as u32
            }
        };
        self.generation = self.generation.wrapping_add(1);
        let id = OpId {
            index,
            generation: self.generation,
        };
        let mut inflight = Inflight {
            token,
            generation: id.generation,
            recv: false,
            lent: Lent::None,
        };
        let entry = self.build(op, &mut inflight).user_data(u64::from(index));
        if let Some(slot) = self.inflight.get_mut(index as usize) {
            *slot = Some(inflight);
        }
        self.live += 1;
        loop {
            // SAFETY: every pointer in `entry` points into memory owned by the inflight
            // record just stored (boxed or a Vec's heap buffer, which do not move), or by
            // `self.bufs`; the record is removed only when the operation's last completion
            // arrives (or leaked if the ring is dropped before).
            let pushed = unsafe { self.ring.submission().push(&entry) };
            if pushed.is_ok() {
                return Ok(id);
            }
            self.ring.submit().map_err(RingError::Enter)?;
        }
    }

    fn build(&mut self, op: Op, inflight: &mut Inflight) -> squeue::Entry {
        match op {
            Op::AcceptMulti { listener } => opcode::AcceptMulti::new(types::Fd(listener))
                .allocate_file_index(true)
                .build(),
            Op::RecvMulti { file } => {
                inflight.recv = true;
                opcode::RecvMulti::new(types::Fixed(file.0), BGID).build()
            }
            Op::Send { file, data, offset } => {
                let rest = data.get(offset..).unwrap_or_default();
                let e = opcode::Send::new(types::Fixed(file.0), rest.as_ptr(), rest.len() as u32)
                    .flags(libc::MSG_NOSIGNAL)
                    .build();
                inflight.lent = Lent::Send(data, offset);
                e
            }
            Op::ShutdownWrite { file } => {
                opcode::Shutdown::new(types::Fixed(file.0), libc::SHUT_WR).build()
            }
            Op::Close { file } => opcode::Close::new(types::Fixed(file.0)).build(),
            Op::Socket => opcode::Socket::new(libc::AF_INET, libc::SOCK_STREAM, 0)
                .file_index(Some(types::DestinationSlot::auto_target()))
                .build(),
            Op::Connect { file, addr } => {
                let sa = Box::new(libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: addr.port().to_be(),
                    sin_addr: libc::in_addr {
                        s_addr: u32::from(*addr.ip()).to_be(),
                    },
                    sin_zero: [0; 8],
                });
                let p = (&raw const *sa).cast::<libc::sockaddr>();
                inflight.lent = Lent::Addr(sa);
                opcode::Connect::new(types::Fixed(file.0), p, SOCKADDR_IN_LEN).build()
            }
            Op::PeerName { file } => {
                let mut buf = Box::new(PeerBuf {
                    // SAFETY: sockaddr_storage is plain old data; all zeroes is a valid value.
                    addr: unsafe { core::mem::zeroed() },
                });
                let p = (&raw mut buf.addr).cast::<libc::c_void>();
                let len = core::mem::size_of::<libc::sockaddr_in>() as u32;
                let e = opcode::SetSockOpt::new(
                    types::Fixed(file.0),
                    libc::SOL_SOCKET as u32,
                    libc::SO_PEERNAME as u32,
                    p,
                    len,
                )
                .build();
                inflight.lent = Lent::Peer(buf);
                as_getsockopt(e)
            }
            Op::SetOpt {
                file,
                level,
                name,
                value,
            } => {
                let mut v = Box::new([0u8; 8]);
                let len = match value {
                    OptValue::Int(i) => {
                        v[..4].copy_from_slice(&i.to_ne_bytes());
                        4
                    }
                    OptValue::Linger(on, secs) => {
                        v[..4].copy_from_slice(&i32::from(on).to_ne_bytes());
                        v[4..].copy_from_slice(&secs.to_ne_bytes());
                        8
                    }
                };
                let p = v.as_ptr().cast::<libc::c_void>();
                inflight.lent = Lent::Opt(v);
                opcode::SetSockOpt::new(types::Fixed(file.0), level as u32, name as u32, p, len)
                    .build()
            }
            Op::Cancel(id) => {
                // Matches the operation's user data; a finished operation's slot may have been
                // reused, so the generation is checked by the caller's token instead.
                opcode::AsyncCancel2::new(types::CancelBuilder::user_data(u64::from(id.index)))
                    .build()
            }
            Op::CancelFile(file) => {
                opcode::AsyncCancel2::new(types::CancelBuilder::fd(types::Fixed(file.0)).all())
                    .build()
            }
        }
    }

    /// Whether `id` is still in flight (so that cancelling it targets it, not a successor).
    pub fn is_live(&self, id: OpId) -> bool {
        matches!(
            self.inflight.get(id.index as usize),
            Some(Some(i)) if i.generation == id.generation
        )
    }

    /// Submits what is queued and waits up to `timeout` (`None`: until one completion) for
    /// completions, which [`Ring::completion`] then hands out.
    pub fn enter(&mut self, timeout: Option<Duration>) -> Result<(), RingError> {
        let result = match timeout {
            None => self.ring.submitter().submit_and_wait(1),
            Some(t) => {
                let ts = types::Timespec::new()
                    .sec(t.as_secs())
                    .nsec(t.subsec_nanos());
                let args = types::SubmitArgs::new().timespec(&ts);
                self.ring.submitter().submit_with_args(1, &args)
            }
        };
        match result {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY | libc::EAGAIN)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(RingError::Enter(e)),
        }
    }

    /// The next completion, if any (they come in after [`Ring::enter`]).
    pub fn completion(&mut self) -> Option<Cqe> {
        if self.raw.is_empty() {
            self.raw.extend(
                self.ring
                    .completion()
                    .map(|c| (c.user_data(), c.result(), c.flags())),
            );
        }
        while let Some((ud, result, flags)) = self.raw.pop_front() {
            let index = ud as usize;
            let more = cqueue::more(flags);
            let Some(Some(inflight)) = self.inflight.get(index) else {
                continue;
            };
            let (token, recv) = (inflight.token, inflight.recv);
            let mut payload = Payload::None;
            if recv && let Some(bid) = cqueue::buffer_select(flags) {
                if result > 0 {
                    let mut v = self.pool.pop().unwrap_or_default();
                    if let Some(b) = self.bufs.buffer(bid, result as usize) {
                        v.extend_from_slice(b);
                    }
                    payload = Payload::Data(v);
                }
                self.bufs.put(bid);
                self.bufs.publish();
            }
            if !more {
                let done = self.inflight.get_mut(index).and_then(Option::take);
                self.free.push(index as u32);
                self.live = self.live.saturating_sub(1);
                if let Some(done) = done {
                    payload = match done.lent {
                        Lent::Send(v, off) => Payload::Sent(v, off),
                        Lent::Peer(p) if result >= 0 => Payload::Peer(peer_of(&p.addr)),
                        _ => payload,
                    };
                }
            }
            return Some(Cqe {
                token,
                result,
                more,
                payload,
            });
        }
        None
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // Cancel everything and wait (bounded) for the kernel to let go of our memory.
        let any = opcode::AsyncCancel2::new(types::CancelBuilder::any()).build();
        // SAFETY: a cancellation lends no memory.
        let _ = unsafe { self.ring.submission().push(&any.user_data(u64::MAX)) };
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while self.live > 0 && std::time::Instant::now() < deadline {
            if self.enter(Some(Duration::from_millis(10))).is_err() {
                break;
            }
            while self.completion().is_some() {}
        }
        if self.live > 0 {
            // The kernel may still use lent memory: leak it rather than free it under the
            // kernel's feet.
            for v in self.inflight.drain(..).flatten() {
                core::mem::forget(v.lent);
            }
            core::mem::forget(core::mem::take(&mut self.bufs.bufs));
            return;
        }
        let _ = self.ring.submitter().unregister_buf_ring(BGID);
    }
}

/// Turns a `SetSockOpt` entry into the matching `getsockopt` (same fields, other command).
fn as_getsockopt(e: squeue::Entry) -> squeue::Entry {
    // SAFETY: `Entry` is `repr(C)` around the 64-byte `io_uring_sqe`, plain old data; bytes
    // 8..12 are `cmd_op` of an `IORING_OP_URING_CMD` entry.
    unsafe {
        let mut raw: [u8; 64] = core::mem::transmute(e);
        raw[8..12].copy_from_slice(&2u32.to_ne_bytes()); // SOCKET_URING_OP_GETSOCKOPT
        core::mem::transmute::<[u8; 64], squeue::Entry>(raw)
    }
}

fn peer_of(ss: &libc::sockaddr_storage) -> Option<SocketAddrV4> {
    if i32::from(ss.ss_family) != libc::AF_INET {
        return None;
    }
    // SAFETY: the family says the storage holds a sockaddr_in, which it is large and aligned
    // enough for.
    let sin = unsafe { &*(core::ptr::from_ref(ss).cast::<libc::sockaddr_in>()) };
    Some(SocketAddrV4::new(
        Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)),
        u16::from_be(sin.sin_port),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;

    fn wait_for(ring: &mut Ring, mut want: impl FnMut(&Cqe) -> bool) -> Cqe {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            assert!(std::time::Instant::now() < deadline, "no completion");
            ring.enter(Some(Duration::from_millis(50))).expect("enter");
            while let Some(c) = ring.completion() {
                if want(&c) {
                    return c;
                }
            }
        }
    }

    #[test]
    #[allow(clippy::unwrap_used)]
    fn accept_peer_recv_send_over_loopback() {
        let mut ring = Ring::new(&RingConfig {
            files: 64,
            buffers: 16,
            ..RingConfig::default()
        })
        .unwrap();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        ring.push(
            1,
            Op::AcceptMulti {
                listener: l.as_raw_fd(),
            },
        )
        .unwrap();
        let mut client = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let local = client.local_addr().unwrap();
        let c = wait_for(&mut ring, |c| c.token == 1);
        assert!(c.result >= 0 && c.more, "accept: {c:?}");
        let slot = FileSlot(c.result as u32);
        ring.push(2, Op::PeerName { file: slot }).unwrap();
        let c = wait_for(&mut ring, |c| c.token == 2);
        match c.payload {
            Payload::Peer(Some(p)) => assert_eq!(std::net::SocketAddr::V4(p), local),
            other => panic!("peer: {other:?} result {}", c.result),
        }
        ring.push(3, Op::RecvMulti { file: slot }).unwrap();
        client.write_all(b"hello").unwrap();
        let c = wait_for(&mut ring, |c| c.token == 3);
        match c.payload {
            Payload::Data(d) => assert_eq!(d, b"hello"),
            other => panic!("recv: {other:?}"),
        }
        ring.push(
            4,
            Op::Send {
                file: slot,
                data: b"xxworld".to_vec(),
                offset: 2,
            },
        )
        .unwrap();
        let c = wait_for(&mut ring, |c| c.token == 4);
        assert_eq!(c.result, 5);
        let mut got = [0u8; 5];
        client.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"world");
        drop(client);
        let c = wait_for(&mut ring, |c| c.token == 3);
        assert_eq!(c.result, 0, "end of stream");
        assert!(!c.more);
        ring.push(5, Op::Close { file: slot }).unwrap();
        let c = wait_for(&mut ring, |c| c.token == 5);
        assert_eq!(c.result, 0);
    }
}
