//! A plan's page (`/plans/{id}`): what deploying a ref would change, as a
//! runner planned it against what runs — live while it waits for a runner
//! and while the runner plans, then per service create / update (the fields
//! that differ) / unchanged / remove, with images and digests, and a Deploy
//! button that deploys exactly the commit the plan saw.

use axum::extract::{Path, State};
use axum::response::sse::Event as SseEvent;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use chrono::{DateTime, Utc};
use maud::{html, Markup};
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::auth::roles;
use crate::error::ApiError;
use crate::events::Event;
use crate::plans::{self, PlanStatus, PlanView};
use crate::state::AppState;

use super::layout::{commit, csrf, page, time, Section};
use super::live::{self, swap};
use super::{encode, SignedIn, WebResult};

fn parse_id(id: &str) -> Result<i64, ApiError> {
    id.parse().ok().filter(|id| *id > 0).ok_or_else(|| {
        ApiError::NotFound(format!("no plan has the id {}", crate::error::quote(id)))
    })
}

#[derive(Deserialize)]
pub(super) struct PlanForm {
    csrf: String,
    application: String,
    environment: String,
    r#ref: String,
}

/// `POST /plans`: asks a runner for a plan (from the Deploy page's
/// "Preview changes" and the Setup page's "Check a spec").
pub(super) async fn request(
    State(state): State<AppState>,
    who: SignedIn,
    Form(form): Form<PlanForm>,
) -> WebResult<Response> {
    who.check_form(&form.csrf)?;
    who.require(roles::DEPLOY)?;
    let view = plans::create(
        &state,
        who.subject(),
        &form.application,
        &form.environment,
        &form.r#ref,
    )
    .await?;
    Ok(Redirect::to(&format!("/plans/{}", view.plan.id)).into_response())
}

/// `GET /plans/{id}`.
pub(super) async fn show(
    State(state): State<AppState>,
    who: SignedIn,
    Path(id): Path<String>,
) -> WebResult<Markup> {
    who.require(roles::READ)?;
    let id = parse_id(&id)?;
    let view = plans::get(&state.db, id).await?;
    let title = format!(
        "Plan {} → {} / {}",
        view.plan.ref_name, view.application.name, view.environment.name
    );
    let body = html! {
        div data-live={ "/plans/" (id) "/live" } {
            (summary(&view, &who, state.clock.now()))
        }
    };
    Ok(page(&title, Some(&who), Section::Overview, body))
}

/// `GET /plans/{id}/live`: the plan's part of the page, again at each of its
/// changes; ends once it is final (or with the session, or the API).
pub(super) async fn live(
    State(state): State<AppState>,
    who: SignedIn,
    Path(id): Path<String>,
) -> WebResult<Response> {
    who.require(roles::READ)?;
    let id = parse_id(&id)?;
    // Subscribed before the first read: no change falls between the two.
    let mut events = state.events.subscribe();
    plans::get(&state.db, id).await?;
    let (tx, rx) = mpsc::channel::<SseEvent>(16);
    tokio::spawn(async move {
        let ended = live::ended(&state, &who);
        tokio::pin!(ended);
        loop {
            let Ok(view) = plans::get(&state.db, id).await else {
                return;
            };
            let final_ = view.plan.status.is_final();
            if tx
                .send(swap(summary(&view, &who, state.clock.now())))
                .await
                .is_err()
            {
                return;
            }
            if final_ {
                let _ = tx.send(SseEvent::default().event("end").data("end")).await;
                return;
            }
            loop {
                let changed = tokio::select! {
                    event = events.recv() => match event {
                        Ok(Event::Plan(changed)) => changed.plan_id == id,
                        Ok(_) => false,
                        Err(RecvError::Lagged(_)) => true,
                        Err(RecvError::Closed) => return,
                    },
                    () = tx.closed() => return,
                    () = &mut ended => return,
                };
                if changed {
                    break;
                }
            }
        }
    });
    Ok(live::sse(ReceiverStream::new(rx)))
}

/// A plan's status as a badge, in the colours of the deployments' ones.
fn status(status: PlanStatus) -> Markup {
    let (class, label) = match status {
        PlanStatus::Queued => ("QUEUED", "waiting for a runner"),
        PlanStatus::Running => ("IN_PROGRESS", "planning"),
        PlanStatus::Done => ("SUCCEEDED", "planned"),
        PlanStatus::Failed => ("FAILED", "failed"),
    };
    html! { span class={ "status " (class) } { (label) } }
}

