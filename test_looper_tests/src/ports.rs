//! Free loopback ports for test services.

use std::net::TcpListener;

/// A port on 127.0.0.1 that was free a moment ago.
///
/// The OS hands out ephemeral ports in sequence, so a port just released is not reused soon;
/// services that fail to bind are restarted by their harness with a fresh port.
pub fn free_loopback_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("cannot bind an ephemeral loopback port")
}

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
pub fn is_listening(port: u16) -> bool {
    is_listening_on("127.0.0.1", port)
}

/// Whether something accepts TCP connections on `host`:`port`.
pub fn is_listening_on(host: &str, port: u16) -> bool {
    std::net::TcpStream::connect((host, port)).is_ok()
}
