//! Releases: the history of what ran where, rollbacks to any release, and
//! the pause a rollback puts on auto-deploys.

use serde_json::{json, Value};
use slipway_api::auth::Role;

use slipway_testkit::api::{error_of, Backend, TestApi};

const RUNNER: &str = "runner-1";

fn sha(n: u8) -> String {
    format!("{n:x}").repeat(40)[..40].to_owned()
}

/// Creates application `web` on GitHub.
async fn github_app(server: &TestApi) {
    server
        .ok_as(
            Role::Admin,
            "mutation { createApplication(input: {name: \"web\", repository: \"https://github.com/acme/web.git\"}) { name } }",
            json!({}),
        )
        .await;
}

/// A deployment of `sha` to production that ends `status`; returns its id.
async fn deployed(server: &TestApi, sha: &str, status: &str) -> String {
    let id = server
        .deploy_ref("web", "production", "main", Some(sha))
        .await;
    server.claim_ok(RUNNER, &id).await;
    let services = json!([
        {"name": "web_app", "image": "registry.example.com/web:main",
         "digest": format!("sha256:{}", sha.repeat(2)[..64].to_owned()), "specHash": sha.repeat(2)[..64].to_owned()},
        {"name": "web_cache", "image": "redis:7", "digest": null, "specHash": null}
    ]);
    server
        .ok(
            &server.token(Role::Runner, RUNNER),
            "mutation($id: ID!, $status: DeploymentStatus!, $s: [ServiceImageInput!]) { finishDeployment(id: $id, status: $status, message: \"done\", services: $s) { id } }",
            json!({"id": id, "status": status, "s": if status == "SUCCEEDED" { services } else { Value::Null }}),
        )
        .await;
    id
}

const RELEASES: &str = "query($first: Int, $after: String) { application(name: \"web\") { environment(name: \"production\") {
    release { deployment { number } }
    releases(first: $first, after: $after) {
        pageInfo { hasNextPage endCursor }
        nodes { sha ref task createdBy deployedAt replacedAt
                deployment { number } previous { deployment { number } } replacedBy { deployment { number } }
                compareUrl services { name image digest specHash } }
    }
    autoDeployPause { pausedBy reason pausedAt rollback { number task } }
} } }";

async fn environment(server: &TestApi, first: i32, after: Option<&str>) -> Value {
    server
        .ok_as(
            Role::Viewer,
            RELEASES,
            json!({"first": first, "after": after}),
        )
        .await["application"]["environment"]
        .clone()
}

fn numbers(releases: &Value) -> Vec<i64> {
    releases["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["deployment"]["number"].as_i64().unwrap())
        .collect()
}

async fn releases_are_the_deployments_that_succeeded_newest_first(backend: Backend) {
    let server = TestApi::start(backend).await;
    github_app(&server).await;
    deployed(&server, &sha(1), "SUCCEEDED").await;
    let failed = deployed(&server, &sha(2), "FAILED").await;
    deployed(&server, &sha(3), "SUCCEEDED").await;
    let fourth = deployed(&server, &sha(4), "SUCCEEDED").await;

    let env = environment(&server, 20, None).await;
    assert_eq!(numbers(&env["releases"]), [4, 3, 1]);
    assert_eq!(env["release"]["deployment"]["number"], 4);
    let nodes = env["releases"]["nodes"].as_array().unwrap();
    let (newest, middle, oldest) = (&nodes[0], &nodes[1], &nodes[2]);
    assert_eq!(newest["sha"], sha(4));
    assert_eq!(newest["ref"], "main");
    assert_eq!(newest["task"], "deploy");
    assert_eq!(newest["createdBy"], "deployer");
    assert_eq!(newest["previous"]["deployment"]["number"], 3);
    assert!(newest["replacedBy"].is_null(), "it serves: {newest}");
    assert!(newest["replacedAt"].is_null(), "it serves: {newest}");
    assert_eq!(
        middle["previous"]["deployment"]["number"], 1,
        "the failed one is no release"
    );
    assert_eq!(middle["replacedBy"]["deployment"]["number"], 4);
    assert_eq!(middle["replacedAt"], newest["deployedAt"]);
    assert!(oldest["previous"].is_null());
    assert_eq!(
        newest["compareUrl"],
        format!(
            "https://github.com/acme/web/compare/{}...{}",
            sha(3),
            sha(4)
        )
    );
    assert!(oldest["compareUrl"].is_null(), "nothing to compare with");
    assert_eq!(
        newest["services"],
        json!([
            {"name": "web_app", "image": "registry.example.com/web:main",
             "digest": format!("sha256:{}", sha(4).repeat(2)[..64].to_owned()),
             "specHash": sha(4).repeat(2)[..64].to_owned()},
            {"name": "web_cache", "image": "redis:7", "digest": null, "specHash": null}
        ])
    );

    // Pages, newest first.
    let page = environment(&server, 2, None).await["releases"].clone();
    assert_eq!(numbers(&page), [4, 3]);
    assert_eq!(page["pageInfo"]["hasNextPage"], true);
    let cursor = page["pageInfo"]["endCursor"].as_str().unwrap().to_owned();
    let rest = environment(&server, 2, Some(&cursor)).await["releases"].clone();
    assert_eq!(numbers(&rest), [1]);
    assert_eq!(rest["pageInfo"]["hasNextPage"], false);

    // A deployment knows its release and the one it replaced.
    let query = "query($id: ID!) { deployment(id: $id) { release { deployment { number } } previousRelease { deployment { number } } } }";
    let d = server
        .ok_as(Role::Viewer, query, json!({"id": fourth}))
        .await;
    assert_eq!(d["deployment"]["release"]["deployment"]["number"], 4);
    assert_eq!(
        d["deployment"]["previousRelease"]["deployment"]["number"],
        3
    );
    let d = server
        .ok_as(Role::Viewer, query, json!({"id": failed}))
        .await;
    assert!(d["deployment"]["release"].is_null(), "{d}");
    assert_eq!(
        d["deployment"]["previousRelease"]["deployment"]["number"],
        1
    );
}

const ROLLBACK: &str = "mutation($a: String!, $e: String!, $to: String, $r: String!) {
    rollbackDeployment(application: $a, environment: $e, to: $to, reason: $r) {
        id number name task ref sha status description createdBy autoDeploy
        restores { deployment { number } services { name digest } }
    }
}";

