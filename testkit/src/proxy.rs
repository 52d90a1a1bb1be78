//! A TCP proxy on 127.0.0.1 that can partition what passes through it: to
//! the API (a runner cut off from it) or to the Docker engine's socket (an
//! engine that stops answering for a moment), or lose the answer to one
//! request (a request that reached the server whose answer never came back),
//! or slow everything down (a git server that takes its time).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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

/// How long the server is given to act on a request whose answer is lost.
const SERVER_ACTS_WITHIN: Duration = Duration::from_millis(500);

/// What every connection of a proxy shares.
#[derive(Default)]
struct Shared {
    mode: AtomicU8,
    /// How long each chunk waits before it passes, in milliseconds.
    delay_ms: AtomicU64,
    /// The next request containing this text reaches the server, but its
    /// connection is closed before the answer comes back.
    lose_answer_to: Mutex<Option<String>>,
    connections: Mutex<Vec<AbortHandle>>,
}

pub struct Proxy {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    accept: AbortHandle,
}

impl Proxy {
    pub async fn start(target: Target) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared::default());
        let accept = tokio::spawn({
            let shared = shared.clone();
            async move {
                loop {
                    let Ok((client, _)) = listener.accept().await else {
                        return;
                    };
                    let (connection, target) = (shared.clone(), target.clone());
                    let task = tokio::spawn(async move {
                        match connection.mode.load(Ordering::SeqCst) {
                            CUT => drop(client),
                            // Held: read nothing, answer nothing, until aborted.
                            HOLD => {
                                let _client = client;
                                std::future::pending::<()>().await;
                            }
                            _ => match &target {
                                Target::Tcp(addr) => {
                                    if let Ok(server) = TcpStream::connect(addr).await {
                                        pipe(client, server, &connection).await;
                                    }
                                }
                                Target::Unix(path) => {
                                    if let Ok(server) = UnixStream::connect(path).await {
                                        pipe(client, server, &connection).await;
                                    }
                                }
                            },
                        }
                    });
                    shared.connections.lock().unwrap().push(task.abort_handle());
                }
            }
        })
        .abort_handle();
        Proxy {
            addr,
            shared,
            accept,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// From now on nothing passes: open connections go silent (held open,
    /// as a partition leaves them), new ones are accepted and ignored.
    pub fn hold(&self) {
        self.shared.mode.store(HOLD, Ordering::SeqCst);
    }

    /// From now on every connection is closed: open ones at once, new ones
    /// as they come.
    pub fn cut(&self) {
        self.shared.mode.store(CUT, Ordering::SeqCst);
        self.drop_connections();
    }

    /// From now on every chunk, either way, passes `each` late: a slow
    /// server or a slow link. Open connections slow down too.
    pub fn slow(&self, each: Duration) {
        let ms = u64::try_from(each.as_millis()).unwrap_or(u64::MAX);
        self.shared.delay_ms.store(ms, Ordering::SeqCst);
    }

    /// Lets traffic through again (to new connections), at full speed.
    pub fn restore(&self) {
        self.shared.delay_ms.store(0, Ordering::SeqCst);
        self.shared.mode.store(FORWARD, Ordering::SeqCst);
    }

    /// The next request that contains `text` reaches the server, which acts
    /// on it; then its connection is closed, so its answer is lost.
    pub fn lose_answer_to(&self, text: &str) {
        *self.shared.lose_answer_to.lock().unwrap() = Some(text.to_owned());
    }

    /// Whether the answer [`Proxy::lose_answer_to`] asked to lose is lost.
    pub fn answer_lost(&self) -> bool {
        self.shared.lose_answer_to.lock().unwrap().is_none()
    }

    fn drop_connections(&self) {
        for task in self.shared.connections.lock().unwrap().drain(..) {
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
/// sockets open and passes nothing more. A request whose answer is to be
/// lost ends the connection, once the server had time to act on it.
async fn pipe<A, B>(a: A, b: B, shared: &Shared)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let (mut a_read, mut a_write) = tokio::io::split(a);
    let (mut b_read, mut b_write) = tokio::io::split(b);
    let doomed = AtomicBool::new(false);
    let both = async {
        tokio::join!(
            copy(&mut a_read, &mut b_write, shared, Side::Requests(&doomed)),
            copy(&mut b_read, &mut a_write, shared, Side::Answers(&doomed))
        )
    };
    let lost = async {
        while !doomed.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(SERVER_ACTS_WITHIN).await;
    };
    tokio::select! {
        _ = both => {}
        () = lost => {}
    }
}

/// Which way a copy goes, with the connection's flag that says its next
/// answer is to be lost.
enum Side<'a> {
    /// Client to server: a request to lose the answer to sets the flag.
    Requests(&'a AtomicBool),
    /// Server to client: nothing passes once the flag is set.
    Answers(&'a AtomicBool),
}

/// Copies `from` to `to`.
async fn copy<R, W>(from: &mut R, to: &mut W, shared: &Shared, side: Side<'_>)
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
        let delay = shared.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        if shared.mode.load(Ordering::SeqCst) != FORWARD {
            std::future::pending::<()>().await;
        }
        match side {
            Side::Requests(doomed) => {
                let mut lose = shared.lose_answer_to.lock().unwrap();
                let hit = lose.as_ref().is_some_and(|text| {
                    buffer[..n]
                        .windows(text.len())
                        .any(|window| window == text.as_bytes())
                });
                if hit {
                    *lose = None;
                    doomed.store(true, Ordering::SeqCst);
                }
            }
            Side::Answers(doomed) => {
                if doomed.load(Ordering::SeqCst) {
                    std::future::pending::<()>().await;
                }
            }
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}
