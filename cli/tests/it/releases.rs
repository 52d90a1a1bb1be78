//! `releases`, `rollback`, `resume` and `status --against` against the real
//! API in-process. Releases are made as a runner makes them: a deployment
//! claimed and finished with a runner's token, with the images it ran.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use slipway_api::auth::Role;
use slipway_api::{Clock, Settings};
use slipway_testkit::api::{Backend, TestApi};
use slipway_testkit::wait;

use crate::harness::{command, Out};

const RUNNER: &str = "runner-1";

/// A 40-character commit id made of `n`.
fn sha(n: u8) -> String {
    format!("{n:x}").repeat(40)
}

/// A `slipway` command against `server`, with a deployer's token for `alice`.
fn slipway_command(server: &TestApi, args: &[&str]) -> std::process::Command {
    let mut command = command();
    command
        .env("SLIPWAY_API_URL", server.base_url())
        .env("SLIPWAY_TOKEN", server.token(Role::Deployer, "alice"))
        .args(args);
    command
}

/// Runs `slipway args...` against `server` (see [`slipway_command`]).
async fn slipway(server: &TestApi, args: &[&str]) -> Out {
    let mut command = slipway_command(server, args);
    tokio::task::spawn_blocking(move || Out::from(command.output().expect("slipway runs")))
        .await
        .unwrap()
}

/// Runs `slipway args...` against `server` with `token`.
async fn slipway_as(server: &TestApi, token: &str, args: &[&str]) -> Out {
    let mut command = slipway_command(server, args);
    command.env("SLIPWAY_TOKEN", token);
    tokio::task::spawn_blocking(move || Out::from(command.output().expect("slipway runs")))
        .await
        .unwrap()
}

