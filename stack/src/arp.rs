//! The neighbour cache (ARP) and the packets waiting for a neighbour to resolve.
//!
//! Pure state: the stack parses and emits ARP frames; this module decides what is known,
//! what waits, and when to ask again.

use core::net::Ipv4Addr;

use hashbrown::HashMap;

use crate::config::ArpConfig;
use crate::{Instant, MacAddr};

#[derive(Debug, Clone, Copy)]
struct Entry {
    mac: MacAddr,
    expires_at: Instant,
}

#[derive(Debug)]
struct Resolving {
    frames: Vec<Vec<u8>>,
    requests_sent: u8,
    next_request: Instant,
}

/// Outcome of [`Neighbours::enqueue`].
#[derive(Debug)]
pub(crate) enum Enqueued {
    /// Queued; send an ARP request now when `ask` is true.
    Queued { ask: bool },
    /// Too many packets already wait (per neighbour or in all): the frame is handed back.
    Full(Vec<u8>),
}

/// Learned neighbours plus neighbours being resolved.
#[derive(Debug)]
pub(crate) struct Neighbours {
    cfg: ArpConfig,
    cache: HashMap<Ipv4Addr, Entry>,
    resolving: HashMap<Ipv4Addr, Resolving>,
}

impl Neighbours {
    pub(crate) fn new(cfg: ArpConfig) -> Self {
        Self {
            cfg,
            cache: HashMap::new(),
            resolving: HashMap::new(),
        }
    }

    pub(crate) fn lookup(&self, ip: Ipv4Addr, now: Instant) -> Option<MacAddr> {
        self.cache
            .get(&ip)
            .filter(|e| e.expires_at > now)
            .map(|e| e.mac)
    }

    /// Whether `ip` is a known (cached, possibly expired) or resolving neighbour.
    pub(crate) fn knows(&self, ip: Ipv4Addr) -> bool {
        self.cache.contains_key(&ip) || self.resolving.contains_key(&ip)
    }

    /// Records `ip -> mac`. Returns the frames that were waiting for it, if any (their
    /// Ethernet header is still to be written).
    pub(crate) fn learn(&mut self, ip: Ipv4Addr, mac: MacAddr, now: Instant) -> Vec<Vec<u8>> {
        if self.cache.len() >= self.cfg.cache_size && !self.cache.contains_key(&ip) {
            self.evict_one(now);
        }
        if self.cfg.cache_size > 0 {
            self.cache.insert(
                ip,
                Entry {
                    mac,
                    expires_at: now + self.cfg.entry_ttl,
                },
            );
        }
        self.resolving
            .remove(&ip)
            .map(|r| r.frames)
            .unwrap_or_default()
    }

    fn evict_one(&mut self, now: Instant) {
        self.cache.retain(|_, e| e.expires_at > now);
        if self.cache.len() >= self.cfg.cache_size {
            let victim = self
                .cache
                .iter()
                .min_by_key(|(_, e)| e.expires_at)
                .map(|(ip, _)| *ip);
            if let Some(ip) = victim {
                self.cache.remove(&ip);
            }
        }
    }

    /// Queues a frame for `ip`, which is not in the cache.
    pub(crate) fn enqueue(&mut self, ip: Ipv4Addr, frame: Vec<u8>, now: Instant) -> Enqueued {
        if let Some(r) = self.resolving.get_mut(&ip) {
            if r.frames.len() >= self.cfg.max_queued_per_neighbour {
                return Enqueued::Full(frame);
            }
            r.frames.push(frame);
            return Enqueued::Queued { ask: false };
        }
        if self.resolving.len() >= self.cfg.max_resolving || self.cfg.max_queued_per_neighbour == 0
        {
            return Enqueued::Full(frame);
        }
        self.resolving.insert(
            ip,
            Resolving {
                frames: vec![frame],
                requests_sent: 1,
                next_request: now + self.cfg.retry_interval,
            },
        );
        Enqueued::Queued { ask: true }
    }

    /// Retries due requests (`ask(ip)`) and gives up on neighbours that never answered
    /// (`drop_frame(frame)` for each of their frames).
    pub(crate) fn poll(
        &mut self,
        now: Instant,
        ask: &mut dyn FnMut(Ipv4Addr),
        drop_frame: &mut dyn FnMut(Vec<u8>),
    ) {
        let max = self.cfg.max_requests;
        let interval = self.cfg.retry_interval;
        let mut gave_up = Vec::new();
        for (ip, r) in self.resolving.iter_mut() {
            if r.next_request > now {
                continue;
            }
            if r.requests_sent >= max {
                gave_up.push(*ip);
            } else {
                r.requests_sent += 1;
                r.next_request = now + interval;
                ask(*ip);
            }
        }
        for ip in gave_up {
            if let Some(r) = self.resolving.remove(&ip) {
                r.frames.into_iter().for_each(&mut *drop_frame);
            }
        }
    }

    /// When `poll` has work next.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.resolving.values().map(|r| r.next_request).min()
    }

    pub(crate) fn cached(&self) -> usize {
        self.cache.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Duration;

    fn ip(n: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 0, 0, n)
    }
    const MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 9]);

    #[test]
    fn queue_then_learn_releases_frames() {
        let mut n = Neighbours::new(ArpConfig::default());
        let t = Instant::from_secs(1);
        assert!(matches!(
            n.enqueue(ip(2), vec![1], t),
            Enqueued::Queued { ask: true }
        ));
        assert!(matches!(
            n.enqueue(ip(2), vec![2], t),
            Enqueued::Queued { ask: false }
        ));
        assert_eq!(n.lookup(ip(2), t), None);
        let frames = n.learn(ip(2), MAC, t);
        assert_eq!(frames, vec![vec![1], vec![2]]);
        assert_eq!(n.lookup(ip(2), t), Some(MAC));
        // Expiry.
        assert_eq!(n.lookup(ip(2), t + Duration::from_secs(61)), None);
    }

    #[test]
    fn retries_then_gives_up() {
        let cfg = ArpConfig {
            max_requests: 3,
            ..ArpConfig::default()
        };
        let mut n = Neighbours::new(cfg);
        let mut t = Instant::from_secs(0);
        let _ = n.enqueue(ip(3), vec![0; 10], t);
        let (mut asked, mut dropped) = (0, 0);
        for _ in 0..5 {
            t += Duration::from_secs(1);
            n.poll(t, &mut |_| asked += 1, &mut |_| dropped += 1);
        }
        assert_eq!(
            asked, 2,
            "first request is sent by the caller, then two retries"
        );
        assert_eq!(dropped, 1);
        assert_eq!(n.next_deadline(), None);
    }

    #[test]
    fn bounded_queue_and_cache() {
        let cfg = ArpConfig {
            max_queued_per_neighbour: 2,
            cache_size: 2,
            ..ArpConfig::default()
        };
        let mut n = Neighbours::new(cfg);
        let t = Instant::from_secs(0);
        let _ = n.enqueue(ip(4), vec![], t);
        let _ = n.enqueue(ip(4), vec![], t);
        assert!(matches!(n.enqueue(ip(4), vec![7], t), Enqueued::Full(f) if f == vec![7]));
        for i in 10..20 {
            n.learn(ip(i), MAC, t);
        }
        assert_eq!(n.cached(), 2);
    }
}
