//! The commit graph: commits a runner reports while deploying, and how many
//! commits one environment's release is behind and ahead of another's.

use serde_json::{json, Value};
use slipway_api::auth::Role;

use slipway_testkit::api::{Backend, TestApi};

const RUNNER: &str = "runner-1";

/// A full commit id named after `name`.
fn sha(name: &str) -> String {
    let hex: String = name.bytes().map(|b| format!("{b:02x}")).collect();
    format!("{hex:0<40}")
}

/// `(commit, "parent parent")`, or `"?"` for parents not known.
fn commits(list: &[(&str, &str)]) -> Value {
    list.iter()
        .map(|(name, parents)| {
            let parents =
                (*parents != "?").then(|| parents.split_whitespace().map(sha).collect::<Vec<_>>());
            json!({"sha": sha(name), "parents": parents, "subject": format!("commit {name}"),
                   "committedAt": "2026-12-01T10:00:00Z"})
        })
        .collect()
}

const REPORT: &str =
    "mutation($id: ID!, $c: [CommitInput!]!) { reportDeploymentCommits(id: $id, commits: $c) }";

/// Deploys commit `name` to `env` of `web`, reporting `reported` on the way;
/// returns how many of them were new to the API.
async fn deployed(server: &TestApi, env: &str, name: &str, reported: &[(&str, &str)]) -> i64 {
    let id = server
        .deploy_ref("web", env, "main", Some(&sha(name)))
        .await;
    server.claim_ok(RUNNER, &id).await;
    let new = server
        .ok(
            &server.token(Role::Runner, RUNNER),
            REPORT,
            json!({"id": id, "c": commits(reported)}),
        )
        .await["reportDeploymentCommits"]
        .as_i64()
        .unwrap();
    server.finish(RUNNER, &id, "SUCCEEDED").await;
    new
}

/// `here`'s distance to `to`, as a viewer reads it.
async fn distance(server: &TestApi, here: &str, to: &str) -> Value {
    server
        .ok_as(
            Role::Viewer,
            "query($here: String!, $to: String!) { application(name: \"web\") { environment(name: $here) {
                commitDistance(to: $to) { behind ahead exact } } } }",
            json!({"here": here, "to": to}),
        )
        .await["application"]["environment"]["commitDistance"]
        .clone()
}

fn figures(behind: i64, ahead: i64, exact: bool) -> Value {
    json!({"behind": behind, "ahead": ahead, "exact": exact})
}

async fn web(server: &TestApi) {
    server
        .app(
            "web",
            "https://github.com/acme/web.git",
            &[("production", None, None), ("staging", None, None)],
        )
        .await;
}

async fn distances_follow_diverged_branches_and_merges(backend: Backend) {
    let server = TestApi::start(backend).await;
    web(&server).await;
    //   a - b - c ------- m     main
    //        \           /
    //         e ------- f       feature
    assert_eq!(
        deployed(
            &server,
            "production",
            "c",
            &[("c", "b"), ("b", "a"), ("a", "")]
        )
        .await,
        3
    );
    assert!(
        distance(&server, "production", "staging").await.is_null(),
        "staging has no release yet"
    );
    assert_eq!(
        deployed(&server, "staging", "f", &[("f", "e"), ("e", "b")]).await,
        2
    );
    assert_eq!(
        distance(&server, "production", "staging").await,
        figures(2, 1, true),
        "diverged at b: staging has e and f, production c"
    );
    assert_eq!(
        distance(&server, "staging", "production").await,
        figures(1, 2, true)
    );

    deployed(&server, "staging", "m", &[("m", "c f")]).await;
    assert_eq!(
        distance(&server, "production", "staging").await,
        figures(3, 0, true),
        "the merge brings e, f and itself"
    );
    assert_eq!(
        distance(&server, "staging", "production").await,
        figures(0, 3, true)
    );
    assert_eq!(
        distance(&server, "staging", "staging").await,
        figures(0, 0, true)
    );

    // Promoted: the same commit.
    deployed(&server, "production", "m", &[("m", "c f")]).await;
    assert_eq!(
        distance(&server, "production", "staging").await,
        figures(0, 0, true)
    );

    let releases = server
        .ok_as(
            Role::Runner,
            "{ application(name: \"web\") { releaseShas } }",
            json!({}),
        )
        .await;
    assert_eq!(
        releases["application"]["releaseShas"],
        json!([sha("m"), sha("f"), sha("c")]),
        "each once, newest first"
    );

    let (code, message) = server
        .err(
            &server.token(Role::Viewer, "v"),
            "{ application(name: \"web\") { environment(name: \"production\") { commitDistance(to: \"qa\") { behind } } } }",
            json!({}),
        )
        .await;
    assert_eq!(code, "NOT_FOUND", "{message}");
    assert!(
        message.contains("application `web` has no environment `qa`"),
        "{message}"
    );
}

