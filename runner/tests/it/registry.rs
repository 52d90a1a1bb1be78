//! Images in real registries (`scripts/test-env.sh`: an open one and a
//! private one with htpasswd auth over TLS, on 127.0.0.1) deployed by a real
//! runner on the real swarm: credentials, digests, and what fails before
//! anything changes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use slipway_testkit::api::{Backend, TestApi};
use slipway_testkit::free_port;
use slipway_testkit::git::Repo;
use slipway_testkit::registry::{
    self, auth_file, forget_local, push, repository, require_registries, LocalTags, OPEN, PASSWORD,
    PRIVATE, USER,
};
use slipway_testkit::runner::{start_runner_with, RunnerHandle, RunnerOptions};
use slipway_testkit::swarm::{inspect_service, running_images, stack_name, StackGuard};

const WITHIN: Duration = Duration::from_secs(180);
const LATEST: &str = "slipway-test/busybox:latest";
const V2: &str = "slipway-test/busybox:v2";

fn spec(stack: &str, extra: &str) -> String {
    format!("stack: {stack}\ncompose: docker-compose.yml\nenvironments:\n  production:\n    timeout: 2m\n{extra}")
}

/// `web` running `image`, plus `more` services.
fn compose(image: &str, more: &str) -> String {
    format!(
        r#"version: "3.8"
services:
  web:
    image: {image}
    command: ["sleep", "3600"]
    stop_grace_period: 1s
    deploy:
      replicas: 1
      update_config: {{parallelism: 1, delay: 1s, monitor: 1s}}
      restart_policy: {{delay: 1s}}
{more}"#
    )
}

/// A second service, on a local image: one a failed deployment must not create.
const WORKER: &str = r#"  worker:
    image: slipway-test/busybox:latest
    command: ["sleep", "3600"]
    stop_grace_period: 1s
"#;

struct Setup {
    api: TestApi,
    repo: Repo,
    stack: String,
    /// `<registry>/<stack>/web` in the private registry.
    private: String,
    /// The same in the open registry.
    open: String,
    auth: tempfile::TempDir,
    _tags: [LocalTags; 2],
    _guard: StackGuard,
}

async fn setup(test: &str) -> Setup {
    require_registries();
    let stack = stack_name(test);
    let (private, open) = (repository(PRIVATE, &stack), repository(OPEN, &stack));
    let api = TestApi::start(Backend::Sqlite).await;
    let repo = Repo::new();
    api.app("shop", &repo.url(), &[]).await;
    Setup {
        _guard: StackGuard::new(stack.clone()),
        _tags: [
            LocalTags::new(private.clone()),
            LocalTags::new(open.clone()),
        ],
        api,
        repo,
        stack,
        private,
        open,
        auth: tempfile::tempdir().unwrap(),
    }
}

impl Setup {
    /// A runner given `auth_file` as `--registry-auth-file`.
    async fn runner(&self, auth_file: Option<PathBuf>) -> RunnerHandle {
        start_runner_with(
            &self.api,
            "runner-1",
            RunnerOptions {
                registry_auth_file: auth_file,
                ..RunnerOptions::default()
            },
        )
        .await
    }

    /// A runner with the test user's credentials for the private registry.
    async fn runner_with_credentials(&self) -> RunnerHandle {
        self.runner(Some(auth_file(self.auth.path()))).await
    }

    fn web(&self) -> String {
        format!("{}_web", self.stack)
    }

    /// Deploys `sha` to production; the deployment once it ended.
    async fn deploy(&self, sha: &str) -> Value {
        let id = self
            .api
            .deploy_ref("shop", "production", "main", Some(sha))
            .await;
        self.api.wait_final(&id, WITHIN).await
    }
}

