//! Slipway as an operator runs it: `slipway-api` on a file-backed SQLite
//! database, `slipway-runner` on the local swarm, `slipway-provider` with a
//! fake GitHub, each a separate process on 127.0.0.1, plus the git server the
//! application's repository lives on. [`System::start_with`] can put the
//! runner's links to the Docker engine and to the git server behind proxies
//! that fail or slow them down on demand.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tempfile::TempDir;

use slipway_testkit::fakes::github::{self, FakeGithub};
use slipway_testkit::free_port;
use slipway_testkit::git::GitServer;
use slipway_testkit::process::Process;
use slipway_testkit::proxy::{Proxy, Target};
use slipway_testkit::wait;

use crate::api::Api;
use crate::bins;

pub const WEBHOOK_SECRET: &str = "e2e-github-webhook-secret";

/// Sends a GitHub hook signed with [`WEBHOOK_SECRET`] to the provider at
/// `provider_url`; its status and its answer (JSON when it is).
pub async fn github_hook(
    http: &reqwest::Client,
    provider_url: &str,
    event: &str,
    delivery: &str,
    body: &Value,
) -> (u16, Value) {
    let bytes = serde_json::to_vec(body).unwrap();
    let response = http
        .post(format!("{provider_url}/hooks/github"))
        .header("X-GitHub-Event", event)
        .header("X-GitHub-Delivery", delivery)
        .header("Content-Type", "application/json")
        .header("X-Hub-Signature-256", github::sign(WEBHOOK_SECRET, &bytes))
        .body(bytes)
        .send()
        .await
        .expect("POST /hooks/github");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}
pub const GITHUB_TOKEN: &str = "ghp_e2e_fake_token";
/// The runner's token subject; also its `--name` (see `start_runner`).
pub const RUNNER: &str = "runner-e2e";
/// Where people would open Slipway; statuses link under it.
pub const PUBLIC_URL: &str = "https://slipway.example.com";
/// The environment's URL, which statuses carry as `environment_url`.
pub const ENVIRONMENT_URL: &str = "https://shop.example.com";
/// How long a process may take to start answering.
pub const START: Duration = Duration::from_secs(30);

pub struct System {
    pub api: Api,
    pub api_process: Process,
    api_port: u16,
    pub runner: Process,
    pub provider: Process,
    provider_url: String,
    pub github: FakeGithub,
    pub git: GitServer,
    /// The application's repository, as the API and the runner know it:
    /// [`GitServer::url`], or through [`System::git_link`].
    pub repo_url: String,
    /// With [`Links::Proxied`], the runner's way to the Docker engine
    /// (`--docker-host`) and to the git server.
    pub engine_link: Option<Proxy>,
    pub git_link: Option<Proxy>,
    http: reqwest::Client,
    /// Database, secrets, the runner's workdir, the provider's journal and
    /// every process's output. Dropped last, after the processes are killed.
    dir: TempDir,
}

/// How the runner reaches the engine and the git server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Links {
    Direct,
    /// Each through a [`Proxy`] on 127.0.0.1, to cut or slow down.
    Proxied,
}

impl System {
    /// Starts everything, with application `shop` of the served repository and
    /// its environment `production`, auto-deployed from `main`.
    pub async fn start() -> System {
        System::start_with(Links::Direct).await
    }

