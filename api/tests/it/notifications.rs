//! Notifications: signed webhooks and Slack messages out of the outbox the
//! database's triggers fill, against receivers on 127.0.0.1 that check what
//! the real ones check. Retries move by the manual clock, never by sleeping.

use std::collections::BTreeSet;
use std::time::Duration as StdDuration;

use chrono::Duration;
use serde_json::{json, Value};
use slipway_api::auth::Role;
use slipway_api::{Clock, Settings};
use slipway_testkit::api::{Backend, TestApi};
use slipway_testkit::fakes::slack::{self, FakeSlack};
use slipway_testkit::fakes::webhooks::{Answer, FakeWebhooks};

const RUNNER: &str = "runner-1";
const WITHIN: StdDuration = StdDuration::from_secs(20);

const SET: &str = "mutation($input: SetNotificationInput!) {
    setNotification(input: $input) {
        notification { id kind target events disabled { at reason } }
        secret
    }
}";

const DELIVERIES: &str = "query($id: ID!) { deployment(id: $id) { environment {
    deliveries(first: 50) { nodes {
        id messageId event state attempts occurredAt nextAttemptAt lastAnswer deliveredAt
        deployment { id } notification { id }
    } }
} } }";

const NOTIFICATIONS: &str = "{ application(name: \"shop\") { environments {
    name notifications { id kind target events createdBy disabled { at reason } removedAt }
} } }";

fn sha(n: u8) -> String {
    format!("{n:x}").repeat(40)[..40].to_owned()
}

async fn shop(server: &TestApi) {
    server
        .app(
            "shop",
            "https://github.com/acme/shop.git",
            &[("production", None, None)],
        )
        .await;
}

/// Sets a notification of production; returns the whole answer.
async fn set(server: &TestApi, kind: &str, target: &str, events: &[&str]) -> Value {
    set_input(
        server,
        json!({"application": "shop", "environment": "production",
               "kind": kind, "target": target, "events": events}),
    )
    .await
}

async fn set_input(server: &TestApi, input: Value) -> Value {
    server
        .ok_as(Role::Admin, SET, json!({"input": input}))
        .await["setNotification"]
        .clone()
}

/// A signed webhook on production for `events`, its secret given to the
/// receiver.
async fn webhook(server: &TestApi, receiver: &FakeWebhooks, events: &[&str]) -> Value {
    let set = set(server, "WEBHOOK", &receiver.url("/hooks/slipway"), events).await;
    let secret = set["secret"]
        .as_str()
        .expect("a secret made for the webhook");
    assert!(secret.starts_with("whsec_"), "{secret}");
    receiver.set_secret(secret);
    set
}

async fn deliveries(server: &TestApi, id: &str) -> Vec<Value> {
    let data = server
        .ok_as(Role::Admin, DELIVERIES, json!({"id": id}))
        .await;
    data["deployment"]["environment"]["deliveries"]["nodes"]
        .as_array()
        .unwrap()
        .clone()
}

/// Waits until every delivery of `id`'s environment is out of PENDING.
async fn settled(server: &TestApi, id: &str) -> Vec<Value> {
    slipway_testkit::wait::until("every delivery to settle", WITHIN, || async {
        let all = deliveries(server, id).await;
        match all.iter().find(|d| d["state"] == "PENDING") {
            None => Ok(all),
            Some(pending) => Err(format!("still pending: {pending}")),
        }
    })
    .await
}

