//! Tokens and the role matrix.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use slipway_api::auth::{roles, Claims, Keys, Role};

use slipway_testkit::api::{error_of, Backend, TestApi, Ws, SECRET};

const ALL_ROLES: [Role; 5] = [
    Role::Admin,
    Role::Deployer,
    Role::Viewer,
    Role::Runner,
    Role::Provider,
];

fn claims(exp_in: i64) -> Claims {
    let now = chrono::Utc::now().timestamp();
    Claims {
        sub: "alice".into(),
        role: Role::Deployer,
        exp: now + exp_in,
        iat: now,
    }
}

#[test]
fn a_signed_token_verifies_with_the_same_secret_only() {
    let keys = Keys::new(SECRET);
    let token = keys.issue(
        "alice",
        Role::Deployer,
        chrono::Duration::hours(1),
        chrono::Utc::now(),
    );
    let verified = keys.verify(&token).expect("own token verifies");
    assert_eq!(
        (verified.sub.as_str(), verified.role),
        ("alice", Role::Deployer)
    );
    let other = Keys::new(b"another-secret-of-some-length");
    assert_eq!(
        other.verify(&token).unwrap_err(),
        "token signature is invalid"
    );
}

#[test]
fn tokens_of_other_algorithms_or_none_are_refused() {
    let keys = Keys::new(SECRET);
    let hs384 = jsonwebtoken::encode(
        &Header::new(Algorithm::HS384),
        &claims(3600),
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap();
    assert_eq!(
        keys.verify(&hs384).unwrap_err(),
        "token algorithm must be HS256"
    );

    // An unsigned token: header {"alg":"none"}, claims, empty signature.
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = b64.encode(r#"{"alg":"none","typ":"JWT"}"#);
    let body = b64.encode(serde_json::to_string(&claims(3600)).unwrap());
    assert!(keys.verify(&format!("{header}.{body}.")).is_err());
}

#[test]
fn expired_tokens_and_tokens_without_exp_are_refused() {
    let keys = Keys::new(SECRET);
    let expired = keys.issue(
        "a",
        Role::Admin,
        chrono::Duration::hours(-1),
        chrono::Utc::now(),
    );
    assert_eq!(keys.verify(&expired).unwrap_err(), "token expired");

    let no_exp = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": "a", "role": "admin"}),
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap();
    let refused = keys.verify(&no_exp).unwrap_err();
    assert!(refused.contains("exp"), "{refused}");
}

/// Every query and mutation, with the roles that may call it.
fn operations() -> Vec<(&'static str, String, &'static [Role])> {
    let ops: Vec<(&str, &str, &[Role])> = vec![
        ("viewer", "{ viewer { subject role } }", roles::READ),
        ("applications", "{ applications { name } }", roles::READ),
        ("application", "{ application(name: \"web\") { name } }", roles::READ),
        ("deployment", "{ deployment(id: \"1\") { id } }", roles::READ),
        ("deployments", "{ deployments { edges { cursor } } }", roles::READ),
        ("claimableDeployments", "{ claimableDeployments { id } }", roles::READ),
        ("runners", "{ runners { name } }", roles::READ),
        ("plan", "{ plan(id: \"999\") { id } }", roles::READ),
        ("requestedPlans", "{ requestedPlans { id } }", roles::RUNNER),
        (
            "requestPlan",
            "mutation { requestPlan(application: \"web\", environment: \"subs\", ref: \"main\") { id } }",
            roles::DEPLOY,
        ),
        ("claimPlan", "mutation { claimPlan(id: \"999\") { id } }", roles::RUNNER),
        (
            "finishPlan",
            "mutation { finishPlan(id: \"999\", message: \"x\") { id } }",
            roles::RUNNER,
        ),
        (
            "createApplication",
            "mutation { createApplication(input: {name: \"m-ROLE\", repository: \"file:///r\"}) { name } }",
            roles::ADMIN,
        ),
        (
            "createEnvironment",
            "mutation { createEnvironment(input: {application: \"web\", name: \"e-ROLE\"}) { name } }",
            roles::ADMIN,
        ),
        (
            "lockEnvironment",
            "mutation { lockEnvironment(application: \"web\", environment: \"l-ROLE\", reason: \"r\") { name } }",
            roles::OPERATE,
        ),
        (
            "unlockEnvironment",
            "mutation { unlockEnvironment(application: \"web\", environment: \"l-ROLE\") { name } }",
            roles::OPERATE,
        ),
        (
            "createDeployment",
            "mutation { createDeployment(input: {application: \"web\", environment: \"d-ROLE\", ref: \"main\"}) { id } }",
            roles::DEPLOY,
        ),
        ("cancelDeployment", "mutation { cancelDeployment(id: \"999\") { id } }", roles::OPERATE),
        (
            "setApprovalPolicy",
            "mutation { setApprovalPolicy(application: \"web\", environment: \"subs\", required: false) { name } }",
            roles::ADMIN,
        ),
        (
            "addFreezeWindow",
            "mutation { addFreezeWindow(application: \"web\", environment: \"subs\", cron: \"0 0 1 1 *\", durationMinutes: 1, timeZone: \"UTC\", reason: \"ROLE\", mode: WAIT) { id } }",
            roles::ADMIN,
        ),
        ("removeFreezeWindow", "mutation { removeFreezeWindow(id: \"999\") { id } }", roles::ADMIN),
        (
            "setRequiredChecks",
            "mutation { setRequiredChecks(application: \"web\", environment: \"subs\", checks: []) { name } }",
            roles::ADMIN,
        ),
        (
            "reportChecks",
            "mutation { reportChecks(deployment: \"999\", sha: \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\", checks: []) { id } }",
            roles::PROVIDER,
        ),
        ("deploymentsAtGate", "{ deploymentsAtGate(kind: CHECKS) { id } }", roles::READ),
        ("approveDeployment", "mutation { approveDeployment(id: \"999\") { id } }", roles::OPERATE),
        ("rejectDeployment", "mutation { rejectDeployment(id: \"999\", comment: \"no\") { id } }", roles::OPERATE),
        ("overrideFreeze", "mutation { overrideFreeze(id: \"999\", reason: \"hotfix\") { id } }", roles::ADMIN),
        ("registerRunner", "mutation { registerRunner(labels: [\"a\"]) { name } }", roles::RUNNER),
        ("claimDeployment", "mutation { claimDeployment(id: \"999\") { id } }", roles::RUNNER),
        ("heartbeatDeployment", "mutation { heartbeatDeployment(id: \"999\") { id } }", roles::RUNNER),
        (
            "appendDeploymentLogs",
            "mutation { appendDeploymentLogs(id: \"999\", lines: [{text: \"x\"}]) { id } }",
            roles::RUNNER,
        ),
        (
            "updateDeploymentProgress",
            "mutation { updateDeploymentProgress(id: \"999\", phase: CLONING) { id } }",
            roles::RUNNER,
        ),
        (
            "reportDeploymentCommits",
            "mutation { reportDeploymentCommits(id: \"999\", commits: [{sha: \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\", parents: []}]) }",
            roles::RUNNER,
        ),
        (
            "finishDeployment",
            "mutation { finishDeployment(id: \"999\", status: FAILED) { id } }",
            roles::RUNNER,
        ),
    ];
    ops.into_iter()
        .map(|(name, query, allowed)| (name, query.to_owned(), allowed))
        .collect()
}

async fn every_field_checks_its_role(backend: Backend) {
    let server = TestApi::start(backend).await;
    server.create_app("web").await;
    // Deployment 1 has a finished log, so an allowed log subscription yields a line.
    let id = server.deploy("web", "subs").await;
    assert_eq!(id, "1", "the log subscription below names deployment 1");
    server.claim("r", &id).await;
    server
        .ok(
            &server.token(Role::Runner, "r"),
            "mutation { appendDeploymentLogs(id: \"1\", lines: [{text: \"hello\"}]) { id } }",
            json!({}),
        )
        .await;
    server.finish("r", &id, "SUCCEEDED").await;

    for (name, query, allowed) in operations() {
        let anonymous = server
            .gql(None, &query.replace("ROLE", "anon"), json!({}))
            .await;
        assert_eq!(
            error_of(&anonymous).0,
            "UNAUTHENTICATED",
            "{name} without a token"
        );
        for role in ALL_ROLES {
            let token = server.token(role, "someone");
            let query = query.replace("ROLE", role.as_str());
            let body = server.gql(Some(&token), &query, json!({})).await;
            let code = body["errors"][0]["extensions"]["code"].as_str();
            if allowed.contains(&role) {
                assert!(
                    !matches!(code, Some("FORBIDDEN" | "UNAUTHENTICATED")),
                    "{name} must be allowed for {role:?}: {body}"
                );
            } else {
                assert_eq!(
                    code,
                    Some("FORBIDDEN"),
                    "{name} must be refused to {role:?}: {body}"
                );
                assert!(body["data"].is_null() || body["data"][name].is_null());
            }
        }
    }

    let subscriptions: [(&str, &str, &[Role]); 4] = [
        (
            "planRequested",
            "subscription { planRequested { id } }",
            roles::RUNNER,
        ),
        (
            "deploymentQueued",
            "subscription { deploymentQueued { id } }",
            roles::RUNNER,
        ),
        (
            "deploymentEvents",
            "subscription { deploymentEvents { id } }",
            roles::READ,
        ),
        (
            "deploymentLogs",
            "subscription { deploymentLogs(id: \"1\") { seq } }",
            roles::READ,
        ),
    ];
    let mut envs = 0;
    for (name, query, allowed) in subscriptions {
        for role in ALL_ROLES {
            let mut ws = server.ws(&server.token(role, "someone")).await;
            ws.subscribe(query, json!({})).await;
            if allowed.contains(&role) {
                let item = ws
                    .next_while(|| {
                        envs += 1;
                        let env = format!("s{envs}");
                        let server = &server;
                        async move {
                            server.deploy("web", &env).await;
                            server.request_plan("web", &env, "main").await;
                        }
                    })
                    .await;
                assert!(item.is_some(), "{name} yields for {role:?}");
                continue;
            }
            assert_eq!(
                ws.error_code().await,
                "FORBIDDEN",
                "{name} must be refused to {role:?}"
            );
        }
    }
}

async fn bad_tokens_are_unauthenticated_with_the_reason(backend: Backend) {
    let server = TestApi::start(backend).await;
    let other = Keys::new(b"not-the-server-secret-at-all").issue(
        "mallory",
        Role::Admin,
        chrono::Duration::hours(1),
        chrono::Utc::now(),
    );
    let (code, message) = server
        .err(&other, "{ applications { name } }", json!({}))
        .await;
    assert_eq!(
        (code.as_str(), message.as_str()),
        ("UNAUTHENTICATED", "token signature is invalid")
    );

    let body = server
        .http_raw_auth("Basic YWRtaW46YWRtaW4=", "{ applications { name } }")
        .await;
    assert_eq!(error_of(&body).0, "UNAUTHENTICATED");
}

async fn websockets_authenticate_in_connection_init(backend: Backend) {
    let server = TestApi::start(backend).await;
    let token = server.token(Role::Viewer, "v");
    Ws::connect(&server, "graphql-transport-ws", json!({"token": token}))
        .await
        .expect("{token} payload is accepted");
    Ws::connect(
        &server,
        "graphql-ws",
        json!({"authorization": format!("Bearer {token}")}),
    )
    .await
    .expect("the legacy protocol is accepted");

    let closed = Ws::connect(&server, "graphql-transport-ws", json!({}))
        .await
        .err()
        .expect("refused");
    assert_eq!(closed.code, 4403, "{closed:?}");
    let closed = Ws::connect(&server, "graphql-transport-ws", json!({"token": "garbage"}))
        .await
        .err()
        .expect("refused");
    assert_eq!(closed.code, 4403);
    assert!(closed.reason.contains("token"), "{closed:?}");
}

slipway_testkit::on_both_backends!(
    every_field_checks_its_role,
    bad_tokens_are_unauthenticated_with_the_reason,
    websockets_authenticate_in_connection_init,
);
