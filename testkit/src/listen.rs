//! Loopback listeners for the peers, with an accept backlog as deep as
//! spindle's own.

use std::net::{Ipv4Addr, SocketAddr};
use tokio::net::{TcpListener, TcpSocket};

/// Pending connections the kernel queues before `accept` (capped by
/// `net.core.somaxconn`). `TcpListener::bind` queues 128: a burst of 1,000
/// clients overflows that, and the dropped ones wait for a SYN retry (1 s,
/// then 3 s), which the benchmark then reported as the relay's and
/// spindle's p99.
const BACKLOG: u32 = 8192;

/// A listener on a free loopback port.
pub fn loopback() -> std::io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
    socket.listen(BACKLOG)
}
