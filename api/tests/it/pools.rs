//! Runner pools: an environment's `runnerLabels` decide which runners hear of
//! its deployments and plans, may claim them and may say what runs where; a
//! deployment no connected runner may take says so; `runners` tells
//! connected from lost.

use serde_json::{json, Value};
use slipway_api::auth::Role;
use slipway_api::{runners, Clock, Settings};

use slipway_testkit::api::{error_of, Backend, TestApi};

const CREATE_ENV: &str = "mutation($a: String!, $n: String!, $l: [String!]) {
    createEnvironment(input: {application: $a, name: $n, runnerLabels: $l}) { name runnerLabels }
}";
const REGISTER: &str =
    "mutation($l: [String!]!) { registerRunner(labels: $l, version: \"1\") { name } }";
const QUEUED: &str = "subscription { deploymentQueued { id environment { name } } }";
const CLAIMABLE: &str = "{ claimableDeployments { id environment { name } } }";

/// An application `web` with `staging` (swarm=staging), `prod` (swarm=prod
/// and region=eu) and `dev` (any runner); runner `rs` of the staging pool
/// and `rp` of the production one, registered.
async fn pools(server: &TestApi) -> (String, String) {
    server.create_app("web").await;
    let admin = server.token(Role::Admin, "admin");
    for (name, labels) in [
        ("staging", json!(["swarm=staging"])),
        ("prod", json!(["swarm=prod", "region=eu"])),
        ("dev", Value::Null),
    ] {
        server
            .ok(
                &admin,
                CREATE_ENV,
                json!({"a": "web", "n": name, "l": labels}),
            )
            .await;
    }
    let rs = server.token(Role::Runner, "rs");
    let rp = server.token(Role::Runner, "rp");
    server
        .ok(&rs, REGISTER, json!({"l": ["swarm=staging"]}))
        .await;
    server
        .ok(
            &rp,
            REGISTER,
            json!({"l": ["gpu", "region=eu", "swarm=prod"]}),
        )
        .await;
    (rs, rp)
}

/// The next two deployments a runner hears of, past those of `anyN`.
async fn heard(ws: &mut slipway_testkit::api::Ws) -> Vec<String> {
    let mut ids = Vec::new();
    while ids.len() < 2 {
        let item = ws.next().await.unwrap();
        let d = &item["deploymentQueued"];
        if !d["environment"]["name"]
            .as_str()
            .unwrap()
            .starts_with("any")
        {
            ids.push(d["id"].as_str().unwrap().to_owned());
        }
    }
    ids
}

/// The environments of a list of deployments, but `anyN`, sorted.
fn env_names(list: &Value) -> Vec<String> {
    let mut names: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["environment"]["name"].as_str().unwrap().to_owned())
        .filter(|name| !name.starts_with("any"))
        .collect();
    names.sort();
    names
}

async fn runners_hear_of_and_claim_only_their_pool_s_deployments(backend: Backend) {
    let server = TestApi::start(backend).await;
    let (rs, rp) = pools(&server).await;
    let mut staging_ws = server.ws(&rs).await;
    staging_ws.subscribe(QUEUED, json!({})).await;
    let mut prod_ws = server.ws(&rp).await;
    prod_ws.subscribe(QUEUED, json!({})).await;
    // Each listens once it hears of a deployment any runner may take (each
    // to an environment `anyN` of its own, since later ones would wait).
    let mut n = 0;
    for ws in [&mut staging_ws, &mut prod_ws] {
        ws.next_while(|| {
            n += 1;
            server.deploy("web", format!("any{n}"))
        })
        .await
        .unwrap();
    }

    let prod = server.deploy("web", "prod").await;
    let staging = server.deploy("web", "staging").await;
    let dev = server.deploy("web", "dev").await;
    assert_eq!(heard(&mut staging_ws).await, [staging.clone(), dev.clone()]);
    assert_eq!(heard(&mut prod_ws).await, [prod.clone(), dev]);

    // What each may claim, and what an admin sees.
    let listed = server.ok(&rs, CLAIMABLE, json!({})).await;
    assert_eq!(
        env_names(&listed["claimableDeployments"]),
        ["dev", "staging"]
    );
    let listed = server.ok(&rp, CLAIMABLE, json!({})).await;
    assert_eq!(env_names(&listed["claimableDeployments"]), ["dev", "prod"]);
    let listed = server.ok_as(Role::Admin, CLAIMABLE, json!({})).await;
    assert_eq!(
        env_names(&listed["claimableDeployments"]),
        ["dev", "prod", "staging"]
    );

    // A runner of the other pool is refused, saying why; changing nothing.
    let (code, message) = error_of(&server.claim("rs", &prod).await);
    assert_eq!(code, "CONFLICT");
    assert!(
        message.contains("for a runner with swarm=prod and region=eu")
            && message.contains("environment `prod`")
            && message.contains("has swarm=staging"),
        "{message}"
    );
    assert_eq!(server.status(&prod).await["status"], "QUEUED");
    let claimed = server.claim("rp", &prod).await;
    assert!(claimed.get("errors").is_none(), "{claimed}");
    let claimed = server.claim("rs", &staging).await;
    assert!(claimed.get("errors").is_none(), "{claimed}");
}

