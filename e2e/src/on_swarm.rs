//! Slipway on the swarm, set up as the README's "Slipway on a swarm" tells an
//! operator: the image built from `deploy/Dockerfile` (by `deploy/image.sh`,
//! from the binaries under test) and pushed to the local registry, the node
//! labelled, the secrets created, and `docker stack deploy -c
//! deploy/stack.yml slipway`, with PostgreSQL in the stack.
//!
//! The stack's containers reach this machine at the gateway of
//! `docker_gwbridge`: the fake GitHub and the git servers listen there. Ports
//! are published in host mode (this kernel has no ingress routing mesh).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tempfile::TempDir;

use slipway_testkit::fakes::github::FakeGithub;
use slipway_testkit::free_port;
use slipway_testkit::git::GitServer;
use slipway_testkit::wait;

use crate::api::Api;
use crate::bins;
use crate::system::{mint, PUBLIC_URL, WEBHOOK_SECRET};

/// The stack's name: `deploy/slipway.yml` says `stack: slipway`.
pub const STACK: &str = "slipway";
/// Where the test pushes Slipway's images, `REPOSITORY:<sha>` as CI would.
pub const IMAGE_REPOSITORY: &str = "127.0.0.1:5000/slipway-e2e";
/// `testkit/images/postgres`, built by `scripts/test-env.sh`.
pub const POSTGRES_IMAGE: &str = "slipway-test/postgres:15";
/// The runner's name in the stack and its token's subject.
const RUNNER: &str = "runner";
/// The stack's external secrets.
const SECRETS: [&str; 8] = [
    "slipway_jwt_secret",
    "slipway_db_password",
    "slipway_runner_token",
    "slipway_provider_token",
    "slipway_github_webhook_secret",
    "slipway_github_token",
    "slipway_runner_secrets",
    "slipway_registry_auth",
];
/// Slipway's services in the stack, the database aside.
pub const SERVICES: [&str; 3] = ["slipway_api", "slipway_provider", "slipway_runner"];
/// How long the stack may take to answer after `docker stack deploy`.
const UP: Duration = Duration::from_secs(120);
const NODE_LABEL: &str = "slipway.data";

/// Slipway running on the swarm, and what it talks to.
pub struct OnSwarm {
    /// The API at its published port, with an admin token.
    pub api: Api,
    pub provider_url: String,
    pub github: FakeGithub,
    /// Slipway's own repository: `deploy/` of the working tree.
    pub slipway_repo: GitServer,
    /// The shop example's repository: `examples/shop` of the working tree.
    pub shop_repo: GitServer,
    /// Where the shop's `local` environment publishes its page.
    pub shop_port: u16,
    /// The image the stack was deployed with: `REPOSITORY:<sha>` of the
    /// first commit of Slipway's repository.
    pub image: String,
    /// The commit of the shop's repository.
    pub shop_sha: String,
    http: reqwest::Client,
    _cleanup: Cleanup,
    dir: TempDir,
}

