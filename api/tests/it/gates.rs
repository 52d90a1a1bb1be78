//! Gates before a rollout: approvals and freeze windows. Time moves by the
//! manual clock, never by sleeping.

use chrono::Duration;
use serde_json::{json, Value};
use slipway_api::auth::Role;
use slipway_api::events::Event;
use slipway_api::{gates, Clock, Settings};

use slipway_testkit::api::{Backend, TestApi};

const RUNNER: &str = "runner-1";

const POLICY: &str = "mutation($r: Boolean!, $n: Boolean!) {
    setApprovalPolicy(application: \"web\", environment: \"production\", required: $r, notByCreator: $n) {
        approvalPolicy { required notByCreator }
    }
}";

const FREEZE: &str =
    "mutation($cron: String!, $d: Int!, $tz: String!, $r: String!, $m: FreezeMode!) {
    addFreezeWindow(application: \"web\", environment: \"production\", cron: $cron,
                    durationMinutes: $d, timeZone: $tz, reason: $r, mode: $m) {
        id cron timeZone mode reason activeUntil
    }
}";

const GATED: &str = "query($id: ID!) { deployment(id: $id) {
    status message
    gate { kind waitingFor since until }
    review { verdict by at comment }
    freezeOverride { by at reason }
} }";

const APPROVE: &str =
    "mutation($id: ID!, $c: String) { approveDeployment(id: $id, comment: $c) { status gate { kind } } }";
const REJECT: &str =
    "mutation($id: ID!, $c: String!) { rejectDeployment(id: $id, comment: $c) { status message } }";
const OVERRIDE: &str =
    "mutation($id: ID!, $r: String!) { overrideFreeze(id: $id, reason: $r) { status gate { kind } } }";

fn sha(n: u8) -> String {
    format!("{n:x}").repeat(40)[..40].to_owned()
}

/// 2026-11-27 is a Friday; Berlin is on CET (UTC+1) then. (The clock stays in the past: tokens are minted by the system clock.)
async fn start(backend: Backend, at: &str) -> (TestApi, Clock) {
    let clock = Clock::manual(at.parse().unwrap());
    let server = TestApi::start_with(backend, clock.clone(), Settings::default()).await;
    server
        .ok_as(
            Role::Admin,
            "mutation { createApplication(input: {name: \"web\", repository: \"https://github.com/acme/web.git\"}) { name } }",
            json!({}),
        )
        .await;
    (server, clock)
}

async fn production(server: &TestApi) {
    server
        .ok_as(
            Role::Admin,
            "mutation { createEnvironment(input: {application: \"web\", name: \"production\"}) { name } }",
            json!({}),
        )
        .await;
}

async fn gated(server: &TestApi, id: &str) -> Value {
    server.ok_as(Role::Viewer, GATED, json!({"id": id})).await["deployment"].clone()
}