async fn a_history_cut_short_gives_figures_that_are_not_exact(backend: Backend) {
    let server = TestApi::start(backend).await;
    web(&server).await;
    // The first deployment's walk was cut after c2: c1 was never reported.
    deployed(&server, "production", "c3", &[("c3", "c2"), ("c2", "c1")]).await;
    deployed(&server, "staging", "c5", &[("c5", "c4"), ("c4", "c3")]).await;
    assert_eq!(
        distance(&server, "production", "staging").await,
        figures(2, 0, true),
        "both walks end where the known history does"
    );

    // A shallow mirror: h1 is known, its parents are not.
    deployed(&server, "staging", "h2", &[("h2", "h1 c5"), ("h1", "?")]).await;
    assert_eq!(
        distance(&server, "production", "staging").await,
        figures(4, 0, false),
        "at least c4, c5, h1 and h2: h1's history is not known"
    );

    // Reported again from a mirror with the history: parents filled in.
    let new = deployed(&server, "staging", "h2", &[("h1", "c3"), ("h2", "h1 c5")]).await;
    assert_eq!(new, 0, "both were known");
    assert_eq!(
        distance(&server, "production", "staging").await,
        figures(4, 0, true)
    );

    // A commit that was never reported: no figures rather than wrong ones.
    let id = server
        .deploy_ref("web", "staging", "main", Some(&sha("zz")))
        .await;
    server.claim_ok(RUNNER, &id).await;
    server.finish(RUNNER, &id, "SUCCEEDED").await;
    assert!(distance(&server, "production", "staging").await.is_null());
}

async fn only_the_holder_reports_and_only_commit_ids(backend: Backend) {
    let server = TestApi::start(backend).await;
    web(&server).await;
    let id = server
        .deploy_ref("web", "production", "main", Some(&sha("a")))
        .await;
    let runner = server.token(Role::Runner, RUNNER);
    let one = commits(&[("a", "")]);

    let (code, message) = server
        .err(&runner, REPORT, json!({"id": id, "c": one}))
        .await;
    assert_eq!(code, "CONFLICT", "{message}");
    assert!(message.contains("has not been claimed"), "{message}");

    server.claim_ok(RUNNER, &id).await;
    let other = server.token(Role::Runner, "runner-2");
    let (code, message) = server
        .err(&other, REPORT, json!({"id": id, "c": one}))
        .await;
    assert_eq!(code, "CONFLICT", "{message}");
    assert!(message.contains("not by runner runner-2"), "{message}");

    let (code, _) = server
        .err(
            &server.token(Role::Deployer, "d"),
            REPORT,
            json!({"id": id, "c": one}),
        )
        .await;
    assert_eq!(code, "FORBIDDEN");

    for (bad, says) in [
        (json!([]), "`commits` is empty"),
        (
            json!([{"sha": "main", "parents": []}]),
            "commit 0: `sha` `main` is not a full commit id",
        ),
        (
            json!([{"sha": sha("a"), "parents": [sha("z").to_uppercase()]}]),
            "is not a full commit id",
        ),
        (
            Value::Array(vec![json!({"sha": sha("a"), "parents": []}); 1001]),
            "1001 commits in one report; at most 1000",
        ),
    ] {
        let (code, message) = server
            .err(&runner, REPORT, json!({"id": id, "c": bad}))
            .await;
        assert_eq!(code, "BAD_USER_INPUT", "{message}");
        assert!(message.contains(says), "{says}: {message}");
    }

    let stored = server
        .ok(&runner, REPORT, json!({"id": id, "c": one}))
        .await;
    assert_eq!(stored["reportDeploymentCommits"], 1);
    let again = server
        .ok(&runner, REPORT, json!({"id": id, "c": one}))
        .await;
    assert_eq!(again["reportDeploymentCommits"], 0, "idempotent");
}

slipway_testkit::on_both_backends!(
    distances_follow_diverged_branches_and_merges,
    a_history_cut_short_gives_figures_that_are_not_exact,
    only_the_holder_reports_and_only_commit_ids,
);