async fn webhooks_are_signed_and_sent_once_in_order(backend: Backend) {
    let receiver = FakeWebhooks::start().await;
    let server = TestApi::start(backend).await;
    shop(&server).await;
    webhook(&server, &receiver, &["QUEUED", "STARTED", "SUCCEEDED"]).await;

    let id = server
        .deploy_ref("shop", "production", "main", Some(&sha(1)))
        .await;
    let queued = receiver.wait_for(1, WITHIN).await;
    server.claim_ok(RUNNER, &id).await;
    let started = receiver.wait_for(2, WITHIN).await;
    server.finish(RUNNER, &id, "SUCCEEDED").await;
    let all = receiver.wait_for(3, WITHIN).await;
    assert_eq!(queued[0].id, all[0].id);
    assert_eq!(started[1].id, all[1].id);

    let types: Vec<&str> = all
        .iter()
        .map(|r| r.body["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "deployment.queued",
            "deployment.started",
            "deployment.succeeded"
        ]
    );
    let statuses: Vec<&str> = all
        .iter()
        .map(|r| r.body["data"]["deployment"]["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["QUEUED", "IN_PROGRESS", "SUCCEEDED"]);
    for received in &all {
        assert!(
            received.verified,
            "not signed with the secret: {received:?}"
        );
        assert_eq!(received.path, "/hooks/slipway");
        let deployment = &received.body["data"]["deployment"];
        assert_eq!(deployment["id"], id.as_str());
        assert_eq!(deployment["application"]["name"], "shop");
        assert_eq!(deployment["environment"]["name"], "production");
        assert_eq!(deployment["sha"], sha(1).as_str());
        assert!(received.body["timestamp"].is_string(), "{}", received.body);
    }
    let ids: BTreeSet<&str> = all.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids.len(), 3, "one id per message: {ids:?}");

    let recorded = settled(&server, &id).await;
    assert_eq!(recorded.len(), 3);
    for delivery in &recorded {
        assert_eq!(delivery["state"], "DELIVERED", "{delivery}");
        assert_eq!(delivery["attempts"], 1);
        assert_eq!(delivery["lastAnswer"], "HTTP 204");
        assert!(delivery["deliveredAt"].is_string());
        assert!(ids.contains(delivery["messageId"].as_str().unwrap()));
    }
    assert_eq!(receiver.received().len(), 3, "sent once each");
}

async fn a_failing_receiver_is_retried_on_schedule_with_the_same_message(backend: Backend) {
    let receiver = FakeWebhooks::start().await;
    receiver.answer([Answer::Status(500), Answer::Status(503)]);
    let clock = Clock::manual("2026-11-27T10:00:00Z".parse().unwrap());
    let server = TestApi::start_with(backend, clock.clone(), Settings::default()).await;
    shop(&server).await;
    webhook(&server, &receiver, &["SUCCEEDED"]).await;
    let id = server.deploy("shop", "production").await;
    server.claim_ok(RUNNER, &id).await;
    server.finish(RUNNER, &id, "SUCCEEDED").await;

    receiver.wait_for(1, WITHIN).await;
    let first = slipway_testkit::wait::until("the first attempt recorded", WITHIN, || async {
        let d = deliveries(&server, &id).await.remove(0);
        if d["attempts"] == 1 {
            Ok(d)
        } else {
            Err(d.to_string())
        }
    })
    .await;
    assert_eq!(first["state"], "PENDING");
    assert_eq!(first["lastAnswer"], "HTTP 500: the receiver answers 500");
    let occurred: chrono::DateTime<chrono::Utc> =
        first["occurredAt"].as_str().unwrap().parse().unwrap();
    let next: chrono::DateTime<chrono::Utc> =
        first["nextAttemptAt"].as_str().unwrap().parse().unwrap();
    assert_eq!(next - occurred, Duration::seconds(5), "{first}");

    clock.advance(Duration::seconds(5));
    receiver.wait_for(2, WITHIN).await;
    let second = slipway_testkit::wait::until("the second attempt recorded", WITHIN, || async {
        let d = deliveries(&server, &id).await.remove(0);
        if d["attempts"] == 2 {
            Ok(d)
        } else {
            Err(d.to_string())
        }
    })
    .await;
    let next: chrono::DateTime<chrono::Utc> =
        second["nextAttemptAt"].as_str().unwrap().parse().unwrap();
    assert_eq!(next - occurred, Duration::seconds(5) + Duration::minutes(5));
    assert_eq!(second["lastAnswer"], "HTTP 503: the receiver answers 503");

    clock.advance(Duration::minutes(5));
    let all = receiver.wait_for(3, WITHIN).await;
    let done = settled(&server, &id).await.remove(0);
    assert_eq!(done["state"], "DELIVERED");
    assert_eq!(done["attempts"], 3);
    assert!(done["nextAttemptAt"].is_null());

    assert!(all.iter().all(|r| r.verified));
    assert!(all.iter().all(|r| r.id == all[0].id), "one message id");
    assert!(all.iter().all(|r| r.raw == all[0].raw), "one body");
    assert_eq!(all[0].id, done["messageId"].as_str().unwrap());
}

async fn a_gone_receiver_disables_its_notification(backend: Backend) {
    let receiver = FakeWebhooks::start().await;
    receiver.answer([Answer::Hold(410)]);
    let server = TestApi::start(backend).await;
    shop(&server).await;
    let set = webhook(&server, &receiver, &["QUEUED", "STARTED"]).await;
    let notification = set["notification"]["id"].as_str().unwrap().to_owned();

    // The first message is held; a second deployment owes one more.
    let first = server.deploy("shop", "production").await;
    receiver.wait_for(1, WITHIN).await;
    let second = server.deploy("shop", "production").await;
    receiver.release();
    let recorded = settled(&server, &first).await;
    assert_eq!(recorded.len(), 2, "{recorded:?}");
    for delivery in &recorded {
        assert_eq!(delivery["state"], "DISCARDED", "{delivery}");
    }
    let gone = recorded
        .iter()
        .find(|d| d["deployment"]["id"] == first.as_str())
        .unwrap();
    assert_eq!(gone["lastAnswer"], "HTTP 410: the receiver answers 410");
    let owed = recorded
        .iter()
        .find(|d| d["deployment"]["id"] == second.as_str())
        .unwrap();
    assert_eq!(owed["attempts"], 0, "never sent: {owed}");

    let data = server.ok_as(Role::Admin, NOTIFICATIONS, json!({})).await;
    let shown = &data["application"]["environments"][0]["notifications"][0];
    assert_eq!(shown["id"], notification.as_str());
    let reason = shown["disabled"]["reason"].as_str().expect("disabled");
    assert!(reason.contains("410"), "{reason}");

    // A disabled notification is owed nothing new.
    server.claim_ok(RUNNER, &first).await;
    assert_eq!(deliveries(&server, &first).await.len(), 2);

    // Setting it again enables it.
    let again = set_input(
        &server,
        json!({"application": "shop", "environment": "production", "kind": "WEBHOOK",
               "target": receiver.url("/hooks/slipway"), "events": ["STARTED"],
               "secret": receiver_secret(&set)}),
    )
    .await;
    assert_eq!(again["notification"]["id"], notification.as_str());
    assert!(again["notification"]["disabled"].is_null(), "{again}");
    assert!(again["secret"].is_null(), "a given secret is not answered");
    server.finish(RUNNER, &first, "SUCCEEDED").await;
    server.claim_ok(RUNNER, &second).await;
    let received = receiver.wait_for(2, WITHIN).await;
    assert!(received[1].verified);
    assert_eq!(received[1].body["type"], "deployment.started");
    assert_eq!(
        received[1].body["data"]["deployment"]["id"],
        second.as_str()
    );
}

fn receiver_secret(set: &Value) -> String {
    set["secret"].as_str().unwrap().to_owned()
}

async fn slack_messages_say_what_happened_one_a_second(backend: Backend) {
    let slack = FakeSlack::start().await;
    let settings = Settings {
        public_url: Some("https://slipway.example.com".into()),
        ..Settings::default()
    };
    let server = TestApi::start_with(backend, Clock::system(), settings).await;
    shop(&server).await;
    let all = [
        "QUEUED",
        "STARTED",
        "SUCCEEDED",
        "FAILED",
        "ROLLED_BACK",
        "CANCELLED",
    ];
    let set = set(&server, "SLACK", &slack.webhook_url(), &all).await;
    assert!(set["secret"].is_null());
    assert_eq!(set["notification"]["events"], json!(all));

    let id = server
        .deploy_ref("shop", "production", "main", Some(&sha(10)))
        .await;
    server.claim_ok(RUNNER, &id).await;
    server
        .ok(
            &server.token(Role::Runner, RUNNER),
            "mutation($id: ID!) { updateDeploymentProgress(id: $id, phase: ROLLING_BACK, message: \"rolling back\") { status } }",
            json!({"id": id}),
        )
        .await;
    server
        .finish_with(
            RUNNER,
            &id,
            "FAILED",
            "service web did not converge: task exited with code 1 <@here>",
        )
        .await;
    let cancelled = server.deploy("shop", "production").await;
    server
        .ok_as(
            Role::Deployer,
            "mutation($id: ID!) { cancelDeployment(id: $id) { status } }",
            json!({"id": cancelled}),
        )
        .await;

    let messages = slack.wait_for(5, WITHIN).await;
    assert!(slack.refused().is_empty(), "refused: {:?}", slack.refused());
    for pair in messages.windows(2) {
        let gap = pair[1].at.duration_since(pair[0].at);
        assert!(gap >= StdDuration::from_millis(900), "{gap:?} apart");
    }
    let texts: Vec<&str> = messages
        .iter()
        .map(|m| m.body["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        texts,
        [
            "shop#1 is queued for production",
            "shop#1 started on production",
            "shop#1 failed and was rolled back on production",
            "shop#2 is queued for production",
            "shop#2 was cancelled on production",
        ]
    );

    let rolled_back = &messages[2].body["blocks"];
    let headline = rolled_back[0]["text"]["text"].as_str().unwrap();
    let link = format!("<https://slipway.example.com/deployments/{id}|shop#1>");
    assert!(headline.contains(&link), "{headline}");
    assert!(headline.contains("*production*"), "{headline}");
    let reason = rolled_back[1]["text"]["text"].as_str().unwrap();
    assert!(
        reason.contains("> service web did not converge: task exited with code 1 &lt;@here&gt;"),
        "escaped, quoted: {reason}"
    );
    let context = rolled_back[2]["elements"][0]["text"].as_str().unwrap();
    let commit = format!(
        "<https://github.com/acme/shop/commit/{}|{}>",
        sha(10),
        &sha(10)[..7]
    );
    assert!(context.contains(&commit), "{context}");
    assert!(context.contains("`main`"), "{context}");
    assert!(context.contains("by "), "{context}");
    assert!(context.contains("took "), "{context}");
    let started = messages[1].body["blocks"][1]["elements"][0]["text"]
        .as_str()
        .unwrap();
    assert!(started.contains(&format!("runner {RUNNER}")), "{started}");
    let cancelled_by = messages[4].body["blocks"][1]["elements"][0]["text"]
        .as_str()
        .unwrap();
    assert!(cancelled_by.contains("cancelled by"), "{cancelled_by}");
}

async fn a_restart_mid_delivery_loses_nothing_and_repeats_only_the_same_message(backend: Backend) {
    let receiver = FakeWebhooks::start().await;
    // The first message hangs until the API has gone.
    receiver.answer([Answer::Hold(204)]);
    let server = TestApi::start(backend).await;
    shop(&server).await;
    webhook(&server, &receiver, &["QUEUED", "STARTED", "SUCCEEDED"]).await;
    let id = server.deploy("shop", "production").await;
    let held = receiver.wait_for(1, WITHIN).await.remove(0);
    server.claim_ok(RUNNER, &id).await;
    server.finish(RUNNER, &id, "SUCCEEDED").await;

    let server = server.restart().await;
    let all = receiver.wait_for(4, WITHIN).await;
    receiver.release();
    let recorded = settled(&server, &id).await;
    assert!(
        recorded.iter().all(|d| d["state"] == "DELIVERED"),
        "{recorded:?}"
    );

    // The held message again, the same, then the rest, each once.
    assert_eq!(all[1].id, held.id);
    assert_eq!(all[1].raw, held.raw);
    let types: Vec<&str> = all
        .iter()
        .map(|r| r.body["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "deployment.queued",
            "deployment.queued",
            "deployment.started",
            "deployment.succeeded"
        ]
    );
    let ids: BTreeSet<&str> = all.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids.len(), 3, "{ids:?}");
    assert!(all.iter().all(|r| r.verified));
    assert_eq!(receiver.received().len(), 4);
}

async fn notification_input_is_checked_and_secrets_never_shown(backend: Backend) {
    let receiver = FakeWebhooks::start().await;
    let slack = FakeSlack::start().await;
    let server = TestApi::start(backend).await;
    shop(&server).await;
    let input = |kind: &str, target: &str, events: Value, secret: Option<&str>| {
        json!({"input": {"application": "shop", "environment": "production", "kind": kind,
                         "target": target, "events": events, "secret": secret}})
    };
    let hook = receiver.url("/hooks/slipway");
    let refused = [
        (
            input("WEBHOOK", "ftp://example.com/x", json!(["QUEUED"]), None),
            "BAD_USER_INPUT",
            "http",
        ),
        (
            input("WEBHOOK", "not a url", json!(["QUEUED"]), None),
            "BAD_USER_INPUT",
            "not a URL",
        ),
        (
            input("WEBHOOK", &hook, json!([]), None),
            "BAD_USER_INPUT",
            "event",
        ),
        (
            input("WEBHOOK", &hook, json!(["QUEUED"]), Some("whsec_c2hvcnQ=")),
            "BAD_USER_INPUT",
            "secret",
        ),
        (
            input("WEBHOOK", &hook, json!(["QUEUED"]), Some("not-a-secret")),
            "BAD_USER_INPUT",
            "whsec_",
        ),
        (
            input(
                "SLACK",
                &slack.webhook_url(),
                json!(["QUEUED"]),
                Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            ),
            "BAD_USER_INPUT",
            "secret",
        ),
    ];
    let admin = server.token(Role::Admin, "admin");
    for (variables, code, says) in refused {
        let (got, message) = server.err(&admin, SET, variables.clone()).await;
        assert_eq!(got, code, "{variables}: {message}");
        assert!(message.contains(says), "{variables}: {message}");
        assert!(
            !message.contains("whsec_MfKQ"),
            "a secret in an error: {message}"
        );
    }
    let mut unknown = input("WEBHOOK", &hook, json!(["QUEUED"]), None);
    unknown["input"]["environment"] = json!("staging");
    let (code, _) = server.err(&admin, SET, unknown).await;
    assert_eq!(code, "NOT_FOUND");
    for role in [Role::Deployer, Role::Viewer, Role::Runner] {
        let token = server.token(role, "someone");
        let (code, _) = server
            .err(
                &token,
                SET,
                input("WEBHOOK", &hook, json!(["QUEUED"]), None),
            )
            .await;
        assert_eq!(code, "FORBIDDEN", "{role:?}");
        let (code, _) = server.err(&token, NOTIFICATIONS, json!({})).await;
        assert_eq!(code, "FORBIDDEN", "{role:?} reads notifications");
    }
    let nothing = server.ok_as(Role::Admin, NOTIFICATIONS, json!({})).await;
    assert_eq!(
        nothing["application"]["environments"][0]["notifications"],
        json!([])
    );

    // Set, read back, set again: the same one, its secret and path unseen.
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let first = server
        .ok(
            &admin,
            SET,
            input("SLACK", &slack.webhook_url(), json!(["FAILED"]), None),
        )
        .await;
    let signed = server
        .ok(
            &admin,
            SET,
            input("WEBHOOK", &hook, json!(["QUEUED"]), Some(secret)),
        )
        .await;
    assert!(signed["setNotification"]["secret"].is_null());
    let again = server
        .ok(
            &admin,
            SET,
            input(
                "SLACK",
                &slack.webhook_url(),
                json!(["SUCCEEDED", "QUEUED"]),
                None,
            ),
        )
        .await;
    let slack_id = &first["setNotification"]["notification"]["id"];
    assert_eq!(&again["setNotification"]["notification"]["id"], slack_id);
    let data = server.ok_as(Role::Admin, NOTIFICATIONS, json!({})).await;
    let shown = &data["application"]["environments"][0]["notifications"];
    assert_eq!(shown.as_array().unwrap().len(), 2, "{shown}");
    assert_eq!(shown[0]["events"], json!(["QUEUED", "SUCCEEDED"]));
    assert_eq!(shown[0]["target"], format!("http://{}/…", slack.addr));
    assert_eq!(shown[0]["createdBy"], "admin");
    let id = server.deploy("shop", "production").await;
    receiver.set_secret(secret);
    receiver.wait_for(1, WITHIN).await;
    slack.wait_for(1, WITHIN).await;
    settled(&server, &id).await;
    for answer in [
        first.to_string(),
        signed.to_string(),
        again.to_string(),
        data.to_string(),
        server
            .ok_as(Role::Admin, DELIVERIES, json!({"id": id}))
            .await
            .to_string(),
    ] {
        assert!(
            !answer.contains(slack::PATH),
            "the Slack path shown: {answer}"
        );
        assert!(
            !answer.contains("/hooks/slipway"),
            "the webhook path shown: {answer}"
        );
        assert!(!answer.contains(secret), "the secret shown: {answer}");
    }

    // Removed: nothing more is owed to it, its deliveries stay on record.
    let removed = server
        .ok_as(
            Role::Admin,
            "mutation($id: ID!) { removeNotification(id: $id) { id removedAt } }",
            json!({"id": slack_id}),
        )
        .await;
    assert!(removed["removeNotification"]["removedAt"].is_string());
    let data = server.ok_as(Role::Admin, NOTIFICATIONS, json!({})).await;
    let shown = &data["application"]["environments"][0]["notifications"];
    assert_eq!(shown.as_array().unwrap().len(), 1, "{shown}");
    server.deploy("shop", "production").await;
    receiver.wait_for(2, WITHIN).await;
    let kept = deliveries(&server, &id).await;
    assert_eq!(kept.len(), 3, "{kept:?}");
    assert_eq!(slack.messages().len(), 1);
}

slipway_testkit::on_both_backends!(
    webhooks_are_signed_and_sent_once_in_order,
    a_failing_receiver_is_retried_on_schedule_with_the_same_message,
    a_gone_receiver_disables_its_notification,
    slack_messages_say_what_happened_one_a_second,
    a_restart_mid_delivery_loses_nothing_and_repeats_only_the_same_message,
    notification_input_is_checked_and_secrets_never_shown,
);