/// The rows of a table `slipway` printed: cells are apart by two spaces or more.
fn rows(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .map(|line| {
            line.split("  ")
                .map(str::trim)
                .filter(|cell| !cell.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .collect()
}

/// The row whose first cell is `first`.
fn row(text: &str, first: &str) -> Vec<String> {
    rows(text)
        .into_iter()
        .find(|row| row.first().map(String::as_str) == Some(first))
        .unwrap_or_else(|| panic!("no row {first:?} in:\n{text}"))
}

/// Application `web` on GitHub.
async fn github_app(server: &TestApi, environments: &[(&str, Option<&str>, Option<&str>)]) {
    server
        .app("web", "https://github.com/acme/web.git", environments)
        .await;
}

/// A service of environment `env`'s stack, as the runner reports it.
fn service(env: &str, name: &str, image: &str, digest: Option<&str>) -> Value {
    json!({"name": format!("web-{env}_{name}"), "image": image, "digest": digest})
}

/// Deploys `sha` to `env` as `by` and finishes it with `status`, running
/// `services` when it succeeded; returns its id.
async fn deployed(
    server: &TestApi,
    env: &str,
    sha: &str,
    by: &str,
    status: &str,
    services: Value,
) -> String {
    let created = server
        .ok(
            &server.token(Role::Deployer, by),
            "mutation($input: CreateDeploymentInput!) { createDeployment(input: $input) { id } }",
            json!({"input": {"application": "web", "environment": env, "ref": "main", "sha": sha}}),
        )
        .await;
    let id = created["createDeployment"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    finished(server, &id, status, services).await;
    id
}

/// Claims deployment `id` and finishes it as [`RUNNER`].
async fn finished(server: &TestApi, id: &str, status: &str, services: Value) {
    server.claim_ok(RUNNER, id).await;
    server
        .ok(
            &server.token(Role::Runner, RUNNER),
            "mutation($id: ID!, $status: DeploymentStatus!, $s: [ServiceImageInput!]) {
                finishDeployment(id: $id, status: $status, message: \"done\", services: $s) { id } }",
            json!({"id": id, "status": status,
                   "s": if status == "SUCCEEDED" { services } else { Value::Null }}),
        )
        .await;
}

/// Three releases of production, web#1 to web#3, at commits 1 to 3.
async fn three_releases(server: &TestApi) {
    github_app(server, &[("production", Some("main"), None)]).await;
    for n in 1..=3 {
        let digest = format!("sha256:{}", sha(n));
        deployed(
            server,
            "production",
            &sha(n),
            "deployer",
            "SUCCEEDED",
            json!([service("production", "web", "acme/web:main", Some(&digest))]),
        )
        .await;
    }
}

const ENVIRONMENT: &str = "query { application(name: \"web\") { environment(name: \"production\") {
    autoDeployPause { pausedBy reason rollback { number } } } } }";

async fn pause(server: &TestApi) -> Value {
    server.ok_as(Role::Viewer, ENVIRONMENT, json!({})).await["application"]["environment"]
        ["autoDeployPause"]
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn releases_lists_newest_first_what_changed_who_when_and_how_long_it_served() {
    let start = chrono::Utc::now() - chrono::Duration::days(30);
    let start = start.date_naive().and_hms_opt(10, 0, 0).unwrap().and_utc();
    let clock = Clock::manual(start);
    let server = TestApi::start_with(Backend::Sqlite, clock.clone(), Settings::default()).await;
    github_app(&server, &[("production", None, None)]).await;
    let images = |web: &str, worker: &str, cache: &str| {
        json!([
            service("production", "web", "acme/web:main", Some(web)),
            service("production", "worker", "acme/worker:main", Some(worker)),
            // A local image: no digest, so its image is what is compared.
            service("production", "cache", cache, None),
        ])
    };
    deployed(
        &server,
        "production",
        &sha(1),
        "alice",
        "SUCCEEDED",
        images("sha256:a", "sha256:b", "redis:7"),
    )
    .await;
    clock.advance(chrono::Duration::hours(2));
    deployed(&server, "production", &sha(2), "bob", "FAILED", Value::Null).await;
    deployed(
        &server,
        "production",
        &sha(3),
        "bob",
        "SUCCEEDED",
        images("sha256:c", "sha256:b", "redis:8"),
    )
    .await;
    clock.advance(chrono::Duration::days(3) + chrono::Duration::hours(4));
    deployed(
        &server,
        "production",
        &sha(4),
        "carol",
        "SUCCEEDED",
        images("sha256:c", "sha256:b", "redis:8"),
    )
    .await;

    let out = slipway(&server, &["releases", "web", "production"])
        .await
        .ok();
    let table = rows(&out.stdout);
    assert_eq!(
        table[0],
        [
            "RELEASE",
            "SHA",
            "TASK",
            "IMAGES CHANGED",
            "BY",
            "DEPLOYED",
            "SERVED"
        ],
        "{out:#?}"
    );
    let at = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%d %H:%M:%S").to_string();
    let second = start + chrono::Duration::hours(2);
    let third = second + chrono::Duration::days(3) + chrono::Duration::hours(4);
    assert_eq!(
        table[1..],
        [
            vec![
                "web#4",
                &sha(4)[..7],
                "deploy",
                "—",
                "carol",
                &at(third),
                "serving"
            ],
            vec![
                "web#3",
                &sha(3)[..7],
                "deploy",
                "web, cache",
                "bob",
                &at(second),
                "3d 4h"
            ],
            vec![
                "web#1",
                &sha(1)[..7],
                "deploy",
                "all (first)",
                "alice",
                &at(start),
                "2h 0m"
            ],
        ],
        "newest first, the failed web#2 is no release: {out:#?}"
    );

    // A page, and the note that there is more.
    let out = slipway(&server, &["releases", "web", "production", "--limit", "2"])
        .await
        .ok();
    let names: Vec<String> = rows(&out.stdout)[1..3]
        .iter()
        .map(|r| r[0].clone())
        .collect();
    assert_eq!(names, ["web#4", "web#3"], "{out:#?}");
    assert!(out.stdout.contains("older ones not shown"), "{out:#?}");
    assert_eq!(
        row(&out.stdout, "web#3")[3],
        "web, cache",
        "the oldest shown is compared with the release before it: {out:#?}"
    );

    // The API's objects, for scripts.
    let json = slipway(&server, &["-o", "json", "releases", "web", "production"])
        .await
        .ok()
        .json();
    let numbers: Vec<i64> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["deployment"]["number"].as_i64().unwrap())
        .collect();
    assert_eq!(numbers, [4, 3, 1]);
    assert_eq!(json[0]["createdBy"], "carol");
    assert_eq!(json[0]["services"][0]["name"], "web-production_web");

    // At most what the API gives in one page.
    let out = slipway(
        &server,
        &["releases", "web", "production", "--limit", "101"],
    )
    .await
    .failed();
    assert!(out.stderr.contains("1..=100"), "{out:#?}");

    let missing = slipway(&server, &["releases", "web", "staging"])
        .await
        .failed();
    assert!(
        missing
            .stderr
            .contains("NOT_FOUND: web has no environment named \"staging\""),
        "{missing:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_queues_the_release_before_the_current_one_or_the_one_to_names() {
    let server = TestApi::start(Backend::Sqlite).await;
    three_releases(&server).await;

    let out = slipway(
        &server,
        &[
            "rollback",
            "web",
            "production",
            "--reason",
            "checkout errors",
        ],
    )
    .await
    .ok();
    let first = out.stdout.lines().next().unwrap_or_default();
    assert_eq!(
        first,
        format!(
            "queued web#4: roll back production to web#2 ({})",
            &sha(2)[..7]
        ),
        "{out:#?}"
    );
    assert!(out.stdout.contains("reason: checkout errors"), "{out:#?}");
    assert!(
        out.stdout.contains("`slipway resume web production`"),
        "{out:#?}"
    );
    let queued = &server.deployments().await[0];
    assert_eq!(queued["name"], "web#4");
    assert_eq!(queued["task"], "rollback");
    assert_eq!(queued["status"], "QUEUED");
    assert_eq!(queued["sha"], sha(2));
    assert_eq!(queued["createdBy"], "alice");

    // `--to` names any release, with or without the application's name.
    let json = slipway(
        &server,
        &[
            "-o",
            "json",
            "rollback",
            "web",
            "production",
            "--to",
            "1",
            "--reason",
            "older",
        ],
    )
    .await
    .ok()
    .json();
    assert_eq!(json["name"], "web#5");
    assert_eq!(json["task"], "rollback");
    assert_eq!(json["sha"], sha(1));
    assert_eq!(json["restores"]["deployment"]["name"], "web#1");
    let out = slipway(
        &server,
        &[
            "rollback",
            "web",
            "production",
            "--to",
            "web#3",
            "--reason",
            "newer",
        ],
    )
    .await
    .ok();
    assert!(
        out.stdout.starts_with(&format!(
            "queued web#6: roll back production to web#3 ({})",
            &sha(3)[..7]
        )),
        "{out:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_without_an_earlier_release_is_the_apis_conflict() {
    let server = TestApi::start(Backend::Sqlite).await;
    github_app(&server, &[("production", None, None)]).await;
    deployed(
        &server,
        "production",
        &sha(1),
        "deployer",
        "SUCCEEDED",
        json!([service(
            "production",
            "web",
            "acme/web:main",
            Some("sha256:a")
        )]),
    )
    .await;

    let out = slipway(
        &server,
        &["rollback", "web", "production", "--reason", "why"],
    )
    .await
    .failed();
    assert_eq!(out.status.code(), Some(1), "{out:#?}");
    assert_eq!(
        out.stderr.trim(),
        "error: CONFLICT: `production` of `web` has no release before web#1 to roll back to",
        "{out:#?}"
    );
    assert!(out.stdout.is_empty(), "{out:#?}");
    let out = slipway(
        &server,
        &[
            "-o",
            "json",
            "rollback",
            "web",
            "production",
            "--reason",
            "why",
        ],
    )
    .await
    .failed();
    let error: Value = serde_json::from_str(out.stderr.trim()).unwrap();
    assert_eq!(error["error"]["code"], "CONFLICT", "{out:#?}");

    // A release that is not one of this environment's, and one that does not exist.
    let out = slipway(
        &server,
        &[
            "rollback",
            "web",
            "production",
            "--to",
            "web#9",
            "--reason",
            "why",
        ],
    )
    .await
    .failed();
    assert!(
        out.stderr
            .contains("NOT_FOUND: deployment web#9 does not exist"),
        "{out:#?}"
    );
    assert_eq!(server.deployments().await.len(), 1, "nothing was queued");
    assert!(pause(&server).await.is_null(), "nothing was paused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_follow_exits_by_how_the_rollback_ended() {
    let server = TestApi::start(Backend::Sqlite).await;
    three_releases(&server).await;

    for (ends, code, number) in [("SUCCEEDED", 0, 4), ("FAILED", 1, 5)] {
        let mut command = slipway_command(
            &server,
            &[
                "rollback",
                "web",
                "production",
                "--reason",
                "why",
                "--follow",
            ],
        );
        let child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("slipway runs");
        let name = format!("web#{number}");
        let queued = wait::until_every(
            Duration::from_millis(50),
            "the rollback to be queued",
            Duration::from_secs(20),
            || async {
                let newest = server.deployments().await.into_iter().next();
                match newest {
                    Some(d) if d["name"] == name.as_str() => Ok(d),
                    other => Err(format!("newest: {other:?}")),
                }
            },
        )
        .await;
        assert_eq!(queued["task"], "rollback");
        let id = queued["id"].as_str().unwrap();
        let services = json!([service(
            "production",
            "web",
            "acme/web:main",
            Some("sha256:2")
        )]);
        finished(&server, id, ends, services).await;
        let out = tokio::task::spawn_blocking(move || {
            Out::from(child.wait_with_output().expect("slipway ends"))
        })
        .await
        .unwrap();
        assert_eq!(out.status.code(), Some(code), "{ends}: {out:#?}");
        assert!(
            out.stdout
                .starts_with(&format!("queued {name}: roll back production to web#")),
            "{out:#?}"
        );
        let last = out.stdout.lines().last().unwrap_or_default();
        assert!(last.contains(&format!("{name} {ends}")), "{out:#?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_lets_pushes_deploy_again() {
    let server = TestApi::start(Backend::Sqlite).await;
    three_releases(&server).await;
    slipway(
        &server,
        &["rollback", "web", "production", "--reason", "why"],
    )
    .await
    .ok();
    let push = json!({"input": {"application": "web", "environment": "production",
        "ref": "main", "sha": sha(3), "autoDeploy": true}});
    let create =
        "mutation($input: CreateDeploymentInput!) { createDeployment(input: $input) { id } }";
    let provider = server.token(Role::Provider, "github");
    let (code, _) = server.err(&provider, create, push.clone()).await;
    assert_eq!(code, "CONFLICT", "paused by the rollback");

    let out = slipway(&server, &["resume", "web", "production"])
        .await
        .ok();
    assert_eq!(
        out.stdout.trim(),
        "auto-deploys of production of web resumed: pushes to main deploy here again",
        "{out:#?}"
    );
    assert!(pause(&server).await.is_null());
    assert!(server.ok(&provider, create, push).await["createDeployment"]["id"].is_string());

    let json = slipway(&server, &["-o", "json", "resume", "web", "production"])
        .await
        .ok()
        .json();
    assert_eq!(json["name"], "production");
    assert!(json["autoDeployPause"].is_null(), "{json}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_an_auto_deploy_pause_with_who_and_why() {
    let server = TestApi::start(Backend::Sqlite).await;
    three_releases(&server).await;
    let before = slipway(&server, &["status", "web"]).await.ok();
    assert!(!before.stdout.contains("paused"), "{before:#?}");

    slipway(
        &server,
        &[
            "rollback",
            "web",
            "production",
            "--reason",
            "checkout errors since web#3",
        ],
    )
    .await
    .ok();
    let out = slipway(&server, &["status", "web"]).await.ok();
    let line = out
        .stdout
        .lines()
        .find(|l| l.starts_with("web production: auto-deploys paused"))
        .unwrap_or_else(|| panic!("no pause line: {out:#?}"));
    assert!(line.contains("paused by alice at "), "{line}");
    assert!(
        line.contains(" (rollback web#4): checkout errors since web#3;"),
        "{line}"
    );
    assert!(
        line.ends_with("`slipway resume web production` lets them deploy again"),
        "{line}"
    );

    let json = slipway(&server, &["-o", "json", "status", "web"])
        .await
        .ok()
        .json();
    let pause = &json["applications"][0]["environments"][0]["autoDeployPause"];
    assert_eq!(pause["pausedBy"], "alice");
    assert_eq!(pause["reason"], "checkout errors since web#3");
    assert_eq!(pause["rollback"]["name"], "web#4");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_against_an_environment_shows_other_images_commits_and_compare_urls() {
    let server = TestApi::start(Backend::Sqlite).await;
    github_app(
        &server,
        &[
            ("production", None, None),
            ("staging", None, None),
            ("local", None, None),
            ("dev", None, None),
        ],
    )
    .await;
    let images = |env: &str, web: &str, worker: &str| {
        json!([
            service(env, "web", "acme/web:main", Some(web)),
            service(env, "worker", "acme/worker:main", Some(worker)),
        ])
    };
    deployed(
        &server,
        "production",
        &sha(1),
        "deployer",
        "SUCCEEDED",
        images("production", "sha256:a", "sha256:b"),
    )
    .await;
    deployed(
        &server,
        "staging",
        &sha(2),
        "deployer",
        "SUCCEEDED",
        images("staging", "sha256:a", "sha256:c"),
    )
    .await;
    deployed(
        &server,
        "local",
        &sha(1),
        "deployer",
        "SUCCEEDED",
        images("local", "sha256:a", "sha256:b"),
    )
    .await;

    let out = slipway(&server, &["status", "web", "--against", "production"])
        .await
        .ok();
    assert!(
        out.stdout.contains(&format!(
            "compared with production (web#1, {}):",
            &sha(1)[..7]
        )),
        "{out:#?}"
    );
    assert_eq!(
        row(&out.stdout, "staging")[1..],
        [
            "web#2".to_owned(),
            "different commit".to_owned(),
            "worker".to_owned(),
            format!(
                "https://github.com/acme/web/compare/{}...{}",
                sha(1),
                sha(2)
            ),
        ],
        "{out:#?}"
    );
    assert_eq!(
        row(&out.stdout, "local")[1..],
        ["web#3", "same commit", "—"],
        "{out:#?}"
    );
    assert_eq!(
        row(&out.stdout, "dev")[1..],
        ["-", "no release"],
        "{out:#?}"
    );

    let json = slipway(
        &server,
        &["-o", "json", "status", "web", "--against", "production"],
    )
    .await
    .ok()
    .json();
    let against = &json["against"];
    assert_eq!(against["environment"], "production");
    assert_eq!(against["release"], "web#1");
    let staging = against["environments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["environment"] == "staging")
        .unwrap();
    assert_eq!(staging["sameCommit"], false);
    assert_eq!(staging["differentImages"][0]["service"], "worker");
    assert_eq!(staging["differentImages"][0]["here"]["digest"], "sha256:c");
    assert_eq!(staging["differentImages"][0]["base"]["digest"], "sha256:b");

    let unknown = slipway(&server, &["status", "web", "--against", "prod"])
        .await
        .failed();
    assert!(
        unknown
            .stderr
            .contains("NOT_FOUND: web has no environment named \"prod\""),
        "{unknown:#?}"
    );
}

/// Deploys `sha` to `env` as a runner does, reporting `commits` (`(sha,
/// parents)`; `None` for parents not known) on the way.
async fn deployed_with_commits(
    server: &TestApi,
    env: &str,
    sha: &str,
    commits: &[(String, Option<Vec<String>>)],
) {
    let id = server.deploy_ref("web", env, "main", Some(sha)).await;
    server.claim_ok(RUNNER, &id).await;
    let commits: Vec<Value> = commits
        .iter()
        .map(|(sha, parents)| json!({"sha": sha, "parents": parents}))
        .collect();
    server
        .ok(
            &server.token(Role::Runner, RUNNER),
            "mutation($id: ID!, $c: [CommitInput!]!) { reportDeploymentCommits(id: $id, commits: $c) }",
            json!({"id": id, "c": commits}),
        )
        .await;
    server.finish(RUNNER, &id, "SUCCEEDED").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_against_an_environment_shows_how_many_commits_behind_the_others_are() {
    let server = TestApi::start(Backend::Sqlite).await;
    github_app(
        &server,
        &[
            ("production", None, None),
            ("staging", None, None),
            ("hotfix", None, None),
            ("local", None, None),
        ],
    )
    .await;
    // 1 - 2 - 3     staging; production runs 1; hotfix runs 4, a merge of 1
    //  \            and 6, a commit the API never heard of.
    //   4
    deployed_with_commits(&server, "production", &sha(1), &[(sha(1), Some(vec![]))]).await;
    deployed_with_commits(
        &server,
        "staging",
        &sha(3),
        &[(sha(3), Some(vec![sha(2)])), (sha(2), Some(vec![sha(1)]))],
    )
    .await;
    deployed_with_commits(
        &server,
        "hotfix",
        &sha(4),
        &[(sha(4), Some(vec![sha(1), sha(6)]))],
    )
    .await;
    // A release whose commit was never reported.
    deployed(
        &server,
        "local",
        &sha(7),
        "deployer",
        "SUCCEEDED",
        json!([]),
    )
    .await;

    let out = slipway(&server, &["status", "web", "--against", "staging"])
        .await
        .ok();
    assert_eq!(
        row(&out.stdout, "production")[1..3],
        ["web#1", "2 commits behind"],
        "{out:#?}"
    );
    assert_eq!(
        row(&out.stdout, "hotfix")[1..3],
        ["web#3", "at least 2 behind, 1 ahead"],
        "6's history is not known: {out:#?}"
    );
    assert_eq!(
        row(&out.stdout, "local")[1..3],
        ["web#4", "different commit"],
        "{out:#?}"
    );

    let out = slipway(&server, &["status", "web", "--against", "production"])
        .await
        .ok();
    assert_eq!(
        row(&out.stdout, "staging")[1..3],
        ["web#2", "2 commits ahead"],
        "{out:#?}"
    );

    let json = slipway(
        &server,
        &["-o", "json", "status", "web", "--against", "staging"],
    )
    .await
    .ok()
    .json();
    let environment = |name: &str| {
        json["against"]["environments"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["environment"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(
        environment("production")["commits"],
        json!({"behind": 2, "ahead": 0, "exact": true})
    );
    assert_eq!(
        environment("hotfix")["commits"],
        json!({"behind": 2, "ahead": 1, "exact": false})
    );
    assert!(environment("local")["commits"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_lists_what_was_done_for_admins_only() {
    let server = TestApi::start(Backend::Sqlite).await;
    github_app(&server, &[("production", None, None)]).await;
    let locked = slipway(
        &server,
        &[
            "env",
            "lock",
            "web",
            "production",
            "--reason",
            "db migration",
        ],
    )
    .await
    .ok();
    assert!(locked.stdout.contains("locked"), "{locked:#?}");

    let admin = server.token(Role::Admin, "ada");
    let listed = slipway_as(&server, &admin, &["audit", "--application", "web"])
        .await
        .ok();
    let lock = &rows(&listed.stdout)[1];
    assert_eq!(
        lock[1..],
        [
            "alice",
            "deployer",
            "GRAPHQL",
            "lockEnvironment",
            "web production",
            "127.0.0.1",
            "OK"
        ]
    );
    assert!(
        listed.stdout.contains("createEnvironment"),
        "{}",
        listed.stdout
    );

    let json = slipway_as(
        &server,
        &admin,
        &["--output", "json", "audit", "--actor", "alice"],
    )
    .await
    .ok();
    let entries: Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(entries.as_array().unwrap().len(), 1, "{entries}");
    assert!(entries[0]["arguments"]
        .as_str()
        .unwrap()
        .contains("db migration"));

    let refused = slipway(&server, &["audit"]).await.failed();
    assert!(refused.stderr.contains("FORBIDDEN"), "{refused:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_are_set_listed_and_removed() {
    let server = TestApi::start(Backend::Sqlite).await;
    github_app(&server, &[("production", None, None)]).await;
    let admin = server.token(Role::Admin, "ada");
    let env = ["web", "production"];
    let slack = "https://hooks.slack.com/services/T0/B0/s3cr3t";

    let set = slipway_as(
        &server,
        &admin,
        &[
            &["env", "notify"][..],
            &env,
            &["--webhook", "http://127.0.0.1:9/hooks/x"],
        ]
        .concat(),
    )
    .await
    .ok();
    assert!(
        set.stdout.contains(
            "WEBHOOK http://127.0.0.1:9/… told STARTED, SUCCEEDED, FAILED, ROLLED_BACK, CANCELLED"
        ),
        "{set:#?}"
    );
    assert!(
        set.stdout.contains("signing secret (shown this once"),
        "{set:#?}"
    );
    assert!(set.stdout.contains("whsec_"), "{set:#?}");
    slipway_as(
        &server,
        &admin,
        &[
            &["env", "notify"][..],
            &env,
            &["--slack", slack, "--events", "failed,rolled-back"],
        ]
        .concat(),
    )
    .await
    .ok();
    let sentry = slipway_as(
        &server,
        &admin,
        &[
            &["env", "notify"][..],
            &env,
            &[
                "--sentry",
                "https://sentry.io/organizations/acme/projects/web/",
            ],
        ]
        .concat(),
    )
    .await
    .failed();
    assert!(sentry.stderr.contains("needs a token"), "{sentry:#?}");

    let listed = slipway_as(
        &server,
        &admin,
        &[&["env", "notifications"][..], &env].concat(),
    )
    .await
    .ok();
    assert!(!listed.stdout.contains("s3cr3t"), "{}", listed.stdout);
    let table = rows(&listed.stdout);
    assert_eq!(table.len(), 3, "{}", listed.stdout);
    assert_eq!(
        table[2][1..5],
        [
            "SLACK",
            "https://hooks.slack.com/…",
            "FAILED,ROLLED_BACK",
            "on"
        ]
    );
    let id = table[2][0].clone();
    let removed = slipway_as(&server, &admin, &["env", "unnotify", &id])
        .await
        .ok();
    assert!(removed.stdout.contains("removed"), "{removed:#?}");
    let listed = slipway_as(
        &server,
        &admin,
        &[&["env", "notifications"][..], &env].concat(),
    )
    .await
    .ok();
    assert_eq!(rows(&listed.stdout).len(), 2, "{}", listed.stdout);

    let refused = slipway(&server, &[&["env", "notifications"][..], &env].concat())
        .await
        .failed();
    assert!(refused.stderr.contains("FORBIDDEN"), "{refused:#?}");
}