    /// [`System::start`], with the runner's links as `links` says.
    pub async fn start_with(links: Links) -> System {
        slipway_testkit::swarm::require_swarm();
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path();
        let secret = path.join("jwt-secret");
        std::fs::write(&secret, "e2e-jwt-secret-0123456789abcdef\n").unwrap();
        std::fs::write(path.join("webhook-secret"), WEBHOOK_SECRET).unwrap();
        std::fs::write(path.join("github-token"), GITHUB_TOKEN).unwrap();
        for (role, subject) in [
            ("admin", "e2e-admin"),
            ("runner", RUNNER),
            ("provider", "github"),
        ] {
            let token = mint(&secret, role, subject);
            std::fs::write(path.join(format!("{role}-token")), token).unwrap();
        }

        let github = FakeGithub::start().await;
        let git = GitServer::start(path).await;
        let (engine_link, git_link) = match links {
            Links::Direct => (None, None),
            Links::Proxied => {
                let engine = Proxy::start(Target::Unix("/var/run/docker.sock".into())).await;
                let daemon = git.url["git://".len()..]
                    .split_once('/')
                    .and_then(|(addr, _)| addr.parse().ok())
                    .expect("the git daemon's address");
                (Some(engine), Some(Proxy::start(Target::Tcp(daemon)).await))
            }
        };
        let repo_url = match &git_link {
            Some(link) => format!("git://{}/acme/shop.git", link.addr),
            None => git.url.clone(),
        };
        let api_port = free_port();
        let api_process = start_api(path, api_port);
        let admin = std::fs::read_to_string(path.join("admin-token")).unwrap();
        let api = Api::new(format!("http://127.0.0.1:{api_port}"), admin);
        wait::until("the API to answer /healthz", START, || api.healthy()).await;

        api.create_app("shop", &repo_url).await;
        api.create_env("shop", "production", Some("main"), ENVIRONMENT_URL)
            .await;

        let provider_port = free_port();
        let provider = start_provider(path, provider_port, &api.url, &github.url());
        let provider_url = format!("http://127.0.0.1:{provider_port}");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        wait::until("the provider to answer /healthz", START, || async {
            let r = http
                .get(format!("{provider_url}/healthz"))
                .send()
                .await
                .map_err(|e| e.to_string())?;
            r.status()
                .is_success()
                .then_some(())
                .ok_or(r.status().to_string())
        })
        .await;

        let docker_host = engine_link.as_ref().map(|p| format!("tcp://{}", p.addr));
        let runner = start_runner(path, &api.url, docker_host.as_deref());
        let system = System {
            api,
            api_process,
            api_port,
            runner,
            provider,
            provider_url,
            github,
            git,
            repo_url,
            engine_link,
            git_link,
            http,
            dir,
        };
        system.wait_runner_listening(0).await;
        system
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Waits until the runner (its `n`-th incarnation, from 0) subscribed.
    pub async fn wait_runner_listening(&self, n: usize) {
        wait::until("the runner to listen for deployments", START, || async {
            let count = self
                .runner
                .output()
                .matches("listening for deployments")
                .count();
            if count > n {
                Ok(())
            } else {
                Err(format!("{count} times so far"))
            }
        })
        .await;
    }

    /// SIGKILLs the runner and starts it again with the same flags and workdir.
    pub fn restart_runner(&mut self) {
        self.runner.kill();
        let docker_host = self
            .engine_link
            .as_ref()
            .map(|p| format!("tcp://{}", p.addr));
        self.runner = start_runner(self.dir.path(), &self.api.url, docker_host.as_deref());
    }

    /// SIGKILLs the provider and starts it again on the same journal and
    /// port; waits until it answers.
    pub async fn restart_provider(&mut self) {
        self.provider.kill();
        let port: u16 = self
            .provider_url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("the provider's port");
        self.provider = start_provider(self.dir.path(), port, &self.api.url, &self.github.url());
        let http = self.http.clone();
        let url = format!("{}/healthz", self.provider_url);
        wait::until(
            "the restarted provider to answer /healthz",
            START,
            || async {
                let r = http.get(&url).send().await.map_err(|e| e.to_string())?;
                r.status()
                    .is_success()
                    .then_some(())
                    .ok_or(r.status().to_string())
            },
        )
        .await;
    }

    /// SIGKILLs the API.
    pub fn kill_api(&mut self) {
        self.api_process.kill();
    }

    /// Starts the API again on the same database and port; waits until it answers.
    pub async fn start_api_again(&mut self) {
        self.api_process = start_api(self.dir.path(), self.api_port);
        wait::until("the restarted API to answer /healthz", START, || {
            self.api.healthy()
        })
        .await;
    }

    /// Posts a GitHub hook signed with the webhook secret; returns the HTTP
    /// status and the JSON answer.
    pub async fn hook(&self, event: &str, delivery: &str, body: &Value) -> (u16, Value) {
        github_hook(&self.http, &self.provider_url, event, delivery, body).await
    }

    /// Sends a `deployment` hook for GitHub deployment `gh_id` of `sha`;
    /// returns the Slipway deployment's id.
    pub async fn deploy_hook(&self, gh_id: u64, sha: &str) -> String {
        let event = github::deployment_event(gh_id, "production", sha, json!({}), &self.repo_url);
        let (status, body) = self
            .hook("deployment", &format!("delivery-{gh_id}"), &event)
            .await;
        assert_eq!(status, 200, "the hook is accepted: {body}");
        body["deployments"][0]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("a deployment id in {body}"))
            .to_owned()
    }

    /// Waits until GitHub deployment `gh_id` received a final status; returns
    /// every state it received, in order.
    pub async fn wait_github_final(&self, gh_id: u64, within: Duration) -> Vec<String> {
        wait::until(
            &format!("a final status for GitHub deployment {gh_id}"),
            within,
            || async {
                let states = self.github.states(gh_id);
                if states
                    .iter()
                    .any(|s| matches!(s.as_str(), "success" | "failure" | "error"))
                {
                    Ok(states)
                } else {
                    Err(format!("{states:?}"))
                }
            },
        )
        .await
    }

    /// The runner's log lines for deployment `id`, as it wrote them to stderr.
    pub fn runner_lines(&self, id: &str) -> Vec<String> {
        // The runner logs each line in the span of its deployment:
        // `deployment{deployment=shop#2 id=2}: slipway_runner::report: TEXT`.
        let span = format!(" id={id}}}: slipway_runner::report: ");
        self.runner
            .output()
            .lines()
            .filter_map(|l| Some(l.split_once(&span)?.1.to_owned()))
            .collect()
    }
}