async fn rollback(server: &TestApi, to: Option<&str>, reason: &str) -> Value {
    server
        .ok(
            &server.token(Role::Deployer, "alice"),
            ROLLBACK,
            json!({"a": "web", "e": "production", "to": to, "r": reason}),
        )
        .await["rollbackDeployment"]
        .clone()
}

async fn a_rollback_restores_a_release_and_pauses_auto_deploys(backend: Backend) {
    let server = TestApi::start(backend).await;
    github_app(&server).await;
    deployed(&server, &sha(1), "SUCCEEDED").await;
    deployed(&server, &sha(2), "SUCCEEDED").await;
    deployed(&server, &sha(3), "SUCCEEDED").await;

    // By default, to the release before the current one.
    let r = rollback(&server, None, "checkout errors since web#3").await;
    assert_eq!(r["number"], 4);
    assert_eq!(r["task"], "rollback");
    assert_eq!(r["status"], "QUEUED");
    assert_eq!(r["sha"], sha(2));
    assert_eq!(r["ref"], "main");
    assert_eq!(r["createdBy"], "alice");
    assert_eq!(r["autoDeploy"], false);
    assert_eq!(
        r["description"],
        format!(
            "roll back production to web#2 ({}): checkout errors since web#3",
            &sha(2)[..7]
        )
    );
    assert_eq!(r["restores"]["deployment"]["number"], 2);
    assert_eq!(
        r["restores"]["services"][0]["digest"],
        format!("sha256:{}", sha(2).repeat(2)[..64].to_owned())
    );

    // Auto-deploys wait, saying why; the pause names who, why and the rollback.
    let pause = environment(&server, 20, None).await["autoDeployPause"].clone();
    assert_eq!(pause["pausedBy"], "alice");
    assert_eq!(pause["reason"], "checkout errors since web#3");
    assert_eq!(pause["rollback"], json!({"number": 4, "task": "rollback"}));
    let provider = server.token(Role::Provider, "github");
    let push = json!({"input": {"application": "web", "environment": "production",
        "ref": "main", "sha": sha(3), "autoDeploy": true}});
    let create =
        "mutation($input: CreateDeploymentInput!) { createDeployment(input: $input) { id } }";
    let (code, message) = server.err(&provider, create, push.clone()).await;
    assert_eq!(code, "CONFLICT", "{message}");
    assert!(
        message
            .contains("auto-deploy of `production` of `web` is paused since alice rolled it back"),
        "{message}"
    );
    assert!(message.contains("checkout errors since web#3"), "{message}");
    assert!(message.contains("resumeAutoDeploy"), "{message}");

    // The rollback runs and becomes a release of its own.
    let id = r["id"].as_str().unwrap();
    server.claim_ok(RUNNER, id).await;
    server.finish(RUNNER, id, "SUCCEEDED").await;
    let env = environment(&server, 20, None).await;
    assert_eq!(numbers(&env["releases"]), [4, 3, 2, 1]);
    assert_eq!(env["releases"]["nodes"][0]["task"], "rollback");
    assert_eq!(
        env["releases"]["nodes"][1]["replacedBy"]["deployment"]["number"], 4,
        "web#3 was replaced by the rollback"
    );

    // To an older release by its number; a person who deploys ends the pause.
    let r = rollback(&server, Some("web#1"), "older still").await;
    assert_eq!(r["sha"], sha(1));
    assert_eq!(r["restores"]["deployment"]["number"], 1);
    server.claim_ok(RUNNER, r["id"].as_str().unwrap()).await;
    server
        .finish(RUNNER, r["id"].as_str().unwrap(), "SUCCEEDED")
        .await;
    assert_eq!(
        environment(&server, 20, None).await["autoDeployPause"]["reason"],
        "older still"
    );
    let explicit = server
        .deploy_ref("web", "production", "main", Some(&sha(3)))
        .await;
    assert!(!explicit.is_empty());
    assert!(environment(&server, 20, None).await["autoDeployPause"].is_null());

    // resumeAutoDeploy ends it too, and the pause survives a restart until then.
    let r = rollback(&server, Some("2"), "again").await;
    assert_eq!(r["restores"]["deployment"]["number"], 2);
    let server = server.restart().await;
    assert_eq!(
        environment(&server, 20, None).await["autoDeployPause"]["pausedBy"],
        "alice"
    );
    let resumed = server
        .ok_as(
            Role::Deployer,
            "mutation { resumeAutoDeploy(application: \"web\", environment: \"production\") { name autoDeployPause { reason } } }",
            json!({}),
        )
        .await;
    assert!(
        resumed["resumeAutoDeploy"]["autoDeployPause"].is_null(),
        "{resumed}"
    );
    assert!(server.ok(&provider, create, push).await["createDeployment"]["id"].is_string());
}

