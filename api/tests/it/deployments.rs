//! Creating, listing, locking, cancelling, and what survives a restart.

use serde_json::json;
use slipway_api::auth::Role;

use slipway_testkit::api::{Backend, TestApi};

const CREATE: &str = "mutation($input: CreateDeploymentInput!) {
    createDeployment(input: $input) { id number name status ref sha task payload externalId createdBy environment { name } }
}";

async fn an_external_id_makes_creation_idempotent(backend: Backend) {
    let server = TestApi::start(backend).await;
    server.create_app("web").await;
    server.create_app("api").await;
    let provider = server.token(Role::Provider, "github");
    let input = json!({"input": {
        "application": "web", "environment": "production", "ref": "main",
        "sha": "0123456789abcdef0123456789abcdef01234567",
        "payload": {"from": "hook"}, "externalId": "github:9007199254740993"
    }});
    let first = server.ok(&provider, CREATE, input.clone()).await["createDeployment"].clone();
    let again = server.ok(&provider, CREATE, input.clone()).await["createDeployment"].clone();
    assert_eq!(first, again, "the redelivery returns the first deployment");
    assert_eq!(first["number"], 1);
    assert_eq!(first["createdBy"], "github");
    assert_eq!(first["payload"], json!({"from": "hook"}));

    // The same key in another application is another deployment.
    let mut other = input.clone();
    other["input"]["application"] = json!("api");
    let other = server.ok(&provider, CREATE, other).await["createDeployment"].clone();
    assert_ne!(other["id"], first["id"]);

    let viewer = server.token(Role::Viewer, "v");
    let all = server
        .ok(
            &viewer,
            "{ deployments(application: \"web\") { edges { node { id } } } }",
            json!({}),
        )
        .await;
    assert_eq!(all["deployments"]["edges"].as_array().unwrap().len(), 1);
    // A redelivery burns no number.
    let next = server.deploy("web", "production").await;
    let next = server
        .ok(
            &viewer,
            "query($id: ID!) { deployment(id: $id) { number } }",
            json!({"id": next}),
        )
        .await;
    assert_eq!(next["deployment"]["number"], 2);
}

async fn an_external_id_never_returns_another_deployment(backend: Backend) {
    let server = TestApi::start(backend).await;
    server.create_app("web").await;
    let provider = server.token(Role::Provider, "github");
    let sha = "3f2c1a90123456789abcdef0123456789abcdef0";
    let asked = json!({"application": "web", "environment": "production", "ref": "main", "sha": sha, "externalId": "github:12"});
    let first =
        server.ok(&provider, CREATE, json!({"input": asked})).await["createDeployment"].clone();

    for (field, other) in [
        ("environment", json!("staging")),
        ("ref", json!("release")),
        ("sha", json!("89abcdef0123456789abcdef0123456789abcdef")),
    ] {
        let mut input = asked.clone();
        input[field] = other;
        let (code, message) = server.err(&provider, CREATE, json!({"input": input})).await;
        assert_eq!(code, "CONFLICT", "another {field}: {message}");
        assert!(
            message.contains("web#1 (production, main, 3f2c1a9)"),
            "names the deployment that has the key: {message}"
        );
    }
    // A sha missing on either side is no difference.
    let mut without_sha = asked.clone();
    without_sha.as_object_mut().unwrap().remove("sha");
    let again = server
        .ok(&provider, CREATE, json!({"input": without_sha}))
        .await["createDeployment"]
        .clone();
    assert_eq!(again, first);
    let mut unknown_sha = without_sha.clone();
    unknown_sha["externalId"] = json!("delivery-7");
    let created = server
        .ok(&provider, CREATE, json!({"input": unknown_sha}))
        .await["createDeployment"]
        .clone();
    let mut known_now = unknown_sha.clone();
    known_now["sha"] = json!(sha);
    let again = server
        .ok(&provider, CREATE, json!({"input": known_now}))
        .await["createDeployment"]
        .clone();
    assert_eq!(again, created);
    let mut elsewhere = unknown_sha.clone();
    elsewhere["environment"] = json!("staging");
    let (code, message) = server
        .err(&provider, CREATE, json!({"input": elsewhere}))
        .await;
    assert_eq!(code, "CONFLICT");
    assert!(message.contains("web#2 (production, main)"), "{message}");

    let viewer = server.token(Role::Viewer, "v");
    let all = server
        .ok(
            &viewer,
            "{ deployments { edges { node { name } } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        all["deployments"]["edges"].as_array().unwrap().len(),
        2,
        "the refusals created nothing"
    );
}