/// `slipway-api token`: a token for `role` signed with the secret in `secret`.
pub fn mint(secret: &Path, role: &str, subject: &str) -> String {
    let out = Command::new(bins::path("slipway-api"))
        .args(["token", "--role", role, "--subject", subject, "--ttl", "1d"])
        .arg("--jwt-secret-file")
        .arg(secret)
        .env_remove("SLIPWAY_JWT_SECRET")
        .output()
        .expect("slipway-api token runs");
    assert!(
        out.status.success(),
        "slipway-api token: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn start_api(dir: &Path, port: u16) -> Process {
    let database = format!("sqlite://{}?mode=rwc", dir.join("slipway.db").display());
    start_api_on(dir, "slipway-api", port, &database)
}

/// `slipway-api serve` on 127.0.0.1:`port` over `database`, with the JWT
/// secret in `dir/jwt-secret`; `name` names it and its log (`dir/NAME.log`).
pub fn start_api_on(dir: &Path, name: &str, port: u16, database: &str) -> Process {
    let mut command = Command::new(bins::path("slipway-api"));
    command
        .arg("serve")
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--database-url", database])
        .arg("--jwt-secret-file")
        .arg(dir.join("jwt-secret"))
        .args(["--public-url", PUBLIC_URL])
        .env("SLIPWAY_LOG", "info");
    let log = match name {
        "slipway-api" => "api.log".to_owned(),
        name => format!("{name}.log"),
    };
    Process::spawn(name, command, &dir.join(log))
}

fn start_provider(dir: &Path, port: u16, api_url: &str, github_url: &str) -> Process {
    let mut command = Command::new(bins::path("slipway-provider"));
    command
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--api-url", api_url])
        .arg("--token-file")
        .arg(dir.join("provider-token"))
        .args(["--public-url", PUBLIC_URL])
        .arg("--github-webhook-secret-file")
        .arg(dir.join("webhook-secret"))
        .arg("--github-token-file")
        .arg(dir.join("github-token"))
        .args(["--github-api-url", github_url])
        .arg("--data-dir")
        .arg(dir.join("provider"))
        .env("SLIPWAY_LOG", "info");
    Process::spawn("slipway-provider", command, &dir.join("provider.log"))
}

fn start_runner(dir: &Path, api_url: &str, docker_host: Option<&str>) -> Process {
    let mut command = runner_command(dir, api_url, RUNNER, &dir.join("runner-token"));
    if let Some(host) = docker_host {
        command.args(["--docker-host", host]);
    }
    Process::spawn("slipway-runner", command, &dir.join("runner.log"))
}

/// `slipway-runner run` as `name`, with the token in `token` and a workdir of
/// its own under `dir`.
fn runner_command(dir: &Path, api_url: &str, name: &str, token: &Path) -> Command {
    let workdir: PathBuf = match name {
        RUNNER => dir.join("runner"),
        name => dir.join(format!("runner-{name}")),
    };
    let mut command = Command::new(bins::path("slipway-runner"));
    command
        .arg("run")
        .args(["--api-url", api_url])
        .arg("--token-file")
        .arg(token)
        // The runner resumes what the API says is held by `--name`, while the
        // API knows it by its token's subject: the two must agree (see the
        // report of issue 5).
        .args(["--name", name])
        .arg("--workdir")
        .arg(workdir)
        .env("SLIPWAY_LOG", "info");
    command
}

impl System {
    /// Another runner beside the first, named `name` (its token's subject
    /// too), registered with `labels` (`pool=blue`); its log is
    /// `dir/runner-NAME.log`.
    pub fn start_runner_with_labels(&self, name: &str, labels: &[&str]) -> Process {
        let dir = self.dir.path();
        let token = dir.join(format!("runner-{name}-token"));
        std::fs::write(&token, mint(&dir.join("jwt-secret"), "runner", name)).unwrap();
        let mut command = runner_command(dir, &self.api.url, name, &token);
        for label in labels {
            command.args(["--label", label]);
        }
        Process::spawn(name, command, &dir.join(format!("runner-{name}.log")))
    }
}

/// A `slipway.yml` for `stack` whose Compose file is `docker-compose.yml`.
pub fn spec(stack: &str) -> String {
    format!(
        "stack: {stack}\ncompose: docker-compose.yml\nenvironments:\n  production:\n    url: {ENVIRONMENT_URL}\n    timeout: 2m\n"
    )
}

/// A one-service Compose file: `web` runs `image` with `replicas` tasks and
/// `GREETING=greeting`; `update` is its `update_config`.
pub fn compose(image: &str, replicas: u32, greeting: &str, update: &str) -> String {
    format!(
        r#"version: "3.8"
services:
  web:
    image: {image}
    command: ["sleep", "3600"]
    environment:
      GREETING: "{greeting}"
    stop_grace_period: 1s
    deploy:
      replicas: {replicas}
      update_config: {update}
      restart_policy: {{delay: 1s}}
"#
    )
}

/// Fast updates: both tasks at once, a short monitor.
pub const FAST: &str = "{parallelism: 2, delay: 1s, monitor: 2s}";
/// Slow updates: one task at a time, 4 s apart, so a test can act mid-rollout.
pub const SLOW: &str = "{parallelism: 1, delay: 4s, monitor: 1s}";

/// Time since `start`, in milliseconds, for messages.
pub fn ms(start: Instant) -> u128 {
    start.elapsed().as_millis()
}
