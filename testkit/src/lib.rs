//! What Slipway's tests and benches share, written once: the real API started
//! in-process, fakes of the outside services Slipway talks to, real git
//! servers, the swarm as `docker` shows it, polling with a deadline, and the
//! table every bench prints. Every crate's `tests/` and `benches/` use it as a
//! dev-dependency; the end-to-end harness (`e2e/src`) builds on it.
//!
//! # Layout
//!
//! - [`api`] (feature `api`): `TestApi`, the real API on 127.0.0.1 over a temp
//!   SQLite file or a fresh PostgreSQL database, with tokens for every role,
//!   GraphQL and WebSocket clients and the fixtures tests need.
//! - [`provider`] (feature `provider`): `TestProvider`, the real provider
//!   in-process, configured for a `TestApi` and a `FakeGithub`.
//! - [`runner`] (feature `runner`): `start_runner`, the one place a runner is
//!   put together in-process.
//! - [`fakes`]: fakes of outside services over real HTTP, strict and
//!   recording what they receive: GitHub's REST API, and the hooks GitHub sends.
//! - [`git`]: repositories in temp dirs, and real servers serving them:
//!   `git daemon`, an `sshd` of its own ([`git::ssh`]), git's smart HTTP over
//!   HTTPS and HTTP ([`git::http`]).
//! - [`tls`]: a CA made for the tests and the server certificate it signs.
//! - [`swarm`]: the local engine as `docker` shows it, and a guard that
//!   removes a test's stack.
//! - [`wait`]: polling until a deadline; every wait says what it waited for.
//! - [`net`]: raw sockets, for tests of slow and idle clients.
//! - [`process`]: a child process killed when dropped, its output kept.
//! - [`registry`]: the container registries of `scripts/test-env.sh`, pushing
//!   and moving tags, and the `config.json` a runner is given.
//! - [`proxy`]: a TCP proxy that can partition what passes through it (to the
//!   API, or to the Docker engine's socket).
//! - [`bench`]: the table every bench prints, and its figures' formats.
//! - [`prometheus`]: a scrape parsed by Prometheus's own Python parser.
//!
//! Without features no Slipway crate is linked, so the end-to-end tests see
//! the binaries only as an operator does.

#[cfg(feature = "api")]
pub mod api;
pub mod bench;
pub mod fakes;
pub mod git;
pub mod net;
pub mod process;
pub mod prometheus;
#[cfg(feature = "provider")]
pub mod provider;
pub mod proxy;
pub mod registry;
#[cfg(feature = "runner")]
pub mod runner;
mod running;
pub mod swarm;
pub mod tls;
pub mod wait;

/// A port on 127.0.0.1 nobody listens on now (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free port on 127.0.0.1")
}