impl OnSwarm {
    /// Builds and pushes the image of the first commit of Slipway's
    /// repository, creates the secrets and deploys the stack; returns once the
    /// API and the provider answer and the runner has registered.
    pub async fn start() -> OnSwarm {
        slipway_testkit::swarm::require_swarm();
        assert!(
            docker_ok(&["image", "inspect", POSTGRES_IMAGE]),
            "{POSTGRES_IMAGE} is missing: run scripts/test-env.sh (or scripts/test.sh), which builds it"
        );
        // What an earlier run that was stopped may have left.
        let cleanup = Cleanup;
        cleanup.run();

        let dir = tempfile::tempdir().expect("temp dir");
        let gateway = gateway();
        let github = FakeGithub::start_on(gateway).await;
        let slipway_repo = GitServer::start_on(&dir.path().join("slipway"), gateway).await;
        let shop_repo = GitServer::start_on(&dir.path().join("shop"), gateway).await;
        let sha = commit_working_tree(&slipway_repo, "deploy", "Slipway");
        let shop_sha = commit_working_tree(&shop_repo, "examples/shop", "the shop");
        let image = build_image(&sha);

        let api_port = free_port();
        let provider_port = free_port();
        let shop_port = free_port();
        // What `docker stack deploy` is given, and the runner's secrets file
        // too, so that Slipway's own upgrades keep it.
        let settings = [
            ("SLIPWAY_PUBLIC_URL", PUBLIC_URL.to_owned()),
            ("SLIPWAY_POSTGRES_IMAGE", POSTGRES_IMAGE.to_owned()),
            // This kernel has no IPVS: no routing mesh, no virtual IPs.
            ("SLIPWAY_PUBLISH_MODE", "host".to_owned()),
            ("SLIPWAY_ENDPOINT_MODE", "dnsrr".to_owned()),
            // A host-mode port is one replica's per node, and this swarm has
            // one node (replicas are tested in `api`'s `replicas` and
            // `e2e`'s `replicas`).
            ("SLIPWAY_API_REPLICAS", "1".to_owned()),
            ("SLIPWAY_API_PORT", api_port.to_string()),
            ("SLIPWAY_PROVIDER_PORT", provider_port.to_string()),
            ("SLIPWAY_GITHUB_API_URL", github.url()),
        ];
        let path = dir.path();
        let jwt = path.join("jwt-secret");
        std::fs::write(&jwt, "on-swarm-jwt-secret-0123456789abcdef\n").unwrap();
        let mut runner_secrets = format!("SLIPWAY_IMAGE_REPOSITORY={IMAGE_REPOSITORY}\n");
        for (key, value) in &settings {
            runner_secrets.push_str(&format!("{key}={value}\n"));
        }
        runner_secrets.push_str(&format!("SHOP_PORT={shop_port}\n"));
        let secrets: [(&str, String); 8] = [
            ("slipway_jwt_secret", std::fs::read_to_string(&jwt).unwrap()),
            ("slipway_db_password", "on-swarm-db-password".to_owned()),
            ("slipway_runner_token", mint(&jwt, "runner", RUNNER)),
            ("slipway_provider_token", mint(&jwt, "provider", "github")),
            ("slipway_github_webhook_secret", WEBHOOK_SECRET.to_owned()),
            (
                "slipway_github_token",
                crate::system::GITHUB_TOKEN.to_owned(),
            ),
            ("slipway_runner_secrets", runner_secrets),
            ("slipway_registry_auth", "{\"auths\": {}}\n".to_owned()),
        ];
        for (name, value) in &secrets {
            let file = path.join(name);
            std::fs::write(&file, value).unwrap();
            docker(&["secret", "create", name, file.to_str().unwrap()]);
        }
        let node = docker(&["info", "--format", "{{.Swarm.NodeID}}"]);
        docker(&[
            "node",
            "update",
            "--label-add",
            &format!("{NODE_LABEL}=true"),
            node.trim(),
        ]);

        let started = Instant::now();
        let stack_file = workspace().join("deploy/stack.yml");
        let out = Command::new("docker")
            .args(["stack", "deploy", "-c"])
            .arg(&stack_file)
            .arg(STACK)
            .env("SLIPWAY_IMAGE", &image)
            .envs(settings.iter().map(|(k, v)| (k, v)))
            .output()
            .expect("docker stack deploy runs");
        assert!(
            out.status.success(),
            "docker stack deploy -c deploy/stack.yml {STACK}: {}",
            String::from_utf8_lossy(&out.stderr)
        );

        let admin = mint(&jwt, "admin", "on-swarm-admin");
        let api = Api::new(format!("http://127.0.0.1:{api_port}"), admin);
        let provider_url = format!("http://127.0.0.1:{provider_port}");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        let on_swarm = OnSwarm {
            api,
            provider_url,
            github,
            slipway_repo,
            shop_repo,
            shop_port,
            image: image.clone(),
            shop_sha,
            http,
            _cleanup: cleanup,
            dir,
        };
        on_swarm.wait_up(UP).await;
        eprintln!(
            "on_swarm: stack {STACK} up in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        on_swarm
    }

    /// Waits until the API and the provider answer and the runner is listed.
    pub async fn wait_up(&self, within: Duration) {
        wait::until("Slipway's API on the swarm to answer", within, || {
            self.api.healthy()
        })
        .await;
        wait::until(
            "Slipway's provider on the swarm to answer",
            within,
            || async {
                let r = self
                    .http
                    .get(format!("{}/healthz", self.provider_url))
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                r.status()
                    .is_success()
                    .then_some(())
                    .ok_or(r.status().to_string())
            },
        )
        .await;
        wait::until("the runner on the swarm to register", within, || async {
            let data = self.api.try_gql("{ runners { name } }", json!({})).await?;
            let listed = data["runners"]
                .as_array()
                .is_some_and(|r| r.iter().any(|r| r["name"] == RUNNER));
            listed.then_some(()).ok_or(data.to_string())
        })
        .await;
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Posts a GitHub hook signed with the webhook secret to the provider.
    pub async fn hook(&self, event: &str, delivery: &str, body: &Value) -> (u16, Value) {
        crate::system::github_hook(&self.http, &self.provider_url, event, delivery, body).await
    }

    /// `GET url` on this machine: the status and the body.
    pub async fn get(&self, url: &str) -> Result<(u16, String), String> {
        let response = self.http.get(url).send().await.map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        Ok((status, response.text().await.unwrap_or_default()))
    }
}

/// Builds Slipway's image for commit `sha` of its repository with
/// `deploy/image.sh` from the binaries under test, and pushes it; returns
/// `REPOSITORY:sha`.
pub fn build_image(sha: &str) -> String {
    let tag = format!("{IMAGE_REPOSITORY}:{sha}");
    let bin_dir = bins::path("slipway-api")
        .parent()
        .expect("the binaries' directory")
        .to_owned();
    let out = Command::new(workspace().join("deploy/image.sh"))
        .arg("--bin-dir")
        .arg(&bin_dir)
        .args(["--version", sha, &tag])
        .output()
        .expect("deploy/image.sh runs");
    assert!(
        out.status.success(),
        "deploy/image.sh {tag}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    docker(&["push", "-q", &tag]);
    tag
}

/// An image of `from` whose three binaries fail at once, as a build for the
/// wrong platform or missing a library would; pushed as `REPOSITORY:sha`.
pub fn build_broken_image(from: &str, sha: &str, dir: &Path) -> String {
    let tag = format!("{IMAGE_REPOSITORY}:{sha}");
    let context = dir.join("broken-image");
    std::fs::create_dir_all(&context).unwrap();
    std::fs::write(
        context.join("Dockerfile"),
        format!(
            "FROM {from}\nUSER root\n\
             RUN for b in slipway-api slipway-runner slipway-provider; do \
             printf '#!/bin/sh\\necho \"%s: this build is broken\" >&2\\nexit 1\\n' \"$b\" \
             >/usr/local/bin/$b; done\nUSER slipway\n"
        ),
    )
    .unwrap();
    docker(&["build", "-q", "-t", &tag, context.to_str().unwrap()]);
    docker(&["push", "-q", &tag]);
    tag
}

/// The registry digest of a pushed `tag`: `sha256:...`.
pub fn pushed_digest(tag: &str) -> String {
    let repository = tag.rsplit_once(':').map_or(tag, |(r, _)| r);
    let out = docker(&[
        "image",
        "inspect",
        "--format",
        "{{range .RepoDigests}}{{println .}}{{end}}",
        tag,
    ]);
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{repository}@")))
        .unwrap_or_else(|| panic!("no digest of {repository} for {tag}: {out}"))
        .to_owned()
}

/// The image a service's spec names: `REPOSITORY:tag@sha256:...` once pinned.
pub fn service_image(name: &str) -> String {
    slipway_testkit::swarm::inspect_service(name).unwrap_or_else(|| panic!("no service {name}"))
        ["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Ids of the running tasks of a service.
pub fn running_task_ids(name: &str) -> Vec<String> {
    docker(&[
        "service",
        "ps",
        name,
        "-q",
        "--filter",
        "desired-state=running",
    ])
    .lines()
    .map(str::to_owned)
    .collect()
}

/// The address this machine has for the swarm's containers.
fn gateway() -> IpAddr {
    let out = docker(&[
        "network",
        "inspect",
        "docker_gwbridge",
        "--format",
        "{{(index .IPAM.Config 0).Gateway}}",
    ]);
    out.trim()
        .parse()
        .unwrap_or_else(|err| panic!("the gateway of docker_gwbridge {out:?}: {err}"))
}

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_owned()
}

/// Commits directory `dir` of the working tree, at the same path, to `repo`'s
/// `main`; returns the sha.
fn commit_working_tree(repo: &GitServer, dir: &str, message: &str) -> String {
    let files = working_tree_files(dir);
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    repo.commit("main", &files, message)
}

/// The files of a directory of the working tree, as `(path, content)`.
fn working_tree_files(dir: &str) -> Vec<(String, String)> {
    let root = workspace();
    let mut out = Vec::new();
    let mut todo = vec![root.join(dir)];
    while let Some(dir) = todo.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else {
                let relative = path.strip_prefix(&root).unwrap();
                out.push((
                    relative.to_str().unwrap().to_owned(),
                    std::fs::read_to_string(&path).unwrap(),
                ));
            }
        }
    }
    out.sort();
    out
}

/// Runs `docker args`; its output, or a panic with its error.
pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("the docker CLI runs");
    assert!(
        out.status.success(),
        "docker {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn docker_ok(args: &[&str]) -> bool {
    Command::new("docker")
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Removes the stack, the stacks it deployed, its volumes, its secrets and
/// the node's label, when dropped (and before a start).
struct Cleanup;

impl Cleanup {
    fn run(&self) {
        let stacks = Command::new("docker")
            .args(["stack", "ls", "--format", "{{.Name}}"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        for stack in stacks.lines() {
            if stack == STACK || stack == SHOP_STACK {
                docker_ok(&["stack", "rm", stack]);
            }
        }
        // Volumes and secrets go once no container uses them.
        let deadline = Instant::now() + Duration::from_secs(90);
        let volumes =
            ["postgres-data", "provider-data", "runner-data"].map(|v| format!("{STACK}_{v}"));
        loop {
            let containers_left = !docker(&[
                "ps",
                "-aq",
                "--filter",
                &format!("label=com.docker.stack.namespace={STACK}"),
            ])
            .trim()
            .is_empty();
            let mut left = Vec::new();
            for volume in &volumes {
                if docker_ok(&["volume", "inspect", volume])
                    && !docker_ok(&["volume", "rm", volume])
                {
                    left.push(volume.clone());
                }
            }
            for secret in SECRETS {
                if docker_ok(&["secret", "inspect", secret])
                    && !docker_ok(&["secret", "rm", secret])
                {
                    left.push(secret.to_owned());
                }
            }
            if (left.is_empty() && !containers_left) || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        // The engine's copies of the images pushed (the registry keeps its own).
        let images = docker(&[
            "image",
            "ls",
            "-q",
            "--filter",
            &format!("reference={IMAGE_REPOSITORY}"),
        ]);
        for image in images.lines().collect::<std::collections::BTreeSet<_>>() {
            docker_ok(&["image", "rm", "-f", image]);
        }
        let node = docker(&["info", "--format", "{{.Swarm.NodeID}}"]);
        docker_ok(&["node", "update", "--label-rm", NODE_LABEL, node.trim()]);
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if std::thread::panicking() {
            report_services();
        }
        self.run();
    }
}

/// What a failed test needs to know: each service's tasks and last log lines.
fn report_services() {
    let services = docker(&["service", "ls", "--format", "{{.Name}}"]);
    for service in services
        .lines()
        .filter(|s| s.starts_with(&format!("{STACK}_")) || s.starts_with(SHOP_STACK))
    {
        for args in [
            vec!["service", "ps", "--no-trunc", service],
            vec!["service", "logs", "--tail", "40", service],
        ] {
            let out = Command::new("docker").args(&args).output();
            if let Ok(out) = out {
                eprintln!(
                    "---- docker {} ----\n{}{}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }
}

/// The stack of the shop's `local` environment when the application is
/// called `storefront`.
pub const SHOP_STACK: &str = "storefront-local";
