//! Git's smart HTTP: `git http-backend` (CGI) behind a small HTTP/1.1 server
//! of the kit, over TLS and in plain HTTP, on 127.0.0.1.
//!
//! Every request must carry HTTP Basic auth with the token as the password
//! of `x-access-token` (what GitHub takes); without it the answer is 401
//! with a Basic challenge. Each request's scheme, `Host` and `Authorization`
//! are recorded, so a test can tell where a client sent its token.
//!
//! `/moved/<path>` (once authenticated) answers `302 Found` to
//! `https://localhost:PORT/<path>`: the same server under another host name.
//! Everything else is handed to `git http-backend` with the CGI environment
//! (`GIT_PROJECT_ROOT`, `GIT_HTTP_EXPORT_ALL`, `PATH_INFO`, `REQUEST_METHOD`,
//! `QUERY_STRING`, `CONTENT_TYPE`, `CONTENT_LENGTH`, `REMOTE_USER`, ...), one
//! process per request, the body piped in and its CGI headers parsed.

use std::convert::Infallible;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::AbortHandle;
use tokio_rustls::TlsAcceptor;

use super::{bare_copy, git, Repo};
use crate::tls::Identity;

/// One request the server received.
#[derive(Clone, Debug)]
pub struct Seen {
    /// Whether it came over TLS.
    pub https: bool,
    /// Its `Host` header: `127.0.0.1:PORT`, or `localhost:PORT` after a
    /// redirect.
    pub host: String,
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Its `Authorization` header, if any.
    pub authorization: Option<String>,
}

/// Git's smart HTTP serving a bare copy of a repository, over HTTPS and
/// plain HTTP on two free ports of 127.0.0.1; stops when dropped.
pub struct GitHttp {
    pub https_port: u16,
    pub http_port: u16,
    /// The certificate the HTTPS port presents, and its CA.
    pub identity: Identity,
    name: String,
    state: Arc<State>,
    accepts: Vec<AbortHandle>,
    _dir: tempfile::TempDir,
}

struct State {
    /// `GIT_PROJECT_ROOT`: the directory holding the bare copy.
    root: PathBuf,
    /// `HOME` of `git http-backend`, away from the user's git configuration.
    home: PathBuf,
    backend: PathBuf,
    /// The `Authorization` header every request must carry.
    expected: String,
    https_port: u16,
    seen: Mutex<Vec<Seen>>,
}

impl GitHttp {
    /// Serves a bare copy of `repo` (its commits so far), requiring `token`,
    /// with the kit's shared TLS identity ([`Identity::shared`]).
    pub async fn serve(repo: &Repo, token: &str) -> GitHttp {
        GitHttp::serve_with(repo, token, Identity::shared()).await
    }

    /// [`GitHttp::serve`] presenting `identity`'s certificate.
    pub async fn serve_with(repo: &Repo, token: &str, identity: Identity) -> GitHttp {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().join("git");
        bare_copy(repo, &root);
        let home = dir.path().join("home");
        std::fs::create_dir_all(&home).expect("a home for git http-backend");
        let exec_path = git(dir.path(), &["--exec-path"]);
        let https = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let http = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let https_port = https.local_addr().expect("an address").port();
        let http_port = http.local_addr().expect("an address").port();
        let credentials =
            base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{token}"));
        let state = Arc::new(State {
            root,
            home,
            backend: Path::new(&exec_path).join("git-http-backend"),
            expected: format!("Basic {credentials}"),
            https_port,
            seen: Mutex::default(),
        });
        let tls = TlsAcceptor::from(identity.server_config());
        let accepts = vec![
            tokio::spawn(accept(https, Some(tls), state.clone())).abort_handle(),
            tokio::spawn(accept(http, None, state.clone())).abort_handle(),
        ];
        GitHttp {
            https_port,
            http_port,
            identity,
            name: format!("{}.git", repo.name()),
            state,
            accepts,
            _dir: dir,
        }
    }

    /// `https://127.0.0.1:PORT/shop.git`.
    pub fn https_url(&self) -> String {
        format!("https://127.0.0.1:{}/{}", self.https_port, self.name)
    }

    /// `http://127.0.0.1:PORT/shop.git`: the same repository in clear text.
    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}/{}", self.http_port, self.name)
    }

    /// `https://127.0.0.1:PORT/moved/shop.git`, which redirects (after
    /// authentication) to `https://localhost:PORT/shop.git`.
    pub fn moved_url(&self) -> String {
        format!("https://127.0.0.1:{}/moved/{}", self.https_port, self.name)
    }

    /// Every request received so far, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }
}

impl Drop for GitHttp {
    fn drop(&mut self) {
        for accept in &self.accepts {
            accept.abort();
        }
    }
}