async fn claimable(server: &TestApi) -> Vec<String> {
    let data = server
        .ok_as(Role::Runner, "{ claimableDeployments { id } }", json!({}))
        .await;
    data["claimableDeployments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Deploys `sha` to production as alice and lets it succeed: a release.
async fn released(server: &TestApi, sha: &str) -> String {
    let id = create_as(server, "alice", Some(sha), false).await;
    server.claim_ok(RUNNER, &id).await;
    server.finish(RUNNER, &id, "SUCCEEDED").await;
    id
}

async fn create_as(server: &TestApi, who: &str, sha: Option<&str>, auto: bool) -> String {
    let (role, who) = if auto {
        (Role::Provider, "github")
    } else {
        (Role::Deployer, who)
    };
    server
        .ok(
            &server.token(role, who),
            "mutation($input: CreateDeploymentInput!) { createDeployment(input: $input) { id } }",
            json!({"input": {"application": "web", "environment": "production", "ref": "main",
                             "sha": sha, "autoDeploy": auto}}),
        )
        .await["createDeployment"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn require_approval(server: &TestApi, not_by_creator: bool) -> Value {
    server
        .ok_as(Role::Admin, POLICY, json!({"r": true, "n": not_by_creator}))
        .await
}

async fn an_approval_holds_no_slot_and_a_rollback_goes_first(backend: Backend) {
    let (server, _clock) = start(backend, "2026-12-02T10:00:00Z").await;
    released(&server, &sha(1)).await;
    released(&server, &sha(2)).await;
    let set = require_approval(&server, true).await;
    assert_eq!(
        set["setApprovalPolicy"]["approvalPolicy"],
        json!({"required": true, "notByCreator": true})
    );

    let waiting = create_as(&server, "alice", Some(&sha(3)), false).await;
    let d = gated(&server, &waiting).await;
    assert_eq!(d["status"], "QUEUED");
    assert_eq!(d["gate"]["kind"], "APPROVAL");
    assert_eq!(
        d["gate"]["waitingFor"],
        "an approval by a deployer other than alice, who created it"
    );
    assert_eq!(d["gate"]["since"], "2026-12-02T10:00:00+00:00");
    assert!(d["review"].is_null());
    assert!(
        claimable(&server).await.is_empty(),
        "a gated deployment is not claimable"
    );
    let refused = server.claim(RUNNER, &waiting).await;
    assert_eq!(refused["errors"][0]["extensions"]["code"], "CONFLICT");
    let message = refused["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("waits for an approval by a deployer other than alice"),
        "{message}"
    );

    // A rollback, queued after it, goes first: it waits for no approval.
    let rollback = server
        .ok(
            &server.token(Role::Deployer, "bob"),
            "mutation { rollbackDeployment(application: \"web\", environment: \"production\", reason: \"errors\") { id gate { kind } } }",
            json!({}),
        )
        .await["rollbackDeployment"]
        .clone();
    assert!(rollback["gate"].is_null(), "{rollback}");
    let rollback = rollback["id"].as_str().unwrap().to_owned();
    assert_eq!(claimable(&server).await, [rollback.as_str()]);
    server.claim_ok(RUNNER, &rollback).await;
    server.finish(RUNNER, &rollback, "SUCCEEDED").await;

    // Its creator may not approve it; another deployer may, with a comment.
    let (code, message) = server
        .err(
            &server.token(Role::Deployer, "alice"),
            APPROVE,
            json!({"id": waiting}),
        )
        .await;
    assert_eq!(code, "FORBIDDEN", "{message}");
    assert!(
        message.contains("alice created deployment web#"),
        "{message}"
    );
    assert!(
        message.contains("needs the approval of another deployer"),
        "{message}"
    );
    assert_eq!(gated(&server, &waiting).await["gate"]["kind"], "APPROVAL");

    let mut events = server.state.events.subscribe();
    let approved = server
        .ok(
            &server.token(Role::Deployer, "bob"),
            APPROVE,
            json!({"id": waiting, "c": "checked the diff"}),
        )
        .await;
    assert_eq!(
        approved["approveDeployment"],
        json!({"status": "QUEUED", "gate": null})
    );
    let d = gated(&server, &waiting).await;
    assert_eq!(
        d["review"],
        json!({"verdict": "APPROVED", "by": "bob", "at": "2026-12-02T10:00:00+00:00", "comment": "checked the diff"})
    );
    assert_eq!(claimable(&server).await, [waiting.as_str()]);
    assert!(
        announced(&mut events, &waiting),
        "runners hear of the approved deployment"
    );

    // Approving twice is a conflict that says why.
    let (code, message) = server
        .err(
            &server.token(Role::Deployer, "carol"),
            APPROVE,
            json!({"id": waiting}),
        )
        .await;
    assert_eq!(code, "CONFLICT");
    assert!(
        message.contains("is not waiting for an approval"),
        "{message}"
    );
}

fn announced(events: &mut tokio::sync::broadcast::Receiver<Event>, id: &str) -> bool {
    let id: i64 = id.parse().unwrap();
    while let Ok(event) = events.try_recv() {
        if matches!(&event, Event::Queued(d) if d.deployment_id == id) {
            return true;
        }
    }
    false
}

async fn a_rejected_deployment_ends_cancelled_with_who_and_why(backend: Backend) {
    let (server, _clock) = start(backend, "2026-12-02T10:00:00Z").await;
    production(&server).await;
    require_approval(&server, false).await;
    let id = create_as(&server, "alice", None, false).await;
    let bob = server.token(Role::Deployer, "bob");
    let (code, message) = server.err(&bob, REJECT, json!({"id": id, "c": " "})).await;
    assert_eq!(code, "BAD_USER_INPUT");
    assert!(message.contains("`comment` must say why"), "{message}");

    let rejected = server
        .ok(&bob, REJECT, json!({"id": id, "c": "not during the sale"}))
        .await;
    assert_eq!(
        rejected["rejectDeployment"],
        json!({"status": "CANCELLED", "message": "rejected by bob: not during the sale"})
    );
    let d = gated(&server, &id).await;
    assert!(d["gate"].is_null());
    assert_eq!(d["review"]["verdict"], "REJECTED");
    assert_eq!(d["review"]["by"], "bob");
    assert_eq!(d["review"]["comment"], "not during the sale");
    // Without `notByCreator`, the creator may approve their own.
    let own = create_as(&server, "alice", None, false).await;
    server
        .ok(
            &server.token(Role::Deployer, "alice"),
            APPROVE,
            json!({"id": own}),
        )
        .await;
    assert_eq!(claimable(&server).await, [own]);
}

async fn a_freeze_window_holds_deployments_until_it_ends_in_its_own_zone(backend: Backend) {
    // Friday 2026-11-27 14:30 UTC is 15:30 in Berlin (CET): not yet frozen,
    // though it would be in summer (16:30 CEST).
    let (server, clock) = start(backend, "2026-11-27T14:30:00Z").await;
    server.deploy_ref("web", "production", "main", None).await;
    let window = server
        .ok_as(
            Role::Admin,
            FREEZE,
            json!({"cron": "0 16 * * FRI", "d": 120, "tz": "Europe/Berlin",
                   "r": "Fridays after 16:00", "m": "WAIT"}),
        )
        .await["addFreezeWindow"]
        .clone();
    assert!(window["activeUntil"].is_null(), "{window}");
    let before = create_as(&server, "alice", None, false).await;
    assert!(gated(&server, &before).await["gate"].is_null());
    let first = claimable(&server).await;
    server.claim_ok(RUNNER, &first[0]).await;
    server.finish(RUNNER, &first[0], "SUCCEEDED").await;
    server.claim_ok(RUNNER, &before).await;
    server.finish(RUNNER, &before, "SUCCEEDED").await;

    // 15:00 UTC is 16:00 in Berlin: frozen until 18:00 Berlin, 17:00 UTC.
    clock.advance(Duration::minutes(30));
    let manual = create_as(&server, "alice", None, false).await;
    let auto = create_as(&server, "", Some(&sha(7)), true).await;
    for id in [&manual, &auto] {
        let d = gated(&server, id).await;
        assert_eq!(d["status"], "QUEUED");
        assert_eq!(d["gate"]["kind"], "FREEZE", "{d}");
        assert_eq!(d["gate"]["until"], "2026-11-27T17:00:00+00:00");
        let waiting = d["gate"]["waitingFor"].as_str().unwrap();
        assert!(waiting.contains("Fri 2026-11-27 18:00 CET"), "{waiting}");
        assert!(waiting.contains("Fridays after 16:00"), "{waiting}");
        assert_eq!(d["message"], format!("waiting for {waiting}"));
    }
    assert!(claimable(&server).await.is_empty());

    // Not yet at 16:59 UTC; at 17:00 the gates open and runners hear of it.
    clock.advance(Duration::minutes(119));
    assert!(gates::open_expired(&server.state).await.unwrap().is_empty());
    assert!(claimable(&server).await.is_empty());
    let mut events = server.state.events.subscribe();
    clock.advance(Duration::minutes(1));
    let opened = gates::open_expired(&server.state).await.unwrap();
    assert_eq!(opened.len(), 2);
    assert!(gated(&server, &manual).await["gate"].is_null());
    assert_eq!(claimable(&server).await, [manual.as_str()]);
    assert!(announced(&mut events, &manual));
}

async fn a_refusing_window_says_why_and_an_admin_may_override_a_wait(backend: Backend) {
    let (server, clock) = start(backend, "2026-11-27T15:30:00Z").await;
    production(&server).await;
    require_approval(&server, false).await;
    let refuse = server
        .ok_as(
            Role::Admin,
            FREEZE,
            json!({"cron": "0 16 * * FRI", "d": 60, "tz": "Europe/Berlin",
                   "r": "release freeze for the sale", "m": "REFUSE"}),
        )
        .await["addFreezeWindow"]
        .clone();
    assert_eq!(refuse["activeUntil"], "2026-11-27T16:00:00+00:00");
    let deployer = server.token(Role::Deployer, "alice");
    let create = "mutation { createDeployment(input: {application: \"web\", environment: \"production\", ref: \"main\"}) { id } }";
    let (code, message) = server.err(&deployer, create, json!({})).await;
    assert_eq!(code, "CONFLICT", "{message}");
    assert!(
        message.contains("`production` of `web` is frozen until Fri 2026-11-27 17:00 CET"),
        "{message}"
    );
    assert!(message.contains("release freeze for the sale"), "{message}");
    assert!(
        message.contains("an admin may create one with `overrideFreeze`"),
        "{message}"
    );

    // Only an admin goes past it, with a reason, which is kept.
    let past = "mutation($r: String) { createDeployment(input: {application: \"web\", environment: \"production\", ref: \"main\", overrideFreeze: $r}) { id status gate { kind } freezeOverride { by reason } } }";
    let (code, message) = server
        .err(&deployer, past, json!({"r": "hotfix for the sale"}))
        .await;
    assert_eq!(code, "FORBIDDEN", "{message}");
    assert!(
        message.contains("`overrideFreeze` is for admins"),
        "{message}"
    );
    let admin = server.token(Role::Admin, "root");
    let (code, message) = server.err(&admin, past, json!({"r": "  "})).await;
    assert_eq!(code, "BAD_USER_INPUT", "{message}");
    assert!(server.deployments().await.is_empty(), "nothing was created");
    let hotfix = server
        .ok(&admin, past, json!({"r": "hotfix for the sale"}))
        .await["createDeployment"]
        .clone();
    assert_eq!(hotfix["status"], "QUEUED");
    assert_eq!(
        hotfix["gate"]["kind"], "APPROVAL",
        "past the freeze, the approval this environment requires is still needed: {hotfix}"
    );
    assert_eq!(
        hotfix["freezeOverride"],
        json!({"by": "root", "reason": "hotfix for the sale"})
    );
    server
        .ok(
            &admin,
            "mutation($id: ID!) { cancelDeployment(id: $id) { id } }",
            json!({"id": hotfix["id"]}),
        )
        .await;

    // Bad input says what is wrong.
    let (code, message) = server
        .err(
            &server.token(Role::Admin, "admin"),
            FREEZE,
            json!({"cron": "0 16 * *", "d": 60, "tz": "Europe/Berlin", "r": "x", "m": "WAIT"}),
        )
        .await;
    assert_eq!(code, "BAD_USER_INPUT");
    assert!(message.contains("five fields"), "{message}");
    let (_, message) = server
        .err(
            &server.token(Role::Admin, "admin"),
            FREEZE,
            json!({"cron": "0 16 * * FRI", "d": 60, "tz": "Mars/Olympus", "r": "x", "m": "WAIT"}),
        )
        .await;
    assert!(message.contains("not an IANA time zone"), "{message}");

    // Remove the refusal, add a waiting window; an admin overrides it, and
    // then it waits for its approval.
    let id = refuse["id"].as_str().unwrap();
    server
        .ok_as(
            Role::Admin,
            "mutation($id: ID!) { removeFreezeWindow(id: $id) { id } }",
            json!({"id": id}),
        )
        .await;
    server
        .ok_as(
            Role::Admin,
            FREEZE,
            json!({"cron": "0 16 * * FRI", "d": 60, "tz": "Europe/Berlin", "r": "sale", "m": "WAIT"}),
        )
        .await;
    clock.advance(Duration::minutes(5));
    let waiting = create_as(&server, "alice", None, false).await;
    assert_eq!(gated(&server, &waiting).await["gate"]["kind"], "FREEZE");
    let (code, _) = server
        .err(
            &server.token(Role::Deployer, "bob"),
            APPROVE,
            json!({"id": waiting}),
        )
        .await;
    assert_eq!(code, "CONFLICT", "an approval waits for the freeze");
    let overridden = server
        .ok(
            &server.token(Role::Admin, "root"),
            OVERRIDE,
            json!({"id": waiting, "r": "hotfix for the checkout"}),
        )
        .await;
    assert_eq!(
        overridden["overrideFreeze"],
        json!({"status": "QUEUED", "gate": {"kind": "APPROVAL"}})
    );
    let d = gated(&server, &waiting).await;
    assert_eq!(
        d["freezeOverride"],
        json!({"by": "root", "at": "2026-11-27T15:35:00+00:00", "reason": "hotfix for the checkout"})
    );
}

async fn after_a_freeze_ends_an_approval_is_still_needed_auto_deploys_too(backend: Backend) {
    // Summer: 2026-07-03 is a Friday, Berlin on CEST (UTC+2), so 16:00 local
    // is 14:00 UTC.
    let (server, clock) = start(backend, "2026-07-03T14:10:00Z").await;
    production(&server).await;
    require_approval(&server, false).await;
    server
        .ok_as(
            Role::Admin,
            FREEZE,
            json!({"cron": "0 16 * * FRI", "d": 30, "tz": "Europe/Berlin", "r": "weekend", "m": "WAIT"}),
        )
        .await;
    let auto = create_as(&server, "", Some(&sha(9)), true).await;
    let d = gated(&server, &auto).await;
    assert_eq!(d["gate"]["kind"], "FREEZE");
    assert_eq!(d["gate"]["until"], "2026-07-03T14:30:00+00:00");
    let waiting = d["gate"]["waitingFor"].as_str().unwrap();
    assert!(waiting.contains("Fri 2026-07-03 16:30 CEST"), "{waiting}");

    clock.advance(Duration::minutes(20));
    let moved = gates::open_expired(&server.state).await.unwrap();
    assert_eq!(moved.len(), 1);
    let d = gated(&server, &auto).await;
    assert_eq!(d["gate"]["kind"], "APPROVAL", "{d}");
    assert_eq!(d["gate"]["since"], "2026-07-03T14:30:00+00:00");
    assert!(d["gate"]["until"].is_null());
    assert_eq!(d["message"], "waiting for an approval by a deployer");
    assert!(claimable(&server).await.is_empty());
    server
        .ok(
            &server.token(Role::Deployer, "bob"),
            APPROVE,
            json!({"id": auto}),
        )
        .await;
    assert_eq!(claimable(&server).await, [auto.as_str()]);
    assert!(gated(&server, &auto).await["message"].is_null());
}

/// The API's periodic reaper opens a freeze gate that ended and tells the
/// runners: they learn of the deployment on `deploymentQueued`.
async fn the_reaper_announces_a_deployment_whose_freeze_ended(backend: Backend) {
    let (server, clock) = start(backend, "2026-11-27T15:10:00Z").await;
    production(&server).await;
    server
        .ok_as(
            Role::Admin,
            FREEZE,
            json!({"cron": "0 16 * * FRI", "d": 30, "tz": "Europe/Berlin", "r": "sale", "m": "WAIT"}),
        )
        .await;
    let id = create_as(&server, "alice", None, false).await;
    assert_eq!(gated(&server, &id).await["gate"]["kind"], "FREEZE");
    let mut events = server.state.events.subscribe();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let reaper = tokio::spawn(slipway_api::leases::reap(
        server.state.clone(),
        "test-reaper".into(),
        std::time::Duration::from_millis(10),
        async {
            let _ = stopped.await;
        },
    ));
    clock.advance(Duration::minutes(20));
    let wanted: i64 = id.parse().unwrap();
    let heard = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            match events.recv().await {
                Ok(Event::Queued(d)) if d.deployment_id == wanted => return,
                Ok(_) => {}
                Err(err) => panic!("events ended: {err}"),
            }
        }
    })
    .await;
    let _ = stop.send(());
    reaper.await.unwrap();
    assert!(heard.is_ok(), "the reaper announced the deployment");
    assert!(gated(&server, &id).await["gate"].is_null());
}

slipway_testkit::on_both_backends!(
    an_approval_holds_no_slot_and_a_rollback_goes_first,
    a_rejected_deployment_ends_cancelled_with_who_and_why,
    a_freeze_window_holds_deployments_until_it_ends_in_its_own_zone,
    a_refusing_window_says_why_and_an_admin_may_override_a_wait,
    after_a_freeze_ends_an_approval_is_still_needed_auto_deploys_too,
    the_reaper_announces_a_deployment_whose_freeze_ended,
);
