//! The audit log: a scenario of people and machines acting over GraphQL
//! (HTTP and WebSocket) and the web UI, then the log read back — every
//! action, who took it, from where, and how it ended; secrets left out.

use reqwest::StatusCode;
use serde_json::{json, Value};
use slipway_api::auth::Role;
use slipway_testkit::api::{Backend, TestApi};

use super::web::Browser;

const RUNNER: &str = "runner-1";

const LOG: &str = "query($first: Int, $after: String, $application: String, $actor: String) {
    auditLog(first: $first, after: $after, application: $application, actor: $actor) {
        pageInfo { hasNextPage endCursor }
        nodes {
            id at actor role via action application environment object arguments
            ip forwardedFor userAgent result error
        }
    }
}";

async fn log(server: &TestApi, variables: Value) -> Value {
    server.ok_as(Role::Admin, LOG, variables).await["auditLog"].clone()
}

/// The whole log, oldest first.
async fn everything(server: &TestApi) -> Vec<Value> {
    let mut all = log(server, json!({"first": 100})).await["nodes"]
        .as_array()
        .unwrap()
        .clone();
    all.reverse();
    all
}

fn summary(entry: &Value) -> (String, String, String, String) {
    let text = |key: &str| entry[key].as_str().unwrap_or("-").to_owned();
    (text("actor"), text("via"), text("action"), text("result"))
}