async fn a_rollback_to_what_is_no_release_is_refused_and_changes_nothing(backend: Backend) {
    let server = TestApi::start(backend).await;
    github_app(&server).await;
    let deployer = server.token(Role::Deployer, "alice");
    let ask = |to: Option<&str>, reason: &str| json!({"a": "web", "e": "production", "to": to, "r": reason});
    // Nothing to roll back yet: no environment, then no release.
    let (code, message) = server.err(&deployer, ROLLBACK, ask(None, "why")).await;
    assert_eq!(code, "NOT_FOUND", "{message}");
    deployed(&server, &sha(1), "SUCCEEDED").await;
    let (code, message) = server.err(&deployer, ROLLBACK, ask(None, "why")).await;
    assert_eq!(code, "CONFLICT", "{message}");
    assert!(message.contains("no release before web#1"), "{message}");
    deployed(&server, &sha(2), "FAILED").await;
    server
        .ok_as(
            Role::Admin,
            "mutation { createEnvironment(input: {application: \"web\", name: \"staging\"}) { name } }",
            json!({}),
        )
        .await;
    let staging = server
        .deploy_ref("web", "staging", "main", Some(&sha(3)))
        .await;
    server.claim_ok(RUNNER, &staging).await;
    server.finish(RUNNER, &staging, "SUCCEEDED").await;

    for (to, reason, want_code, want) in [
        (
            Some("web#2"),
            "why",
            "BAD_USER_INPUT",
            "web#2 is not a release of `production`: it failed",
        ),
        (
            Some("3"),
            "why",
            "BAD_USER_INPUT",
            "web#3 is not a release of `production`: it was deployed to another environment",
        ),
        (
            Some("web#99"),
            "why",
            "NOT_FOUND",
            "deployment web#99 does not exist",
        ),
        (
            Some("api#1"),
            "why",
            "BAD_USER_INPUT",
            "`to` must be a deployment number of `web`",
        ),
        (
            Some("web#1"),
            "  ",
            "BAD_USER_INPUT",
            "`reason` must say why",
        ),
    ] {
        let (code, message) = server.err(&deployer, ROLLBACK, ask(to, reason)).await;
        assert_eq!(code, want_code, "{to:?}: {message}");
        assert!(message.contains(want), "{to:?}: {message}");
    }
    // A viewer may not roll back.
    let viewer = server.token(Role::Viewer, "v");
    let body = server
        .gql(Some(&viewer), ROLLBACK, ask(Some("1"), "why"))
        .await;
    assert_eq!(error_of(&body).0, "FORBIDDEN", "{body}");

    assert_eq!(server.deployments().await.len(), 3, "nothing was created");
    assert!(environment(&server, 20, None).await["autoDeployPause"].is_null());
}