async fn concurrent_redeliveries_create_one_deployment(backend: Backend) {
    let server = TestApi::start(backend).await;
    server.create_app("web").await;
    let provider = server.token(Role::Provider, "github");
    let input = json!({"input": {"application": "web", "environment": "prod", "ref": "main", "externalId": "delivery-1"}});
    let answers =
        futures_util::future::join_all((0..8).map(|_| server.ok(&provider, CREATE, input.clone())))
            .await;
    let ids: std::collections::HashSet<String> = answers
        .iter()
        .map(|a| a["createDeployment"]["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 1, "{answers:?}");
}

async fn bad_input_is_refused_and_creates_nothing(backend: Backend) {
    let server = TestApi::start(backend).await;
    server.create_app("web").await;
    let deployer = server.token(Role::Deployer, "d");
    let cases = [
        (
            json!({"application": "nope", "environment": "prod", "ref": "main"}),
            "NOT_FOUND",
            "application `nope` does not exist",
        ),
        (
            json!({"application": "web", "environment": "Prod!", "ref": "main"}),
            "BAD_USER_INPUT",
            "environment name `Prod!` is invalid",
        ),
        (
            json!({"application": "web", "environment": "prod", "ref": ""}),
            "BAD_USER_INPUT",
            "`ref`",
        ),
        (
            json!({"application": "web", "environment": "prod", "ref": "main", "sha": "abc"}),
            "BAD_USER_INPUT",
            "`sha`",
        ),
    ];
    for (input, code, says) in cases {
        let (got, message) = server.err(&deployer, CREATE, json!({"input": input})).await;
        assert_eq!(got, code, "{input}: {message}");
        assert!(message.contains(says), "{message:?} should say {says:?}");
    }
    // A missing field is refused by the schema itself.
    let (code, message) = server
        .err(
            &deployer,
            CREATE,
            json!({"input": {"application": "web", "ref": "main"}}),
        )
        .await;
    assert_eq!(code, "BAD_USER_INPUT");
    assert!(message.contains("environment"), "{message}");

    let viewer = server.token(Role::Viewer, "v");
    let data = server
        .ok(&viewer, "{ deployments { edges { cursor } } application(name: \"web\") { environments { name } } }", json!({}))
        .await;
    assert_eq!(data["deployments"]["edges"], json!([]));
    assert_eq!(data["application"]["environments"], json!([]));
}

async fn a_locked_environment_refuses_deployments_naming_who_and_why(backend: Backend) {
    let server = TestApi::start(backend).await;
    server.create_app("web").await;
    let alice = server.token(Role::Deployer, "alice");
    let lock = "mutation { lockEnvironment(application: \"web\", environment: \"production\", reason: \"release freeze\") { lock { lockedBy reason lockedAt } } }";
    let locked = server.ok(&alice, lock, json!({})).await;
    assert_eq!(locked["lockEnvironment"]["lock"]["lockedBy"], "alice");

    let bob = server.token(Role::Deployer, "bob");
    let input =
        json!({"input": {"application": "web", "environment": "production", "ref": "main"}});
    let (code, message) = server.err(&bob, CREATE, input.clone()).await;
    assert_eq!(code, "CONFLICT");
    assert!(
        message.contains("alice") && message.contains("release freeze"),
        "{message}"
    );
    // Locking again does not take the lock over.
    let (code, message) = server.err(&bob, lock, json!({})).await;
    assert_eq!(code, "CONFLICT");
    assert!(message.contains("alice"), "{message}");

    let viewer = server.token(Role::Viewer, "v");
    let history = server
        .ok(&viewer, "{ deployments { edges { cursor } } }", json!({}))
        .await;
    assert_eq!(
        history["deployments"]["edges"],
        json!([]),
        "the refusal created nothing"
    );

    server
        .ok(&alice, "mutation { unlockEnvironment(application: \"web\", environment: \"production\") { lock { reason } } }", json!({}))
        .await;
    server.ok(&bob, CREATE, input).await;
}

async fn cancelling_a_queued_deployment_is_immediate(backend: Backend) {
    let server = TestApi::start(backend).await;
    server.create_app("web").await;
    let id = server.deploy("web", "prod").await;
    let deployer = server.token(Role::Deployer, "carol");
    let cancelled = server
        .ok(
            &deployer,
            "mutation($id: ID!) { cancelDeployment(id: $id) { status message finishedAt } }",
            json!({"id": id}),
        )
        .await;
    assert_eq!(cancelled["cancelDeployment"]["status"], "CANCELLED");
    assert!(cancelled["cancelDeployment"]["message"]
        .as_str()
        .unwrap()
        .contains("carol"));
    assert!(!cancelled["cancelDeployment"]["finishedAt"].is_null());
    let (code, _) = server
        .err(
            &deployer,
            "mutation($id: ID!) { cancelDeployment(id: $id) { status } }",
            json!({"id": id}),
        )
        .await;
    assert_eq!(
        code, "CONFLICT",
        "a finished deployment cannot be cancelled"
    );
    let claim = server.claim("r", &id).await;
    assert_eq!(slipway_testkit::api::error_of(&claim).0, "CONFLICT");
}

async fn cancelling_an_in_progress_deployment_reaches_its_runner(backend: Backend) {
    let server = TestApi::start(backend).await;
    server.create_app("web").await;
    let id = server.deploy("web", "prod").await;
    server.claim("r1", &id).await;
    let viewer = server.token(Role::Viewer, "v");
    let mut events = server.ws(&viewer).await;
    events
        .subscribe(
            "subscription($id: ID!) { deploymentEvents(id: $id) { id status cancelRequested } }",
            json!({"id": id}),
        )
        .await;

    let deployer = server.token(Role::Deployer, "carol");
    let cancel = "mutation($id: ID!) { cancelDeployment(id: $id) { status cancelRequested } }";
    let event = events
        .next_while(|| server.ok(&deployer, cancel, json!({"id": id})))
        .await
        .unwrap();
    assert_eq!(event["deploymentEvents"]["cancelRequested"], true);
    assert_eq!(event["deploymentEvents"]["status"], "IN_PROGRESS");

    let runner = server.token(Role::Runner, "r1");
    let beat = server
        .ok(
            &runner,
            "mutation($id: ID!) { heartbeatDeployment(id: $id) { cancelRequested } }",
            json!({"id": id}),
        )
        .await;
    assert_eq!(beat["heartbeatDeployment"]["cancelRequested"], true);
    server.finish("r1", &id, "CANCELLED").await;
    assert_eq!(server.status(&id).await["status"], "CANCELLED");
}

async fn events_are_published_after_commit(backend: Backend) {
    let server = TestApi::start(backend).await;
    server.create_app("web").await;
    let viewer = server.token(Role::Viewer, "v");
    let mut ws = server.ws(&viewer).await;
    ws.subscribe(
        "subscription { deploymentEvents(application: \"web\") { id status } }",
        json!({}),
    )
    .await;
    let mut n = 0;
    let event = ws
        .next_while(|| {
            n += 1;
            server.deploy("web", format!("env{n}"))
        })
        .await
        .unwrap();
    // Whoever hears the event can read the change at once.
    let id = event["deploymentEvents"]["id"].as_str().unwrap();
    assert_eq!(server.status(id).await["status"], "QUEUED");

    let claimed = server.claim("r", id).await;
    assert!(claimed.get("errors").is_none(), "{claimed}");
    loop {
        let event = ws.next().await.unwrap();
        if event["deploymentEvents"]["id"] == id {
            assert_eq!(event["deploymentEvents"]["status"], "IN_PROGRESS");
            break;
        }
    }
    assert_eq!(server.status(id).await["status"], "IN_PROGRESS");
}

async fn history_pages_newest_first(backend: Backend) {
    let server = TestApi::start(backend).await;
    server.create_app("web").await;
    server.create_app("api").await;
    for i in 0..5 {
        server
            .deploy("web", if i % 2 == 0 { "prod" } else { "staging" })
            .await;
        server.deploy("api", "prod").await;
    }
    let viewer = server.token(Role::Viewer, "v");
    let page = "query($after: String) { deployments(application: \"web\", first: 2, after: $after) {
        edges { cursor node { number environment { name } } } pageInfo { hasNextPage endCursor } } }";
    let mut numbers = Vec::new();
    let mut after = serde_json::Value::Null;
    loop {
        let data = server.ok(&viewer, page, json!({"after": after})).await;
        let conn = &data["deployments"];
        for edge in conn["edges"].as_array().unwrap() {
            numbers.push(edge["node"]["number"].as_i64().unwrap());
        }
        if conn["pageInfo"]["hasNextPage"] != true {
            break;
        }
        after = conn["pageInfo"]["endCursor"].clone();
    }
    assert_eq!(numbers, vec![5, 4, 3, 2, 1]);
    let staging = server
        .ok(&viewer, "{ deployments(application: \"web\", environment: \"staging\", status: QUEUED) { edges { node { number } } } }", json!({}))
        .await;
    let staging: Vec<i64> = staging["deployments"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["number"].as_i64().unwrap())
        .collect();
    assert_eq!(staging, vec![4, 2]);
    let (code, _) = server
        .err(
            &viewer,
            "{ deployments(first: 1000) { edges { cursor } } }",
            json!({}),
        )
        .await;
    assert_eq!(code, "BAD_USER_INPUT");
}