async fn every_action_of_a_scenario_is_in_the_audit_log(backend: Backend) {
    let server = TestApi::start(backend).await;
    let admin = server.token(Role::Admin, "ada");
    let http = reqwest::Client::new();
    let answer: Value = http
        .post(server.url("/graphql"))
        .bearer_auth(&admin)
        .header("user-agent", "slipway-cli/1.0")
        .header("x-forwarded-for", "203.0.113.9")
        .json(&json!({"query": "mutation { createApplication(input: {name: \"shop\", repository: \"https://github.com/acme/shop.git\"}) { name } }"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(answer.get("errors").is_none(), "{answer}");
    server
        .ok(
            &admin,
            "mutation { createEnvironment(input: {application: \"shop\", name: \"production\"}) { name } }",
            json!({}),
        )
        .await;
    server
        .ok(
            &admin,
            "mutation($input: SetNotificationInput!) { setNotification(input: $input) { notification { id } } }",
            json!({"input": {"application": "shop", "environment": "production", "kind": "WEBHOOK",
                             "target": "https://hooks.example.com/s3cr3t-path", "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                             "events": ["FAILED"]}}),
        )
        .await;

    // A deployer deploys over WebSocket; a viewer may not cancel it.
    let deployer = server.token(Role::Deployer, "dora");
    let mut ws = server.ws(&deployer).await;
    ws.subscribe(
        "mutation { createDeployment(input: {application: \"shop\", environment: \"production\", ref: \"main\"}) { id } }",
        json!({}),
    )
    .await;
    let created = ws.next().await.expect("the mutation's answer");
    let id = created["createDeployment"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let viewer = server.token(Role::Viewer, "vic");
    let (code, _) = server
        .err(
            &viewer,
            "mutation($id: ID!) { cancelDeployment(id: $id) { status } }",
            json!({"id": id}),
        )
        .await;
    assert_eq!(code, "FORBIDDEN");

    // The runner takes it; its heartbeats and progress are the deployment's.
    server.claim_ok(RUNNER, &id).await;
    server.progress(RUNNER, &id, "rolling out").await;
    server.finish(RUNNER, &id, "SUCCEEDED").await;

    // A person in the web UI locks the environment and tries to cancel
    // what is already done.
    let browser = Browser::sign_in(&server, Role::Deployer, "pat").await;
    let csrf = browser.csrf().await;
    let locked = browser
        .post(
            "/apps/shop/production/lock",
            &[("csrf", &csrf), ("reason", "release freeze")],
        )
        .await;
    assert_eq!(locked.status(), StatusCode::SEE_OTHER);
    let cancel = browser
        .post(&format!("/deployments/{id}/cancel"), &[("csrf", &csrf)])
        .await;
    assert_eq!(cancel.status(), StatusCode::CONFLICT);

    let all = everything(&server).await;
    let seen: Vec<_> = all.iter().map(summary).collect();
    let expected = [
        ("ada", "GRAPHQL", "createApplication", "OK"),
        ("ada", "GRAPHQL", "createEnvironment", "OK"),
        ("ada", "GRAPHQL", "setNotification", "OK"),
        ("dora", "GRAPHQL", "createDeployment", "OK"),
        ("vic", "GRAPHQL", "cancelDeployment", "FORBIDDEN"),
        (RUNNER, "GRAPHQL", "claimDeployment", "OK"),
        (RUNNER, "GRAPHQL", "finishDeployment", "OK"),
        ("pat", "WEB", "signIn", "OK"),
        ("pat", "WEB", "lockEnvironment", "OK"),
        ("pat", "WEB", "cancelDeployment", "CONFLICT"),
    ];
    let expected: Vec<_> = expected
        .iter()
        .map(|(a, b, c, d)| (a.to_string(), b.to_string(), c.to_string(), d.to_string()))
        .collect();
    assert_eq!(seen, expected, "{all:#?}");

    let created_app = &all[0];
    assert_eq!(created_app["role"], "admin");
    assert_eq!(created_app["application"], "shop");
    assert_eq!(created_app["ip"], "127.0.0.1");
    assert_eq!(created_app["userAgent"], "slipway-cli/1.0");
    assert_eq!(created_app["forwardedFor"], "203.0.113.9");
    let notification = &all[2];
    let arguments = notification["arguments"].as_str().unwrap();
    assert!(arguments.contains("\"events\":[\"FAILED\"]"), "{arguments}");
    assert!(!arguments.contains("s3cr3t"), "a target kept: {arguments}");
    assert!(!arguments.contains("whsec_"), "a secret kept: {arguments}");
    let deployed = &all[3];
    assert_eq!(deployed["environment"], "production");
    assert_eq!(deployed["ip"], "127.0.0.1");
    let refused = &all[4];
    assert_eq!(refused["object"], format!("deployment {id}"));
    assert_eq!(refused["application"], "shop", "named from the deployment");
    assert_eq!(refused["role"], "viewer");
    assert!(refused["error"].as_str().unwrap().contains("viewer"));
    assert_eq!(all[6]["role"], "runner");
    let lock = &all[8];
    assert_eq!(lock["application"], "shop");
    assert_eq!(lock["environment"], "production");
    assert_eq!(lock["role"], "deployer");
    let arguments = lock["arguments"].as_str().unwrap();
    assert!(arguments.contains("release freeze"), "{arguments}");
    assert!(
        !arguments.contains(&csrf),
        "the CSRF token kept: {arguments}"
    );
    assert_eq!(all[9]["object"], format!("deployment {id}"));
    let sign_in = all[7]["arguments"].as_str().unwrap();
    assert!(sign_in.contains("\"code\":\"(not kept)\""), "{sign_in}");

    // Filters and pages.
    let dora = log(&server, json!({"actor": "dora"})).await;
    assert_eq!(dora["nodes"].as_array().unwrap().len(), 1);
    let none = log(&server, json!({"application": "billing"})).await;
    assert_eq!(none["nodes"], json!([]));
    let shop = log(&server, json!({"application": "shop", "first": 4})).await;
    assert_eq!(shop["nodes"].as_array().unwrap().len(), 4);
    assert_eq!(shop["pageInfo"]["hasNextPage"], true);
    let cursor = shop["pageInfo"]["endCursor"].as_str().unwrap();
    let rest = log(&server, json!({"application": "shop", "after": cursor})).await;
    let paged = 4 + rest["nodes"].as_array().unwrap().len();
    let of_shop = all.iter().filter(|e| e["application"] == "shop").count();
    assert_eq!(paged, of_shop);
    assert_eq!(of_shop, all.len() - 1, "all but signing in name shop");

    // Only admins read it.
    for role in [Role::Deployer, Role::Viewer, Role::Runner, Role::Provider] {
        let (code, _) = server
            .err(&server.token(role, "someone"), LOG, json!({}))
            .await;
        assert_eq!(code, "FORBIDDEN", "{role:?}");
    }
}

async fn entries_outlive_what_they_name(backend: Backend) {
    let server = TestApi::start(backend).await;
    server.create_app("shop").await;
    server
        .ok_as(
            Role::Admin,
            "mutation { createEnvironment(input: {application: \"shop\", name: \"production\"}) { name } }",
            json!({}),
        )
        .await;
    let added = server
        .ok_as(
            Role::Admin,
            "mutation { addFreezeWindow(application: \"shop\", environment: \"production\", cron: \"0 16 * * FRI\",
                durationMinutes: 60, timeZone: \"Europe/Berlin\", reason: \"weekend\", mode: WAIT) { id } }",
            json!({}),
        )
        .await;
    let window = added["addFreezeWindow"]["id"].as_str().unwrap().to_owned();
    server
        .ok_as(
            Role::Admin,
            "mutation($id: ID!) { removeFreezeWindow(id: $id) { id } }",
            json!({"id": window}),
        )
        .await;
    // An anonymous caller is recorded too.
    let anonymous = server
        .gql(None, "mutation { createApplication(input: {name: \"x\", repository: \"https://example.com/x.git\"}) { name } }", json!({}))
        .await;
    assert!(anonymous.get("errors").is_some());

    let all = everything(&server).await;
    let added = all
        .iter()
        .find(|e| e["action"] == "addFreezeWindow")
        .unwrap();
    assert!(added["arguments"].as_str().unwrap().contains("weekend"));
    let removed = all
        .iter()
        .find(|e| e["action"] == "removeFreezeWindow")
        .unwrap();
    assert_eq!(removed["object"], format!("freeze window {window}"));
    assert_eq!(removed["result"], "OK");
    let last = all.last().unwrap();
    assert_eq!(last["actor"], "(anonymous)");
    assert_eq!(last["result"], "UNAUTHENTICATED");
    assert!(last["role"].is_null());
}

slipway_testkit::on_both_backends!(
    every_action_of_a_scenario_is_in_the_audit_log,
    entries_outlive_what_they_name,
);