async fn accept(listener: TcpListener, tls: Option<TlsAcceptor>, state: Arc<State>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let (tls, state) = (tls.clone(), state.clone());
        tokio::spawn(async move {
            let https = tls.is_some();
            let service =
                hyper::service::service_fn(move |request| handle(state.clone(), https, request));
            let http = hyper::server::conn::http1::Builder::new();
            let _ = match tls {
                Some(tls) => match tls.accept(stream).await {
                    Ok(stream) => http.serve_connection(TokioIo::new(stream), service).await,
                    // A client that does not trust the certificate hangs up.
                    Err(_) => return,
                },
                None => http.serve_connection(TokioIo::new(stream), service).await,
            };
        });
    }
}

async fn handle(
    state: Arc<State>,
    https: bool,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    let header = |name: HeaderName| {
        parts
            .headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    };
    let seen = Seen {
        https,
        host: header(header::HOST).unwrap_or_default(),
        method: parts.method.to_string(),
        path: parts
            .uri
            .path_and_query()
            .map_or_else(|| "/".to_owned(), |path| path.to_string()),
        authorization: header(header::AUTHORIZATION),
    };
    state.seen.lock().unwrap().push(seen.clone());
    let Ok(body) = body.collect().await.map(|body| body.to_bytes()) else {
        return Ok(answer(StatusCode::BAD_REQUEST, "unreadable body\n"));
    };
    if seen.authorization.as_deref() != Some(state.expected.as_str()) {
        let mut response = answer(StatusCode::UNAUTHORIZED, "authentication required\n");
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"slipway test\""),
        );
        return Ok(response);
    }
    let query = parts.uri.query().unwrap_or_default().to_owned();
    if let Some(rest) = parts.uri.path().strip_prefix("/moved/") {
        let query = if query.is_empty() {
            String::new()
        } else {
            format!("?{query}")
        };
        let location = format!("https://localhost:{}/{rest}{query}", state.https_port);
        let mut response = answer(StatusCode::FOUND, "moved\n");
        response.headers_mut().insert(
            header::LOCATION,
            HeaderValue::from_str(&location).expect("a header value"),
        );
        return Ok(response);
    }
    let path = parts.uri.path().to_owned();
    let method = parts.method.to_string();
    let headers = parts.headers;
    let response = tokio::task::spawn_blocking(move || {
        http_backend(&state, &method, &path, &query, &headers, body)
    })
    .await
    .unwrap_or_else(|_| answer(StatusCode::INTERNAL_SERVER_ERROR, "git http-backend\n"));
    Ok(response)
}

/// Runs `git http-backend` for one request and turns its CGI answer into a
/// response.
fn http_backend(
    state: &State,
    method: &str,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> Response<Full<Bytes>> {
    let mut command = Command::new(&state.backend);
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &state.home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_PROJECT_ROOT", &state.root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("SERVER_PROTOCOL", "HTTP/1.1")
        .env("REQUEST_METHOD", method)
        .env("PATH_INFO", path)
        .env("QUERY_STRING", query)
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("REMOTE_USER", "x-access-token")
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, variable) in [
        (header::CONTENT_TYPE, "CONTENT_TYPE"),
        (header::CONTENT_ENCODING, "HTTP_CONTENT_ENCODING"),
        (HeaderName::from_static("git-protocol"), "HTTP_GIT_PROTOCOL"),
    ] {
        if let Some(value) = headers.get(name).and_then(|v| v.to_str().ok()) {
            command.env(variable, value);
        }
    }
    let mut child = command.spawn().expect("git http-backend starts");
    let mut stdin = child.stdin.take().expect("its stdin");
    // Written aside, so that a large answer cannot block a large request.
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&body);
    });
    let out = child.wait_with_output().expect("git http-backend ends");
    let _ = writer.join();
    if !out.stderr.is_empty() {
        eprintln!(
            "git http-backend {method} {path}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    cgi_response(&out.stdout)
}

/// A CGI answer: header lines (`Status:` sets the status), an empty line,
/// the body.
fn cgi_response(output: &[u8]) -> Response<Full<Bytes>> {
    let end = |separator: &[u8]| {
        output
            .windows(separator.len())
            .position(|w| w == separator)
            .map(|at| (at, at + separator.len()))
    };
    let Some((head_end, body_start)) = [end(b"\r\n\r\n"), end(b"\n\n")].into_iter().flatten().min()
    else {
        return answer(StatusCode::BAD_GATEWAY, "no CGI headers\n");
    };
    let mut response = Response::new(Full::new(Bytes::copy_from_slice(&output[body_start..])));
    let head = String::from_utf8_lossy(&output[..head_end]);
    for line in head.lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value.split_whitespace().next().unwrap_or("500");
            *response.status_mut() = code.parse().unwrap_or(StatusCode::BAD_GATEWAY);
        } else if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.trim().as_bytes()),
            HeaderValue::from_str(value),
        ) {
            response.headers_mut().append(name, value);
        }
    }
    response
}

fn answer(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response
}
