//! Addresses: megatcp speaks IPv4.

use std::io;
use std::net::{SocketAddr, SocketAddrV4, ToSocketAddrs};

use crate::error::AddrError;

/// The first IPv4 address `addr` stands for. A host name is resolved by the system's
/// resolver (blocking): give addresses on the data path.
pub(crate) fn resolve_v4(addr: impl ToSocketAddrs) -> io::Result<SocketAddrV4> {
    let mut v6 = None;
    for a in addr.to_socket_addrs()? {
        match a {
            SocketAddr::V4(a) => return Ok(a),
            SocketAddr::V6(_) => v6 = v6.or(Some(a)),
        }
    }
    Err(match v6 {
        Some(a) => io::Error::new(io::ErrorKind::Unsupported, AddrError::Ipv6(a)),
        None => io::Error::new(io::ErrorKind::InvalidInput, AddrError::NoAddress),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_is_taken_and_ipv6_refused_with_a_reason() {
        assert_eq!(
            resolve_v4("10.1.2.3:80").unwrap(),
            "10.1.2.3:80".parse().unwrap()
        );
        assert_eq!(
            resolve_v4(("0.0.0.0", 7)).unwrap(),
            "0.0.0.0:7".parse().unwrap()
        );
        let e = resolve_v4("[::1]:80").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::Unsupported);
        assert!(e.to_string().contains("IPv6"), "{e}");
    }
}
