//! Raw sockets, for tests of how servers treat slow and idle clients.

use std::time::Duration;

use tokio::io::AsyncReadExt as _;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Reads until the server closes the connection; returns what it sent and
/// how long after `since` it closed. Fails when it is still open `within`
/// after `since`.
pub async fn read_until_closed(
    stream: &mut TcpStream,
    since: Instant,
    within: Duration,
) -> (String, Duration) {
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let read = tokio::time::timeout_at(since + within, stream.read(&mut buffer))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "the connection is still open {:?} after its last byte; it sent {:?}",
                    since.elapsed(),
                    String::from_utf8_lossy(&answer)
                )
            });
        match read {
            Ok(0) | Err(_) => {
                return (
                    String::from_utf8_lossy(&answer).into_owned(),
                    since.elapsed(),
                )
            }
            Ok(n) => answer.extend_from_slice(&buffer[..n]),
        }
    }
}