fn spec_image(service: &Value) -> &str {
    service["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]
        .as_str()
        .unwrap_or_default()
}

/// The ids of a service's tasks, whatever their state.
fn task_ids(service: &str) -> Vec<String> {
    let out = std::process::Command::new("docker")
        .args(["service", "ps", "-q", "--no-trunc", service])
        .output()
        .unwrap();
    let mut ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    ids.sort();
    ids
}

fn services_of(d: &Value) -> Value {
    d["services"].clone()
}

// ------------------------------------------------------------ credentials

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_image_deploys_with_the_credentials_file_and_the_node_pulls_it() {
    let s = setup("private").await;
    let image = format!("{}:main", s.private);
    let digest = push(LATEST, &image);
    // Not on this node any more: the task must pull it, with the credentials
    // the service was created with.
    forget_local(&image);
    let _runner = s.runner_with_credentials().await;
    let sha = s.repo.commit(
        &[
            ("slipway.yml", &spec(&s.stack, "")),
            ("docker-compose.yml", &compose(&image, "")),
        ],
        "a private image",
    );
    let d = s.deploy(&sha).await;
    assert_eq!(d["status"], "SUCCEEDED", "{d}");

    let pinned = format!("{image}@{digest}");
    let web = inspect_service(&s.web()).expect("web exists");
    assert_eq!(
        spec_image(&web),
        pinned,
        "pinned as docker stack deploy pins it"
    );
    assert_eq!(
        web["Spec"]["Labels"]["com.docker.stack.image"],
        image.as_str(),
        "the image as written"
    );
    let platforms = &web["Spec"]["TaskTemplate"]["Placement"]["Platforms"];
    assert_eq!(
        platforms[0]["OS"], "linux",
        "the registry's platforms: {web}"
    );
    assert_eq!(running_images(&s.web()), std::slice::from_ref(&pinned));
    assert_eq!(
        services_of(&d),
        serde_json::json!([{"name": s.web(), "image": image, "digest": digest}]),
        "the release records the digest"
    );
    let logs = d["logs"].to_string();
    assert!(logs.contains(&format!("resolved to {digest}")), "{logs}");
    assert!(
        !logs.contains(PASSWORD) && !d.to_string().contains("t3st"),
        "no password in the deployment: {d}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_registry_auth_false_sends_the_swarm_no_credentials() {
    let s = setup("noauth").await;
    let image = format!("{}:main", s.private);
    push(LATEST, &image);
    forget_local(&image);
    let _runner = s.runner_with_credentials().await;
    let sha = s.repo.commit(
        &[
            (
                "slipway.yml",
                &spec(&s.stack, "    with_registry_auth: false\n"),
            ),
            ("docker-compose.yml", &compose(&image, "")),
        ],
        "no credentials for the nodes",
    );
    let d = s.deploy(&sha).await;
    // The runner resolved the digest with its credentials; the node, sent
    // none, cannot pull.
    assert_eq!(d["status"], "FAILED", "{d}");
    let message = d["message"].as_str().unwrap();
    assert!(
        message.starts_with("rolled back:") && message.contains("No such image"),
        "{message}"
    );
    assert!(d["logs"].to_string().contains("resolved to sha256:"), "{d}");
    assert!(
        inspect_service(&s.web()).is_none(),
        "the new service is gone"
    );
}

/// Deploys a local `web` first, then a commit whose `web` runs `image` next
/// to a new `worker`: the deployment fails before anything changed, and its
/// message names the image, the registry and each of `answer`.
async fn fails_before_anything_changes(
    s: &Setup,
    image: &str,
    registry: &str,
    answer: &[&str],
) -> String {
    let first = s.repo.commit(
        &[
            ("slipway.yml", &spec(&s.stack, "")),
            ("docker-compose.yml", &compose(LATEST, "")),
        ],
        "a local image",
    );
    assert_eq!(s.deploy(&first).await["status"], "SUCCEEDED");
    let before = inspect_service(&s.web()).unwrap();

    let bad = s.repo.commit(
        &[("docker-compose.yml", &compose(image, WORKER))],
        "an image that cannot be resolved",
    );
    let d = s.deploy(&bad).await;
    assert_eq!(d["status"], "FAILED", "{d}");
    let message = d["message"].as_str().unwrap().to_owned();
    assert!(message.starts_with("nothing was changed"), "{message}");
    assert!(
        message.contains(&format!("image {image} "))
            && message.contains(&format!("registry {registry}")),
        "names the image and the registry: {message}"
    );
    for part in answer {
        assert!(message.contains(part), "{part:?} in {message}");
    }
    assert!(!d.to_string().contains(PASSWORD), "{d}");
    let after = inspect_service(&s.web()).unwrap();
    assert_eq!(before["Version"], after["Version"], "web was not updated");
    assert_eq!(spec_image(&after), LATEST);
    assert!(
        inspect_service(&format!("{}_worker", s.stack)).is_none(),
        "worker was not created"
    );
    message
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_image_without_credentials_fails_before_anything_changes() {
    let s = setup("nocreds").await;
    let image = format!("{}:main", s.private);
    push(LATEST, &image);
    let _runner = s.runner(None).await;
    let message = fails_before_anything_changes(
        &s,
        &image,
        PRIVATE,
        &["no basic auth credentials", "--registry-auth-file"],
    )
    .await;
    assert!(message.contains("asked without credentials"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_fails_before_anything_changes() {
    let s = setup("wrongpass").await;
    let image = format!("{}:main", s.private);
    push(LATEST, &image);
    let file = registry::docker_config(s.auth.path(), &[(PRIVATE, USER, "not-the-password")]);
    let _runner = s.runner(Some(file.clone())).await;
    let message = fails_before_anything_changes(
        &s,
        &image,
        PRIVATE,
        &["unauthorized", &format!("user {USER}")],
    )
    .await;
    assert!(
        !message.contains("not-the-password"),
        "the password is not shown: {message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_registry_fails_before_anything_changes() {
    let s = setup("unreach").await;
    let nobody = format!("127.0.0.1:{}", free_port());
    let image = format!("{nobody}/shop/web:main");
    let _runner = s.runner_with_credentials().await;
    fails_before_anything_changes(&s, &image, &nobody, &["connection refused"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_that_does_not_exist_fails_before_anything_changes() {
    let s = setup("notag").await;
    push(LATEST, &format!("{}:main", s.private));
    let image = format!("{}:no-such-tag", s.private);
    let _runner = s.runner_with_credentials().await;
    fails_before_anything_changes(&s, &image, PRIVATE, &["manifest unknown"]).await;
}

// ------------------------------------------------------------ digests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_tag_rolls_out_and_an_unchanged_one_changes_nothing() {
    let s = setup("moved").await;
    let image = format!("{}:main", s.open);
    let first = push(LATEST, &image);
    let _runner = s.runner(None).await;
    let sha = s.repo.commit(
        &[
            ("slipway.yml", &spec(&s.stack, "")),
            ("docker-compose.yml", &compose(&image, "")),
        ],
        "main",
    );
    let d = s.deploy(&sha).await;
    assert_eq!(d["status"], "SUCCEEDED", "{d}");
    assert_eq!(running_images(&s.web()), [format!("{image}@{first}")]);
    assert_eq!(d["services"][0]["digest"], first.as_str());

    // CI pushed a new image under the same tag: the same commit rolls it out.
    let second = push(V2, &image);
    assert_ne!(first, second);
    let d = s.deploy(&sha).await;
    assert_eq!(d["status"], "SUCCEEDED", "{d}");
    assert!(d["message"].as_str().unwrap().contains("converged"), "{d}");
    let pinned = format!("{image}@{second}");
    assert_eq!(spec_image(&inspect_service(&s.web()).unwrap()), pinned);
    slipway_testkit::swarm::wait_running(&s.web(), &pinned, 1, WITHIN).await;
    assert_eq!(
        d["services"][0]["digest"],
        second.as_str(),
        "the release records the new digest"
    );

    // The tag did not move: nothing changes.
    let before = inspect_service(&s.web()).unwrap();
    let tasks = task_ids(&s.web());
    let d = s.deploy(&sha).await;
    assert_eq!(d["status"], "SUCCEEDED", "{d}");
    assert!(d["message"].as_str().unwrap().contains("unchanged"), "{d}");
    let after = inspect_service(&s.web()).unwrap();
    assert_eq!(spec_image(&after), pinned);
    assert_eq!(
        before["Spec"]["TaskTemplate"], after["Spec"]["TaskTemplate"],
        "the same task spec"
    );
    assert_eq!(task_ids(&s.web()), tasks, "no task replaced");
    assert_eq!(d["services"][0]["digest"], second.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolve_image_changed_asks_only_for_new_and_changed_images() {
    let s = setup("changed").await;
    let image = format!("{}:main", s.open);
    let first = push(LATEST, &image);
    let _runner = s.runner(None).await;
    let settings = "    resolve_image: changed\n";
    let sha = s.repo.commit(
        &[
            ("slipway.yml", &spec(&s.stack, settings)),
            ("docker-compose.yml", &compose(&image, "")),
        ],
        "main",
    );
    let d = s.deploy(&sha).await;
    assert_eq!(d["status"], "SUCCEEDED", "{d}");
    let pinned = format!("{image}@{first}");
    assert_eq!(
        spec_image(&inspect_service(&s.web()).unwrap()),
        pinned,
        "a new service is resolved"
    );

    // The tag moved, but the image as written did not change: it keeps what
    // it runs, as `docker stack deploy --resolve-image changed` does.
    push(V2, &image);
    let before = inspect_service(&s.web()).unwrap();
    let d = s.deploy(&sha).await;
    assert_eq!(d["status"], "SUCCEEDED", "{d}");
    assert!(d["message"].as_str().unwrap().contains("unchanged"), "{d}");
    let after = inspect_service(&s.web()).unwrap();
    assert_eq!(spec_image(&after), pinned);
    assert_eq!(
        before["Spec"]["TaskTemplate"],
        after["Spec"]["TaskTemplate"]
    );
    assert_eq!(d["services"][0]["digest"], first.as_str());

    // A changed image is resolved.
    let next = format!("{}:next", s.open);
    let digest = push(V2, &next);
    let sha = s
        .repo
        .commit(&[("docker-compose.yml", &compose(&next, ""))], "next");
    let d = s.deploy(&sha).await;
    assert_eq!(d["status"], "SUCCEEDED", "{d}");
    assert_eq!(
        spec_image(&inspect_service(&s.web()).unwrap()),
        format!("{next}@{digest}")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolve_image_never_deploys_as_written_and_keeps_what_runs() {
    let s = setup("never").await;
    let image = format!("{}:main", s.open);
    let first = push(LATEST, &image);
    let _runner = s.runner(None).await;
    let never = "    resolve_image: never\n";
    let sha = s.repo.commit(
        &[
            ("slipway.yml", &spec(&s.stack, never)),
            ("docker-compose.yml", &compose(&image, "")),
        ],
        "never",
    );
    let d = s.deploy(&sha).await;
    assert_eq!(d["status"], "SUCCEEDED", "{d}");
    let web = inspect_service(&s.web()).unwrap();
    assert_eq!(spec_image(&web), image, "unpinned");
    assert!(web["Spec"]["TaskTemplate"]["Placement"]["Platforms"].is_null());
    assert_eq!(d["services"][0]["digest"], Value::Null);

    // Pinned once...
    let sha = s
        .repo
        .commit(&[("slipway.yml", &spec(&s.stack, ""))], "always");
    let d = s.deploy(&sha).await;
    assert_eq!(d["status"], "SUCCEEDED", "{d}");
    let pinned = format!("{image}@{first}");
    assert_eq!(spec_image(&inspect_service(&s.web()).unwrap()), pinned);

    // ...`never` keeps the pin of an unchanged image, tag moved or not.
    push(V2, &image);
    let sha = s
        .repo
        .commit(&[("slipway.yml", &spec(&s.stack, never))], "never again");
    let d = s.deploy(&sha).await;
    assert_eq!(d["status"], "SUCCEEDED", "{d}");
    assert!(d["message"].as_str().unwrap().contains("unchanged"), "{d}");
    assert_eq!(spec_image(&inspect_service(&s.web()).unwrap()), pinned);
}

// ------------------------------------------------------------ plan --diff

/// `slipway-runner plan --diff` of `repo` at `sha`, with `auth` as its
/// `--registry-auth-file`.
fn plan_diff(repo: &Repo, sha: &str, auth: &Path) -> Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_slipway-runner"))
        .args(["plan", "--repo"])
        .arg(repo.path())
        .args([
            "--ref",
            sha,
            "--environment",
            "production",
            "--application",
            "shop",
            "--diff",
            "--registry-auth-file",
        ])
        .arg(auth)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_diff_shows_a_moved_tag_as_a_change() {
    let s = setup("plandiff").await;
    let image = format!("{}:main", s.private);
    push(LATEST, &image);
    let auth = auth_file(s.auth.path());
    let _runner = s.runner(Some(auth.clone())).await;
    let sha = s.repo.commit(
        &[
            ("slipway.yml", &spec(&s.stack, "")),
            ("docker-compose.yml", &compose(&image, "")),
        ],
        "main",
    );
    assert_eq!(s.deploy(&sha).await["status"], "SUCCEEDED");
    let same = plan_diff(&s.repo, &sha, &auth);
    assert_eq!(same["services"][0]["action"], "unchanged", "{same}");

    push(V2, &image);
    let moved = plan_diff(&s.repo, &sha, &auth);
    let web = &moved["services"][0];
    assert_eq!(web["action"], "update", "{moved}");
    assert_eq!(
        web["changes"],
        serde_json::json!(["/TaskTemplate/ContainerSpec/Image"]),
        "{moved}"
    );
}
