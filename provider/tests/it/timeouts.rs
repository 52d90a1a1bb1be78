//! Slow and idle senders are cut off: a connection that sends half a request
//! line, half a body or nothing, or sits idle after an answer, is closed
//! within the provider's timeouts.

use std::time::Duration;

use slipway_provider::http::Timeouts;
use slipway_provider::{Config, Secret};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::support::TestProvider as Provider;

const TIMEOUT: Duration = Duration::from_millis(500);
/// How late a close may come: scheduling on two busy cores.
const SLACK: Duration = Duration::from_millis(1500);

/// A provider with short timeouts; the API is never asked (nothing gets
/// far enough to be a hook).
async fn provider(data_dir: &std::path::Path) -> Provider {
    let mut config = Config::new("http://127.0.0.1:9", "provider-token");
    config.data_dir = data_dir.to_owned();
    config.hooks.generic_token = Some(Secret::new("generic-token"));
    config.timeouts = Timeouts {
        header: TIMEOUT,
        body: TIMEOUT,
    };
    Provider::start(config).await
}

/// Reads until the server closes the connection (see the test kit's
/// `read_until_closed`), within the timeout and some slack.
pub(crate) async fn read_until_closed(
    stream: &mut TcpStream,
    since: Instant,
) -> (String, Duration) {
    slipway_testkit::net::read_until_closed(stream, since, TIMEOUT + SLACK).await
}

/// Thirty connections, ten each mid request line, mid body and before the
/// first byte, are all closed within the timeouts; the ones mid body get
/// 408 first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_senders_are_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let provider = provider(dir.path()).await;
    let body_head = format!(
        "POST /hooks/generic HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer generic-token\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"application\":",
        provider.addr
    );
    let mut sockets = Vec::new();
    for i in 0..30 {
        let mut stream = TcpStream::connect(provider.addr).await.unwrap();
        let sent = match i % 3 {
            0 => "POST /hooks/gene".to_owned(),
            1 => body_head.clone(),
            _ => String::new(),
        };
        stream.write_all(sent.as_bytes()).await.unwrap();
        sockets.push((i % 3, stream, Instant::now()));
    }
    for (kind, mut stream, since) in sockets {
        let (answer, after) = read_until_closed(&mut stream, since).await;
        assert!(
            after >= TIMEOUT.mul_f32(0.8),
            "closed after {after:?}, before the timeout ({kind})"
        );
        if kind == 1 {
            assert!(answer.starts_with("HTTP/1.1 408"), "half a body: {answer}");
            assert!(answer.contains("\"too_slow\""), "{answer}");
        }
    }
    let healthz = reqwest::get(provider.url("/healthz")).await.unwrap();
    assert_eq!(healthz.status(), 200, "the provider itself is fine");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let provider = provider(dir.path()).await;
    let mut stream = TcpStream::connect(provider.addr).await.unwrap();
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n\r\n", provider.addr);
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = [0u8; 1024];
    let n = stream.read(&mut answer).await.unwrap();
    assert!(String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 200"));
    let (rest, after) = read_until_closed(&mut stream, Instant::now()).await;
    assert_eq!(rest, "", "nothing more is sent");
    assert!(after >= TIMEOUT.mul_f32(0.8), "closed after {after:?}");
}