async fn plans_go_only_to_runners_of_the_environment_s_pool(backend: Backend) {
    let server = TestApi::start(backend).await;
    let (rs, rp) = pools(&server).await;
    let request = "mutation($e: String!) { requestPlan(application: \"web\", environment: $e, ref: \"main\") { id } }";
    let deployer = server.token(Role::Deployer, "ada");
    let plan = server.ok(&deployer, request, json!({"e": "prod"})).await["requestPlan"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let requested = "{ requestedPlans { id } }";
    assert_eq!(
        server.ok(&rs, requested, json!({})).await["requestedPlans"],
        json!([])
    );
    assert_eq!(
        server.ok(&rp, requested, json!({})).await["requestedPlans"],
        json!([{"id": plan}])
    );
    let claim = "mutation($id: ID!) { claimPlan(id: $id) { id status } }";
    let (code, message) = server.err(&rs, claim, json!({"id": plan})).await;
    assert_eq!(code, "CONFLICT");
    assert!(
        message.contains("plan") && message.contains("swarm=prod"),
        "{message}"
    );
    let taken = server.ok(&rp, claim, json!({"id": plan})).await;
    assert_eq!(taken["claimPlan"]["status"], "RUNNING");
}

async fn a_deployment_no_connected_runner_may_take_says_so(backend: Backend) {
    let clock = Clock::manual("2026-01-01T00:00:00Z".parse().unwrap());
    let server = TestApi::start_with(backend, clock.clone(), Settings::default()).await;
    server.create_app("web").await;
    let admin = server.token(Role::Admin, "admin");
    server
        .ok(
            &admin,
            CREATE_ENV,
            json!({"a": "web", "n": "prod", "l": ["swarm=prod-eu"]}),
        )
        .await;
    let prod = server.deploy("web", "prod").await;
    let dev = server.deploy("web", "dev").await;
    runners::explain_waiting(&server.state).await.unwrap();
    assert_eq!(
        server.status(&prod).await["message"],
        "waiting: no runner with swarm=prod-eu is connected"
    );
    assert_eq!(
        server.status(&dev).await["message"],
        "waiting: no runner is connected"
    );

    // A runner of another pool connects: dev may go, prod still waits.
    let other = server.token(Role::Runner, "other");
    server
        .ok(&other, REGISTER, json!({"l": ["swarm=us"]}))
        .await;
    runners::explain_waiting(&server.state).await.unwrap();
    assert_eq!(server.status(&dev).await["message"], Value::Null);
    assert_eq!(
        server.status(&prod).await["message"],
        "waiting: no runner with swarm=prod-eu is connected"
    );

    // One of its pool connects: the message goes.
    let rp = server.token(Role::Runner, "rp");
    server
        .ok(&rp, REGISTER, json!({"l": ["swarm=prod-eu"]}))
        .await;
    runners::explain_waiting(&server.state).await.unwrap();
    assert_eq!(server.status(&prod).await["message"], Value::Null);

    // Both go quiet for longer than 30 s: lost, and the messages come back.
    clock.advance(chrono::Duration::seconds(31));
    runners::explain_waiting(&server.state).await.unwrap();
    assert_eq!(
        server.status(&prod).await["message"],
        "waiting: no runner with swarm=prod-eu is connected"
    );
    let listed = server
        .ok_as(
            Role::Viewer,
            "{ runners { name health labels } }",
            json!({}),
        )
        .await;
    assert_eq!(
        listed["runners"],
        json!([
            {"name": "other", "health": "LOST", "labels": ["swarm=us"]},
            {"name": "rp", "health": "LOST", "labels": ["swarm=prod-eu"]},
        ])
    );
    // A message that is not the waiting one is never touched.
    let claimed = server.claim("rp", &prod).await;
    assert!(claimed.get("errors").is_none(), "{claimed}");
    runners::explain_waiting(&server.state).await.unwrap();
    let d = server.status(&prod).await;
    assert!(
        d["message"].as_str().unwrap().starts_with("claimed by"),
        "{d}"
    );
}

async fn an_open_subscription_keeps_its_runner_connected(backend: Backend) {
    let clock = Clock::manual("2026-01-01T00:00:00Z".parse().unwrap());
    let server = TestApi::start_with(backend, clock.clone(), Settings::default()).await;
    server.create_app("web").await;
    let token = server.token(Role::Runner, "r1");
    server.ok(&token, REGISTER, json!({"l": []})).await;
    let health = || async {
        server
            .ok_as(
                Role::Viewer,
                "{ runners { health lastSeenAt holds { id } } }",
                json!({}),
            )
            .await["runners"][0]
            .clone()
    };
    clock.advance(chrono::Duration::seconds(60));
    assert_eq!(health().await["health"], "LOST");
    // Subscribed, it is there at once (and every 10 s after).
    let mut ws = server.ws(&token).await;
    ws.subscribe(QUEUED, json!({})).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while health().await["health"] != "CONNECTED" {
        assert!(std::time::Instant::now() < deadline, "{}", health().await);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let id = server.deploy("web", "prod").await;
    assert!(server.claim("r1", &id).await.get("errors").is_none());
    assert_eq!(health().await["holds"], json!([{"id": id}]));
    drop(ws);
    clock.advance(chrono::Duration::seconds(31));
    assert_eq!(health().await["health"], "LOST");
}

async fn labels_are_checked_and_bad_ones_change_nothing(backend: Backend) {
    let server = TestApi::start(backend).await;
    server.create_app("web").await;
    let admin = server.token(Role::Admin, "admin");
    let set = "mutation($l: [String!]!) { setRunnerLabels(application: \"web\", environment: \"prod\", labels: $l) { runnerLabels } }";
    server.deploy("web", "prod").await;
    let set_to = server
        .ok(
            &admin,
            set,
            json!({"l": ["swarm=prod", "swarm=prod", "gpu"]}),
        )
        .await;
    assert_eq!(
        set_to["setRunnerLabels"]["runnerLabels"],
        json!(["swarm=prod", "gpu"])
    );
    for bad in [
        json!(["a b"]),
        json!([""]),
        json!(["a,b"]),
        json!(["x".repeat(129)]),
    ] {
        let (code, message) = server.err(&admin, set, json!({"l": bad})).await;
        assert_eq!(code, "BAD_USER_INPUT", "{bad}: {message}");
        assert!(message.contains("label"), "{message}");
    }
    let runner = server.token(Role::Runner, "r1");
    let (code, _) = server.err(&runner, REGISTER, json!({"l": ["a\tb"]})).await;
    assert_eq!(code, "BAD_USER_INPUT");
    let (code, _) = server
        .err(&server.token(Role::Deployer, "ada"), set, json!({"l": []}))
        .await;
    assert_eq!(code, "FORBIDDEN");
    let now = server
        .ok_as(
            Role::Viewer,
            "{ application(name: \"web\") { environment(name: \"prod\") { runnerLabels } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        now["application"]["environment"]["runnerLabels"],
        json!(["swarm=prod", "gpu"])
    );
    // Empty: any runner again.
    let cleared = server.ok(&admin, set, json!({"l": []})).await;
    assert_eq!(cleared["setRunnerLabels"]["runnerLabels"], json!([]));
}

slipway_testkit::on_both_backends!(
    runners_hear_of_and_claim_only_their_pool_s_deployments,
    plans_go_only_to_runners_of_the_environment_s_pool,
    a_deployment_no_connected_runner_may_take_says_so,
    an_open_subscription_keeps_its_runner_connected,
    labels_are_checked_and_bad_ones_change_nothing,
    what_runs_where_is_reported_by_a_runner_of_the_pool_and_judged_against_the_release,
);

const REPORT: &str = "mutation($e: String!, $s: [ObservedServiceInput!]!) {
    reportObserved(application: \"web\", environment: $e, services: $s) { name }
}";
const NODES: &str = "{ application(name: \"web\") { environment(name: \"prod\") {
    nodes { observedBy consistent drift services { name replicas running tasks { node digest state } } }
    release { consistent }
} } }";