const PROMOTE: &str = "mutation($f: String!, $t: String!) {
    promoteDeployment(application: \"web\", from: $f, to: $t) {
        number task ref sha status description environment { name }
        restores { deployment { number environment { name } } services { name digest } }
    }
}";

async fn a_promotion_deploys_another_environments_release_exactly(backend: Backend) {
    let server = TestApi::start(backend).await;
    github_app(&server).await;
    let deployer = server.token(Role::Deployer, "alice");
    let (code, message) = server
        .err(
            &deployer,
            PROMOTE,
            json!({"f": "staging", "t": "production"}),
        )
        .await;
    assert_eq!(code, "NOT_FOUND", "{message}");
    server
        .ok_as(
            Role::Admin,
            "mutation { createEnvironment(input: {application: \"web\", name: \"staging\"}) { name } }",
            json!({}),
        )
        .await;
    let (code, message) = server
        .err(
            &deployer,
            PROMOTE,
            json!({"f": "staging", "t": "production"}),
        )
        .await;
    assert_eq!(code, "CONFLICT", "{message}");
    assert!(
        message.contains("`staging` of `web` has no release to promote"),
        "{message}"
    );

    let staging = server
        .deploy_ref("web", "staging", "v1.2", Some(&sha(7)))
        .await;
    server.claim_ok(RUNNER, &staging).await;
    server
        .ok(
            &server.token(Role::Runner, RUNNER),
            "mutation($id: ID!) { finishDeployment(id: $id, status: SUCCEEDED, services: [{name: \"web-staging_app\", image: \"r/web:main\", digest: \"sha256:aaaa\"}]) { id } }",
            json!({"id": staging}),
        )
        .await;
    let (code, message) = server
        .err(&deployer, PROMOTE, json!({"f": "staging", "t": "staging"}))
        .await;
    assert_eq!(code, "BAD_USER_INPUT", "{message}");

    let p = server
        .ok(
            &deployer,
            PROMOTE,
            json!({"f": "staging", "t": "production"}),
        )
        .await["promoteDeployment"]
        .clone();
    assert_eq!(p["environment"]["name"], "production");
    assert_eq!(p["task"], "deploy");
    assert_eq!(p["status"], "QUEUED");
    assert_eq!(p["sha"], sha(7));
    assert_eq!(p["ref"], "v1.2");
    assert_eq!(
        p["description"],
        format!(
            "promote web#1 ({}) from staging to production",
            &sha(7)[..7]
        )
    );
    assert_eq!(
        p["restores"],
        json!({"deployment": {"number": 1, "environment": {"name": "staging"}},
               "services": [{"name": "web-staging_app", "digest": "sha256:aaaa"}]})
    );
    // A promotion is no rollback: auto-deploys of production go on.
    let pause = server
        .ok_as(
            Role::Viewer,
            "{ application(name: \"web\") { environment(name: \"production\") { autoDeployPause { reason } } } }",
            json!({}),
        )
        .await;
    assert!(
        pause["application"]["environment"]["autoDeployPause"].is_null(),
        "{pause}"
    );
}

async fn a_compare_url_from_another_environments_release(backend: Backend) {
    let server = TestApi::start(backend).await;
    github_app(&server).await;
    server
        .ok_as(
            Role::Admin,
            "mutation { createEnvironment(input: {application: \"web\", name: \"staging\"}) { name } }",
            json!({}),
        )
        .await;
    server
        .app(
            "api",
            "https://github.com/acme/api.git",
            &[("production", None, None)],
        )
        .await;
    deployed(&server, &sha(1), "SUCCEEDED").await;
    let production = deployed(&server, &sha(2), "SUCCEEDED").await;
    let staging = server
        .deploy_ref("web", "staging", "main", Some(&sha(3)))
        .await;
    server.claim_ok(RUNNER, &staging).await;
    server.finish(RUNNER, &staging, "SUCCEEDED").await;
    let other_app = server.deploy_ref("api", "production", "main", None).await;

    let query = "query($from: ID) { application(name: \"web\") { environment(name: \"staging\") {
        release { compareUrl(from: $from) } } } }";
    let url = |data: Value| data["application"]["environment"]["release"]["compareUrl"].clone();
    let from_production = server
        .ok_as(Role::Viewer, query, json!({"from": production}))
        .await;
    assert_eq!(
        url(from_production),
        format!(
            "https://github.com/acme/web/compare/{}...{}",
            sha(2),
            sha(3)
        )
    );
    // Without `from`: the previous release of staging, which has none.
    assert!(url(server.ok_as(Role::Viewer, query, json!({})).await).is_null());

    let viewer = server.token(Role::Viewer, "v");
    for from in [other_app.as_str(), "999"] {
        let (code, message) = server.err(&viewer, query, json!({"from": from})).await;
        assert_eq!(code, "NOT_FOUND", "{from}: {message}");
        assert!(
            message.contains(&format!("`web` has no deployment with id `{from}`")),
            "{message}"
        );
    }
}