/// The part of the page that changes as the plan does.
fn summary(view: &PlanView, who: &SignedIn, now: DateTime<Utc>) -> Markup {
    let p = &view.plan;
    let app = &view.application.name;
    let env = &view.environment.name;
    let env_path = format!("/apps/{}/{}", encode(app), encode(env));
    html! {
        section #plan {
            p.muted {
                a href={ "/apps/" (encode(app)) } { (app) } " / "
                a href=(env_path) { (env) }
            }
            div.actions {
                h1 { "What deploying " code { (p.ref_name) } " to " (env) " would change" }
                (status(p.status))
            }
            p.muted {
                "Asked by " (p.created_by) " " (time(p.created_at, now))
                @if let Some(runner) = &p.runner { "; planned by runner " (runner) }
                ". A plan deploys nothing and writes nothing to the swarm."
            }
            @match p.status {
                PlanStatus::Queued => {
                    p { "Waiting for a runner to take it: only runners have the repository and the engine." }
                    p.muted { "A plan no runner takes within " (plans::QUEUE_PATIENCE.num_minutes()) " minutes fails; the Runners page shows which runners are connected." }
                }
                PlanStatus::Running => {
                    p { "The runner is fetching the commit, reading the spec, resolving each image to its digest and comparing with what runs." }
                }
                PlanStatus::Failed => {
                    div.banner.failure role="alert" { span { strong { "The plan failed" } ": " (p.message.as_deref().unwrap_or("no reason given")) } }
                    @if p.sha.is_some() { p { "At commit " (commit(&view.application.repository, p.sha.as_deref())) "." } }
                }
                PlanStatus::Done => { (result(view, who)) }
            }
        }
    }
}

/// A done plan: each service, and the Deploy button.
fn result(view: &PlanView, who: &SignedIn) -> Markup {
    let p = &view.plan;
    let Some(planned) = view.result() else {
        return html! { p.error { "The runner's answer could not be read." } };
    };
    let count = |action: &str| {
        planned
            .services
            .iter()
            .filter(|s| s.action == action)
            .count()
    };
    let changes = count("create") + count("update") + count("remove");
    let env_path = format!(
        "/apps/{}/{}",
        encode(&view.application.name),
        encode(&view.environment.name)
    );
    html! {
        p {
            "Commit " (commit(&view.application.repository, p.sha.as_deref()))
            ", stack " code { (planned.stack) } ": "
            strong { (count("create")) " to create, " (count("update")) " to update, "
                (count("unchanged")) " unchanged, " (count("remove")) " to remove" } "."
        }
        @if let Some(message) = &p.message {
            div.panel { p.muted { "Warnings" } @for line in message.lines() { p { (line) } } }
        }
        @if planned.services.is_empty() {
            div.panel { p.muted { "The spec has no service and the stack runs none." } }
        } @else {
            table.responsive #services {
                thead { tr { th { "Service" } th { "Action" } th { "Image" } th { "What differs" } } }
                tbody {
                    @for s in &planned.services {
                        tr {
                            td data-label="Service" { strong { (s.name) } }
                            td data-label="Action" { span class={ "status " (action_class(&s.action)) } { (s.action) } }
                            td data-label="Image" {
                                @if let Some(image) = &s.image { code { (image.split_once('@').map_or(image.as_str(), |(name, _)| name)) } }
                                @if let Some(digest) = &s.digest { br; code.muted title=(digest) { (digest) } }
                            }
                            td data-label="What differs" {
                                @if s.changes.is_empty() { span.muted { "—" } }
                                @for path in &s.changes { code { (path) } br; }
                            }
                        }
                    }
                }
            }
        }
        @if let (true, Some(sha)) = (who.may(roles::DEPLOY), &p.sha) {
            div.panel {
                @if let Some(by) = &view.environment.locked_by {
                    p { strong { "Locked" } " by " (by) ": a deployment is refused until it is unlocked." }
                }
                form.actions method="post" action={ (env_path) "/deploy" } {
                    (csrf(who))
                    input type="hidden" name="ref" value=(p.ref_name);
                    input type="hidden" name="sha" value=(sha);
                    button.primary type="submit" { "Deploy " (sha.get(..7).unwrap_or(sha)) }
                    span.muted {
                        @if changes == 0 { "Nothing would change; deploying records a release of this commit. " }
                        "It deploys this commit exactly; an image tag that moved since is pinned to its new digest then."
                    }
                }
            }
        }
    }
}

/// The badge class of a service's action.
fn action_class(action: &str) -> &'static str {
    match action {
        "create" => "create",
        "update" => "update",
        "remove" => "remove",
        _ => "unchanged",
    }
}