async fn what_runs_where_is_reported_by_a_runner_of_the_pool_and_judged_against_the_release(
    backend: Backend,
) {
    let server = TestApi::start(backend).await;
    let (rs, rp) = pools(&server).await;
    let nodes = || async { server.ok_as(Role::Viewer, NODES, json!({})).await };
    assert_eq!(
        nodes().await["application"]["environment"]["nodes"],
        Value::Null
    );
    let web = |digest: &str, state: &str| {
        json!([{"name": "web_web", "replicas": 2, "tasks": [
            {"node": "node-1", "digest": "sha256:aaaa", "state": "running"},
            {"node": "node-2", "digest": digest, "state": state},
        ]}])
    };

    // Only a runner of the pool may say; bad reports change nothing.
    let (code, message) = server
        .err(
            &rs,
            REPORT,
            json!({"e": "prod", "s": web("sha256:aaaa", "running")}),
        )
        .await;
    assert_eq!(code, "CONFLICT", "{message}");
    let twice = json!([{"name": "a", "tasks": []}, {"name": "a", "tasks": []}]);
    let (code, message) = server
        .err(&rp, REPORT, json!({"e": "prod", "s": twice}))
        .await;
    assert_eq!(
        (code.as_str(), message.contains("twice")),
        ("BAD_USER_INPUT", true),
        "{message}"
    );
    let control = json!([{"name": "a", "tasks": [{"state": "run\u{7}ning"}]}]);
    let (code, _) = server
        .err(&rp, REPORT, json!({"e": "prod", "s": control}))
        .await;
    assert_eq!(code, "BAD_USER_INPUT");
    assert_eq!(
        nodes().await["application"]["environment"]["nodes"],
        Value::Null
    );

    // Before any release, nothing is consistent.
    server
        .ok(
            &rp,
            REPORT,
            json!({"e": "prod", "s": web("sha256:aaaa", "running")}),
        )
        .await;
    let env = nodes().await["application"]["environment"].clone();
    assert_eq!(env["nodes"]["observedBy"], "rp");
    assert_eq!(env["nodes"]["consistent"], false);
    assert_eq!(
        env["nodes"]["drift"],
        json!(["the environment has no release"])
    );
    assert_eq!(env["nodes"]["services"][0]["running"], 2);

    // A release of sha256:aaaa: consistent once a runner looked again.
    let id = server.deploy("web", "prod").await;
    assert!(server.claim("rp", &id).await.get("errors").is_none());
    server
        .ok(
            &rp,
            "mutation($id: ID!, $s: [ServiceImageInput!]) { finishDeployment(id: $id, status: SUCCEEDED, services: $s) { id } }",
            json!({"id": id, "s": [{"name": "web_web", "image": "shop/web:1@sha256:aaaa", "digest": "sha256:aaaa"}]}),
        )
        .await;
    let env = nodes().await["application"]["environment"].clone();
    assert_eq!(
        env["release"]["consistent"],
        Value::Null,
        "not looked at since: {env}"
    );
    server
        .ok(
            &rp,
            REPORT,
            json!({"e": "prod", "s": web("sha256:aaaa", "running")}),
        )
        .await;
    let env = nodes().await["application"]["environment"].clone();
    assert_eq!(env["nodes"]["consistent"], true, "{env}");
    assert_eq!(env["release"]["consistent"], true, "{env}");

    // A node left on an old digest, pending: drift.
    server
        .ok(
            &rp,
            REPORT,
            json!({"e": "prod", "s": web("sha256:bbbb", "pending")}),
        )
        .await;
    let env = nodes().await["application"]["environment"].clone();
    assert_eq!(env["release"]["consistent"], false, "{env}");
    assert_eq!(
        env["nodes"]["drift"],
        json!([
            "web_web on node-2 runs bbbb, not the release's aaaa",
            "web_web on node-2 is pending",
            "web_web runs 1 of 2 tasks",
        ])
    );
}