async fn a_task_run_alone_takes_the_queue_but_is_never_a_release(backend: Backend) {
    let server = TestApi::start(backend).await;
    github_app(&server).await;
    deployed(&server, &sha(1), "SUCCEEDED").await;
    let create = "mutation($task: String, $sha: String) { createDeployment(input: {application: \"web\", environment: \"production\", ref: \"main\", sha: $sha, task: $task}) { id number task runsTask } }";
    let mut numbers_of_tasks = Vec::new();
    for (task, runs) in [
        (Some("deploy:migrate"), json!("migrate")),
        (Some("flush-cache"), json!("flush-cache")),
        (Some("deploy"), Value::Null),
        (None, Value::Null),
    ] {
        // Tasks at a commit no rollout deployed.
        let at = if runs.is_null() { sha(2) } else { sha(7) };
        let d = server
            .ok_as(Role::Deployer, create, json!({"task": task, "sha": at}))
            .await["createDeployment"]
            .clone();
        assert_eq!(d["runsTask"], runs, "{task:?}: {d}");
        assert_eq!(d["task"], task.unwrap_or("deploy"), "{d}");
        let id = d["id"].as_str().unwrap().to_owned();
        let id = id.as_str();
        // Through the same queue and slot as a rollout.
        server.claim_ok(RUNNER, id).await;
        server
            .ok(
                &server.token(Role::Runner, RUNNER),
                "mutation($id: ID!) { finishDeployment(id: $id, status: SUCCEEDED, message: \"done\") { id } }",
                json!({"id": id}),
            )
            .await;
        if !runs.is_null() {
            numbers_of_tasks.push(d["number"].as_i64().unwrap());
            let env = environment(&server, 20, None).await;
            assert_eq!(
                env["release"]["deployment"]["number"], 1,
                "a task is not what runs: {env}"
            );
            assert_eq!(numbers(&env["releases"]), [1]);
        }
    }
    assert_eq!(numbers_of_tasks, [2, 3]);
    let env = environment(&server, 20, None).await;
    assert_eq!(numbers(&env["releases"]), [5, 4, 1]);
    let shas = server
        .ok_as(
            Role::Viewer,
            "{ application(name: \"web\") { releaseShas } }",
            json!({}),
        )
        .await;
    assert_eq!(
        shas["application"]["releaseShas"],
        json!([sha(2), sha(1)]),
        "{shas}"
    );

    // A task run alone is not something to roll back to.
    let (code, message) = server
        .err(
            &server.token(Role::Deployer, "d"),
            "mutation { rollbackDeployment(application: \"web\", environment: \"production\", to: \"2\", reason: \"back\") { id } }",
            json!({}),
        )
        .await;
    assert_eq!(code, "BAD_USER_INPUT", "{message}");
    assert!(
        message.contains("web#2 is not a release of `production`: it ran task `migrate` alone"),
        "{message}"
    );

    for bad in ["Migrate", "deploy:", "run migrations", "deploy:-x"] {
        let (code, message) = server
            .err(
                &server.token(Role::Deployer, "d"),
                create,
                json!({"task": bad}),
            )
            .await;
        assert_eq!(code, "BAD_USER_INPUT", "{bad}: {message}");
        assert!(
            message.contains("is neither `deploy`, `rollback`"),
            "{message}"
        );
    }
    assert_eq!(server.deployments().await.len(), 5, "nothing was created");
}

slipway_testkit::on_both_backends!(
    a_task_run_alone_takes_the_queue_but_is_never_a_release,
    releases_are_the_deployments_that_succeeded_newest_first,
    a_compare_url_from_another_environments_release,
    a_rollback_restores_a_release_and_pauses_auto_deploys,
    a_rollback_to_what_is_no_release_is_refused_and_changes_nothing,
    a_promotion_deploys_another_environments_release_exactly,
);