async fn everything_survives_a_restart(backend: Backend) {
    let server = TestApi::start(backend).await;
    server.create_app("web").await;
    let id = server.deploy("web", "prod").await;
    server.claim("r1", &id).await;
    let runner = server.token(Role::Runner, "r1");
    server
        .ok(
            &runner,
            "mutation($id: ID!) { appendDeploymentLogs(id: $id, lines: [{text: \"one\"}, {text: \"two\", stream: \"stderr\"}]) { id }
              updateDeploymentProgress(id: $id, phase: UPDATING, message: \"rolling web\", sha: \"89abcdef0123456789abcdef0123456789abcdef\") { id } }",
            json!({"id": id}),
        )
        .await;
    let admin = server.token(Role::Admin, "admin");
    server
        .ok(&admin, "mutation { lockEnvironment(application: \"web\", environment: \"staging\", reason: \"db migration\") { name } }", json!({}))
        .await;

    let server = server.restart().await;
    let viewer = server.token(Role::Viewer, "v");
    let data = server
        .ok(&viewer, "query($id: ID!) { deployment(id: $id) { status phase message sha runner logs { seq stream text } }
                application(name: \"web\") { environment(name: \"staging\") { lock { lockedBy reason } } } }", json!({"id": id}))
        .await;
    let d = &data["deployment"];
    assert_eq!(d["status"], "IN_PROGRESS");
    assert_eq!(d["phase"], "UPDATING");
    assert_eq!(d["message"], "rolling web");
    assert_eq!(d["sha"], "89abcdef0123456789abcdef0123456789abcdef");
    assert_eq!(d["runner"], "r1");
    assert_eq!(
        d["logs"],
        json!([{"seq": 1, "stream": "stdout", "text": "one"}, {"seq": 2, "stream": "stderr", "text": "two"}])
    );
    assert_eq!(
        data["application"]["environment"]["lock"]["reason"],
        "db migration"
    );
    // The runner carries on after the restart where it left off.
    let runner = server.token(Role::Runner, "r1");
    let more = server
        .ok(&runner, "mutation($id: ID!) { appendDeploymentLogs(id: $id, lines: [{text: \"three\"}]) { logCount } }", json!({"id": id}))
        .await;
    assert_eq!(more["appendDeploymentLogs"]["logCount"], 3);
}

async fn auto_deploys_are_marked_and_runners_see_the_current_release(backend: Backend) {
    let server = TestApi::start(backend).await;
    server.create_app("web").await;
    let provider = server.token(Role::Provider, "github");
    let create = "mutation($input: CreateDeploymentInput!) { createDeployment(input: $input) { id autoDeploy } }";
    let sha = "0123456789abcdef0123456789abcdef01234567";
    let asked = server
        .ok(
            &provider,
            create,
            json!({"input": {"application": "web", "environment": "prod", "ref": "main", "sha": sha}}),
        )
        .await["createDeployment"]
        .clone();
    assert_eq!(asked["autoDeploy"], false, "false unless told");
    let id = asked["id"].as_str().unwrap().to_owned();
    server.claim("r1", &id).await;
    server.finish("r1", &id, "SUCCEEDED").await;

    let pushed = server
        .ok(
            &provider,
            create,
            json!({"input": {"application": "web", "environment": "prod", "ref": "main", "autoDeploy": true}}),
        )
        .await["createDeployment"]
        .clone();
    assert_eq!(pushed["autoDeploy"], true);
    // What the runner reads when it claims: the mark and what runs now.
    let runner = server.token(Role::Runner, "r1");
    let claimed = server
        .ok(
            &runner,
            "mutation($id: ID!) { claimDeployment(id: $id) { autoDeploy environment { release { sha deployment { id name } } } } }",
            json!({"id": pushed["id"]}),
        )
        .await;
    assert_eq!(
        claimed["claimDeployment"],
        json!({"autoDeploy": true, "environment": {"release": {"sha": sha, "deployment": {"id": id, "name": "web#1"}}}})
    );
    let server = server.restart().await;
    let viewer = server.token(Role::Viewer, "v");
    let stored = server
        .ok(
            &viewer,
            "query($id: ID!) { deployment(id: $id) { autoDeploy } }",
            json!({"id": pushed["id"]}),
        )
        .await;
    assert_eq!(stored["deployment"]["autoDeploy"], true, "stored");
}

async fn an_unknown_stored_status_is_an_error_never_a_failure(backend: Backend) {
    use sea_orm::sea_query::Expr;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    use slipway_api::db::entities::deployment;
    let server = TestApi::start(backend).await;
    server.create_app("web").await;
    let odd = server.deploy("web", "prod").await;
    let fine = server.deploy("web", "staging").await;
    let viewer = server.token(Role::Viewer, "v");
    let read = "query($id: ID!) { deployment(id: $id) { status phase } }";
    for (column, text) in [
        (deployment::Column::Status, "PAUSED"),
        (deployment::Column::Phase, "WAITING"),
    ] {
        // Written by something else than this API (an older or newer one, by hand).
        deployment::Entity::update_many()
            .col_expr(column, Expr::value(text))
            .filter(deployment::Column::Id.eq(odd.parse::<i64>().unwrap()))
            .exec(&server.state.db)
            .await
            .unwrap();
        let body = server.gql(Some(&viewer), read, json!({"id": odd})).await;
        let (code, message) = slipway_testkit::api::error_of(&body);
        assert_eq!(code, "INTERNAL", "{column:?} {text}: {body}");
        assert!(
            !message.contains(text),
            "the cause stays in the log: {message}"
        );
        assert!(
            body["data"]["deployment"].is_null(),
            "no status is made up: {body}"
        );
        let (code, _) = server
            .err(
                &viewer,
                "{ deployments { edges { node { status } } } }",
                json!({}),
            )
            .await;
        assert_eq!(code, "INTERNAL", "a page with the row fails as a whole");
        // Other deployments read as ever.
        let other = server.ok(&viewer, read, json!({"id": fine})).await;
        assert_eq!(other["deployment"]["status"], "QUEUED");
        // Put the status back before trying the phase.
        deployment::Entity::update_many()
            .col_expr(deployment::Column::Status, Expr::value("QUEUED"))
            .filter(deployment::Column::Id.eq(odd.parse::<i64>().unwrap()))
            .exec(&server.state.db)
            .await
            .unwrap();
    }
}

slipway_testkit::on_both_backends!(
    an_external_id_never_returns_another_deployment,
    an_unknown_stored_status_is_an_error_never_a_failure,
    auto_deploys_are_marked_and_runners_see_the_current_release,
    an_external_id_makes_creation_idempotent,
    concurrent_redeliveries_create_one_deployment,
    bad_input_is_refused_and_creates_nothing,
    a_locked_environment_refuses_deployments_naming_who_and_why,
    cancelling_a_queued_deployment_is_immediate,
    cancelling_an_in_progress_deployment_reaches_its_runner,
    events_are_published_after_commit,
    history_pages_newest_first,
    everything_survives_a_restart,
);
