//! A TCP proxy on 127.0.0.1 that can partition what passes through it: to
//! the API (a runner cut off from it) or to the Docker engine's socket (an
//! engine that stops answering for a moment).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream, UnixStream};
use tokio::task::AbortHandle;

#[derive(Clone, Debug)]
pub enum Target {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

const FORWARD: u8 = 0;
/// Connections stay open and nothing passes: a network partition.
const HOLD: u8 = 1;
/// Connections are closed at once: a peer that went away.
const CUT: u8 = 2;

pub struct Proxy {
    pub addr: SocketAddr,
    mode: Arc<AtomicU8>,
    connections: Arc<Mutex<Vec<AbortHandle>>>,
    accept: AbortHandle,
}

impl Proxy {
    pub async fn start(target: Target) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mode = Arc::new(AtomicU8::new(FORWARD));
        let connections: Arc<Mutex<Vec<AbortHandle>>> = Default::default();
        let accept = tokio::spawn({
            let (mode, connections) = (mode.clone(), connections.clone());
            async move {
                loop {
                    let Ok((client, _)) = listener.accept().await else {
                        return;
                    };
                    let mode = mode.clone();
                    let target = target.clone();
                    let task = tokio::spawn(async move {
                        match mode.load(Ordering::SeqCst) {
                            CUT => drop(client),
                            // Held: read nothing, answer nothing, until aborted.
                            HOLD => {
                                let _client = client;
                                std::future::pending::<()>().await;
                            }
                            _ => match &target {
                                Target::Tcp(addr) => {
                                    if let Ok(server) = TcpStream::connect(addr).await {
                                        pipe(client, server, &mode).await;
                                    }
                                }
                                Target::Unix(path) => {
                                    if let Ok(server) = UnixStream::connect(path).await {
                                        pipe(client, server, &mode).await;
                                    }
                                }
                            },
                        }
                    });
                    connections.lock().unwrap().push(task.abort_handle());
                }
            }
        })
        .abort_handle();
        Proxy {
            addr,
            mode,
            connections,
            accept,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// From now on nothing passes: open connections go silent (held open,
    /// as a partition leaves them), new ones are accepted and ignored.
    pub fn hold(&self) {
        self.mode.store(HOLD, Ordering::SeqCst);
    }

    /// From now on every connection is closed: open ones at once, new ones
    /// as they come.
    pub fn cut(&self) {
        self.mode.store(CUT, Ordering::SeqCst);
        self.drop_connections();
    }

    /// Lets traffic through again (to new connections).
    pub fn restore(&self) {
        self.mode.store(FORWARD, Ordering::SeqCst);
    }

    fn drop_connections(&self) {
        for task in self.connections.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.drop_connections();
    }
}

/// Copies both ways while the mode is `FORWARD`; once it is not, holds both
/// sockets open and passes nothing more.
async fn pipe<A, B>(a: A, b: B, mode: &AtomicU8)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let (mut a_read, mut a_write) = tokio::io::split(a);
    let (mut b_read, mut b_write) = tokio::io::split(b);
    tokio::join!(
        copy(&mut a_read, &mut b_write, mode),
        copy(&mut b_read, &mut a_write, mode)
    );
}

async fn copy<R, W>(from: &mut R, to: &mut W, mode: &AtomicU8)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => {
                let _ = to.shutdown().await;
                return;
            }
            Ok(n) => n,
        };
        if mode.load(Ordering::SeqCst) != FORWARD {
            std::future::pending::<()>().await;
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}
