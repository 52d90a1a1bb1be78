//! The real provider in-process (`slipway_provider::run` on 127.0.0.1),
//! configured for a [`TestApi`] and a [`FakeGithub`], and the hooks posted to it.

use std::net::SocketAddr;
use std::path::PathBuf;

use axum::http::StatusCode;
use serde_json::Value;
use slipway_api::auth::Role;
use slipway_provider::{Config, Listeners, Secret};
use tokio::net::TcpListener;
use tokio::runtime::Handle;

use crate::api::TestApi;
use crate::fakes::github::{self, FakeGithub};
use crate::prometheus::Scrape;
use crate::running::Running;

pub const GITHUB_SECRET: &str = "github-webhook-secret-for-tests";
pub const GITLAB_TOKEN: &str = "gitlab-webhook-token-for-tests";
pub const GENERIC_TOKEN: &str = "generic-token-for-tests";
pub const GITHUB_TOKEN: &str = "ghp_fake_token_for_tests";
/// Where people would open Slipway; statuses link under it.
pub const PUBLIC_URL: &str = "https://slipway.example.com";

/// The provider's configuration for `api` and `github`, with every hook on.
pub fn config(api: &TestApi, github: &FakeGithub, data_dir: PathBuf) -> Config {
    let mut config = Config::new(api.base_url(), api.token(Role::Provider, "provider"));
    config.public_url = Some(PUBLIC_URL.into());
    config.hooks.github_webhook_secret = Some(Secret::new(GITHUB_SECRET));
    config.hooks.github_token = Some(Secret::new(GITHUB_TOKEN));
    config.hooks.github_api_url = github.url();
    config.hooks.gitlab_webhook_token = Some(Secret::new(GITLAB_TOKEN));
    config.hooks.generic_token = Some(Secret::new(GENERIC_TOKEN));
    config.data_dir = data_dir;
    config
}

/// The provider, served on 127.0.0.1; stopped and awaited when dropped.
pub struct TestProvider {
    pub addr: SocketAddr,
    /// Where `GET /metrics` is served, when the configuration has a
    /// `metrics_listen` (`127.0.0.1:0` picks a free port).
    pub metrics_addr: Option<SocketAddr>,
    pub config: Config,
    running: Running,
    http: reqwest::Client,
}

impl TestProvider {
    pub async fn start(config: Config) -> TestProvider {
        let hooks = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = hooks.local_addr().expect("addr");
        let metrics = match config.metrics_listen {
            Some(at) => Some(TcpListener::bind(at).await.expect("bind")),
            None => None,
        };
        let metrics_addr = metrics
            .as_ref()
            .map(|listener| listener.local_addr().expect("addr"));
        let listeners = Listeners { hooks, metrics };
        let running = Running::spawn("the provider", &Handle::current(), {
            let config = config.clone();
            |stopped| async move {
                slipway_provider::run(config, listeners, stopped.wait())
                    .await
                    .expect("the provider runs");
            }
        });
        TestProvider {
            addr,
            metrics_addr,
            config,
            running,
            http: reqwest::Client::new(),
        }
    }

    /// Stops the provider; returns its configuration, to start it again.
    pub async fn stop(mut self) -> Config {
        self.running.stop().await;
        self.config.clone()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// `GET /metrics` on the metrics listener, parsed as Prometheus parses it.
    pub async fn scrape(&self) -> Scrape {
        let addr = self.metrics_addr.expect("the provider serves metrics");
        crate::prometheus::scrape(&self.http, addr).await
    }

    /// Posts a GitHub hook signed with [`GITHUB_SECRET`].
    pub async fn github(&self, event: &str, delivery: &str, body: &Value) -> (StatusCode, Value) {
        let bytes = serde_json::to_vec(body).expect("JSON");
        let signature = github::sign(GITHUB_SECRET, &bytes);
        self.github_raw(event, delivery, bytes, Some(&signature))
            .await
    }

    /// Posts raw bytes to `/hooks/github` with the given signature header.
    pub async fn github_raw(
        &self,
        event: &str,
        delivery: &str,
        body: Vec<u8>,
        signature: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .http
            .post(self.url("/hooks/github"))
            .header("X-GitHub-Event", event)
            .header("X-GitHub-Delivery", delivery)
            .header("Content-Type", "application/json")
            .body(body);
        if let Some(signature) = signature {
            request = request.header("X-Hub-Signature-256", signature);
        }
        answer(request.send().await.expect("POST /hooks/github")).await
    }

    /// Posts a GitLab hook with `token` and `Idempotency-Key` `key`.
    pub async fn gitlab(
        &self,
        event: &str,
        token: Option<&str>,
        key: Option<&str>,
        body: &Value,
    ) -> (StatusCode, Value) {
        let mut request = self
            .http
            .post(self.url("/hooks/gitlab"))
            .header("X-Gitlab-Event", event)
            .json(body);
        if let Some(token) = token {
            request = request.header("X-Gitlab-Token", token);
        }
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        answer(request.send().await.expect("POST /hooks/gitlab")).await
    }

    /// Posts a generic hook with bearer `token`.
    pub async fn generic(&self, token: Option<&str>, body: &Value) -> (StatusCode, Value) {
        let mut request = self.http.post(self.url("/hooks/generic")).json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        answer(request.send().await.expect("POST /hooks/generic")).await
    }
}

/// The status and body of an answer: JSON, or the text as a JSON string.
async fn answer(response: reqwest::Response) -> (StatusCode, Value) {
    let status = StatusCode::from_u16(response.status().as_u16()).expect("an HTTP status");
    let text = response.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}
