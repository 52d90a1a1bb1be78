//! Fakes of the outside services Slipway talks to, each over real HTTP on
//! 127.0.0.1, strict about what it accepts and recording what it received.
//! Only outside services are faked: Slipway's own parts are always real.

pub mod github;
pub mod gitlab;
pub mod sentry;
pub mod slack;
pub mod webhooks;

/// Serves `router` on a port of its own on 127.0.0.1 until the task is
/// stopped (when the fake holding it is dropped); `what` names it in
/// panics ("the fake Sentry").
pub(crate) async fn serve(
    what: &'static str,
    router: axum::Router,
) -> (std::net::SocketAddr, crate::running::Running) {
    let listener = tokio::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let server = crate::running::Running::spawn(
        what,
        &tokio::runtime::Handle::current(),
        move |stopped| async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(stopped.wait())
                .await
                .unwrap_or_else(|err| panic!("{what} stopped serving: {err}"));
        },
    );
    (addr, server)
}
