//! GitLab pipelines: only a branch's own pipelines deploy; a merge request's
//! never does, whatever branch name it runs under.

use axum::http::StatusCode;
use serde_json::{json, Value};

use crate::gitlab::{gitlab_world, pipeline_hook, project};
use crate::support::*;

/// A successful pipeline of merge request !1, as GitLab's Pipeline Hook
/// documentation shows it: `object_attributes.source` is
/// `merge_request_event` and a `merge_request` object comes along. This one
/// is from a fork whose source branch is also called `main`, so its `ref`
/// is `main`.
fn merge_request_pipeline(id: u64, sha: &str) -> Value {
    json!({
        "object_kind": "pipeline",
        "object_attributes": {
            "id": id,
            "iid": 12,
            "name": "Pipeline for merge request !1",
            "ref": "main",
            "tag": false,
            "sha": sha,
            "before_sha": SHA2,
            "source": "merge_request_event",
            "status": "success",
            "detailed_status": "passed",
            "stages": ["build", "test"],
            "created_at": "2024-05-01 10:00:00 UTC",
            "finished_at": "2024-05-01 10:01:03 UTC",
            "duration": 63,
            "queued_duration": 1,
            "variables": [],
            "url": "https://gitlab.example.com/acme/shop/-/pipelines/41",
        },
        "merge_request": {
            "id": 1,
            "iid": 1,
            "title": "Make the checkout faster",
            "source_branch": "main",
            "source_project_id": 16,
            "target_branch": "main",
            "target_project_id": 15,
            "state": "opened",
            "merge_status": "can_be_merged",
            "detailed_merge_status": "mergeable",
            "url": "https://gitlab.example.com/acme/shop/-/merge_requests/1",
        },
        "user": {"id": 1, "name": "Mallory", "username": "mallory"},
        "project": project(),
        "commit": {"id": sha, "message": "Not merged yet\n", "title": "Not merged yet"},
        "builds": [],
    })
}

async fn ignored(world: &World, hook: &Value, reason_has: &str) {
    let (status, body) = world
        .provider()
        .gitlab("Pipeline Hook", Some(GITLAB_TOKEN), None, hook)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let reason = body["ignored"].as_str().unwrap_or_default();
    assert!(reason.contains(reason_has), "{reason_has:?} in {body}");
    assert!(
        world.api.deployments().await.is_empty(),
        "nothing may be deployed: {hook}"
    );
}

#[tokio::test]
async fn a_merge_request_pipeline_never_deploys() {
    let world = gitlab_world().await;
    ignored(&world, &merge_request_pipeline(41, SHA), "merge request").await;

    // The `merge_request` object alone says so, whatever the source.
    let mut hook = merge_request_pipeline(42, SHA);
    hook["object_attributes"]["source"] = json!("push");
    ignored(&world, &hook, "merge request").await;

    // And the source alone (some versions send no `merge_request`).
    let mut hook = merge_request_pipeline(43, SHA);
    hook.as_object_mut().unwrap().remove("merge_request");
    ignored(&world, &hook, "merge request").await;

    // Nor does GitHub's pull request mirrored into GitLab, a child pipeline,
    // a tag's pipeline, or one whose source is not said.
    for (source, says) in [
        (
            Some("external_pull_request_event"),
            "`external_pull_request_event`",
        ),
        (Some("parent_pipeline"), "`parent_pipeline`"),
        (None, "unknown source"),
    ] {
        let mut hook = pipeline_hook(50, "main", SHA, "success");
        match source {
            Some(source) => hook["object_attributes"]["source"] = json!(source),
            None => {
                hook["object_attributes"]
                    .as_object_mut()
                    .unwrap()
                    .remove("source");
            }
        }
        ignored(&world, &hook, says).await;
    }
    let mut tag = pipeline_hook(51, "v1.2.0", SHA, "success");
    tag["object_attributes"]["tag"] = json!(true);
    ignored(&world, &tag, "tag pipelines never deploy").await;
}

#[tokio::test]
async fn a_branch_pipeline_deploys_whatever_started_it() {
    let world = gitlab_world().await;
    for (id, source) in [
        (60, "push"),
        (61, "web"),
        (62, "schedule"),
        (63, "api"),
        (64, "trigger"),
    ] {
        let mut hook = pipeline_hook(id, "main", SHA, "success");
        hook["object_attributes"]["source"] = json!(source);
        // GitLab sends `merge_request: null` for a branch's pipeline.
        hook["merge_request"] = Value::Null;
        let (status, body) = world
            .provider()
            .gitlab("Pipeline Hook", Some(GITLAB_TOKEN), None, &hook)
            .await;
        assert_eq!(status, StatusCode::OK, "{source}: {body}");
        assert_eq!(
            body["deployments"][0]["environment"], "production",
            "{body}"
        );
    }
    assert_eq!(world.api.deployments().await.len(), 5);
}
