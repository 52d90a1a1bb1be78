//! A whole deployment path for tests: the real API on 127.0.0.1 over a temp
//! SQLite file, real git repositories in temp dirs, a runner in-process, and
//! the real Docker engine in swarm mode.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use slipway_api::auth::{Keys, Role};
use slipway_api::{db, AppState, Clock, Settings};
use slipway_runner::git::Credentials;
use slipway_runner::swarm::Engine;
use slipway_runner::work::Runner;
use tokio::net::TcpListener;

const SECRET: &[u8] = b"slipway-runner-tests-secret-0123";

pub struct Api {
    pub url: String,
    pub keys: Keys,
    /// The API's own state, for changes no API call makes.
    pub state: AppState,
    _dir: tempfile::TempDir,
    http: reqwest::Client,
}

impl Api {
    pub async fn start() -> Self {
        Self::start_with(Settings::default()).await
    }

    pub async fn start_with(settings: Settings) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("api.db").display());
        let conn = db::connect(&url).await.unwrap();
        db::migrate(&conn).await.unwrap();
        let keys = Keys::new(SECRET);
        let state = AppState::new(conn, keys.clone(), Clock::system(), settings);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn({
            let state = state.clone();
            async move {
                slipway_api::serve(state, listener, std::future::pending())
                    .await
                    .unwrap();
            }
        });
        Self {
            url: format!("http://{addr}"),
            keys,
            state,
            _dir: dir,
            http: reqwest::Client::new(),
        }
    }

    pub fn token(&self, role: Role, subject: &str) -> String {
        self.keys.issue(
            subject,
            role,
            chrono::Duration::hours(1),
            chrono::Utc::now(),
        )
    }

    pub async fn gql(&self, role: Role, query: &str, variables: Value) -> Value {
        let body: Value = self
            .http
            .post(format!("{}/graphql", self.url))
            .bearer_auth(self.token(role, "tester"))
            .json(&json!({"query": query, "variables": variables}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(body.get("errors").is_none(), "{body}");
        body["data"].clone()
    }

    pub async fn create_app(&self, name: &str, repository: &str) {
        self.gql(
            Role::Admin,
            "mutation($n: String!, $r: String!) { createApplication(input: {name: $n, repository: $r}) { name } }",
            json!({"n": name, "r": repository}),
        )
        .await;
    }

    /// Queues a deployment; returns its id.
    pub async fn deploy(&self, app: &str, env: &str, reference: &str, sha: Option<&str>) -> String {
        let data = self
            .gql(
                Role::Deployer,
                "mutation($i: CreateDeploymentInput!) { createDeployment(input: $i) { id } }",
                json!({"i": {"application": app, "environment": env, "ref": reference, "sha": sha}}),
            )
            .await;
        data["createDeployment"]["id"].as_str().unwrap().to_owned()
    }

    pub async fn deployment(&self, id: &str) -> Value {
        self.gql(
            Role::Viewer,
            "query($id: ID!) { deployment(id: $id) { id status phase message sha runner services { name image } logs(first: 10000) { seq stream text } } }",
            json!({"id": id}),
        )
        .await["deployment"]
            .clone()
    }

    /// Waits (up to `within`) until the deployment has finished; returns it.
    pub async fn wait_final(&self, id: &str, within: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let d = self.deployment(id).await;
            if matches!(
                d["status"].as_str(),
                Some("SUCCEEDED" | "FAILED" | "CANCELLED")
            ) {
                return d;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "deployment {id} did not finish within {within:?}: {d}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until the deployment reports `phase`.
    pub async fn wait_phase(&self, id: &str, phase: &str, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        while self.deployment(id).await["phase"] != phase {
            assert!(
                tokio::time::Instant::now() < deadline,
                "deployment {id} never reached {phase}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A git repository in a temp dir.
pub struct Repo {
    pub dir: tempfile::TempDir,
}

impl Repo {
    pub fn new() -> Self {
        let repo = Self {
            dir: tempfile::tempdir().unwrap(),
        };
        repo.git(&["init", "-q", "-b", "main"]);
        repo.git(&["config", "user.email", "test@slipway.invalid"]);
        repo.git(&["config", "user.name", "Slipway Tests"]);
        repo
    }

    pub fn url(&self) -> String {
        format!("file://{}", self.dir.path().display())
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    fn git(&self, args: &[&str]) -> String {
        let out = Command::new("git")
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .expect("git runs");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    /// Writes `files` and commits them; returns the commit's sha.
    pub fn commit(&self, files: &[(&str, &str)], message: &str) -> String {
        for (path, content) in files {
            let path: PathBuf = self.dir.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, content).unwrap();
        }
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "-m", message]);
        self.git(&["rev-parse", "HEAD"])
    }
}

/// Removes a stack when dropped, so a failed test leaves nothing behind.
pub struct StackGuard(pub String);

impl Drop for StackGuard {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["stack", "rm", &self.0])
            .output();
    }
}

/// A unique stack name for one test.
pub fn stack_name(test: &str) -> String {
    let n = chrono::Utc::now().timestamp_micros() % 1_000_000;
    format!("t{n}{}", &test[..test.len().min(12)]).replace(['_', '-'], "")
}

/// Connects to the local engine; fails loudly when it is missing.
pub async fn engine() -> Engine {
    let engine = Engine::connect(None).await.unwrap_or_else(|err| {
        panic!("these tests need a Docker engine in swarm mode ({err}); run scripts/test.sh, which starts one")
    });
    engine
        .check_manager()
        .await
        .unwrap_or_else(|err| panic!("{err}; run scripts/test.sh"));
    engine
}

/// Starts a runner named `name` in-process, in a workdir of its own under
/// the API's directory: a runner started again with the same name is the
/// same runner (the same instance) restarted. It stops when the handle is
/// dropped; [`RunnerHandle::stop`] waits until it has.
pub async fn start_runner(api: &Api, name: &str) -> RunnerHandle {
    let workdir = api._dir.path().join("runners").join(name);
    start_runner_in(api, name, &workdir, engine().await).await
}

/// Starts a runner named `name` in `workdir`, talking to `engine`.
pub async fn start_runner_in(
    api: &Api,
    name: &str,
    workdir: &Path,
    engine: Engine,
) -> RunnerHandle {
    start_runner_at(api, &api.url, name, workdir, engine).await
}

/// Starts a runner that reaches the API at `api_url` (a proxy, say).
pub async fn start_runner_at(
    api: &Api,
    api_url: &str,
    name: &str,
    workdir: &Path,
    engine: Engine,
) -> RunnerHandle {
    let mut runner = Runner::open(
        slipway_client::Client::new(api_url, &api.token(Role::Runner, name)),
        name,
        workdir,
        engine,
        Credentials::default(),
    )
    .unwrap();
    runner.labels = vec!["test".into()];
    runner.fetch_timeout = Duration::from_secs(60);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(slipway_runner::work::run(runner, async {
        let _ = stopped.await;
    }));
    RunnerHandle {
        stop: Some(stop),
        task: Some(task),
    }
}

pub struct RunnerHandle {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl RunnerHandle {
    /// Stops the runner and waits until it has, deployments in flight included.
    pub async fn stop(mut self) {
        self.stop.take();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(20), task)
                .await
                .expect("the runner stops within 20 s")
                .expect("runner task");
        }
    }
}

impl Drop for RunnerHandle {
    fn drop(&mut self) {
        self.stop.take();
    }
}

/// `docker service inspect` of a service, as JSON.
pub fn inspect_service(name: &str) -> Option<Value> {
    let out = Command::new("docker")
        .args(["service", "inspect", name])
        .output()
        .unwrap();
    if !out.status.success() {
        return None;
    }
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    Some(list[0].clone())
}

/// Images of the running tasks of a service.
pub fn running_images(name: &str) -> Vec<String> {
    let out = Command::new("docker")
        .args([
            "service",
            "ps",
            name,
            "--filter",
            "desired-state=running",
            "--format",
            "{{.Image}} {{.CurrentState}}",
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("Running"))
        .map(|l| l.split_whitespace().next().unwrap_or("").to_owned())
        .collect()
}
