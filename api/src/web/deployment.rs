//! A deployment's page (`/deployments/{id}`, where GitHub's `log_url`
//! points): its status and phases, what it rolled out, its log (live, with
//! line permalinks, and raw as `.txt`), the gate it waits at, and Approve,
//! Reject, Override freeze, Cancel, Redeploy or Rollback.

use axum::extract::{Path, Query, State};
use axum::http::header::{self, HeaderMap};
use axum::response::sse::Event as SseEvent;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use maud::{html, Markup};
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::auth::{roles, Auth};
use crate::db::entities::deployment::{ConvergenceState, DeploymentPhase, DeploymentStatus};
use crate::db::entities::log_line;
use crate::deployments::{self, NewDeployment};
use crate::error::{ApiError, ApiResult};
use crate::events::Event;
use crate::gates::{self, GateKind, ReviewVerdict};
use crate::logs;
use crate::state::AppState;
use crate::view::{self, DeploymentView};

use super::layout::{self, commit, csrf, log_line, page, status, time, Section};
use super::live::{self, swap};
use super::{encode, environment_path, CsrfForm, SignedIn, WebResult};

/// Most lines a page shows; the raw log has them all.
const PAGE_LINES: u64 = 20_000;

fn parse_id(id: &str) -> Result<i64, ApiError> {
    id.parse()
        .map_err(|_| ApiError::NotFound(format!("no deployment has the id {id:?}")))
}

/// `GET /deployments/{id}`.
pub(super) async fn show(
    State(state): State<AppState>,
    who: SignedIn,
    Path(id): Path<String>,
) -> WebResult<Markup> {
    let id = parse_id(&id)?;
    let view = view::get(&state.db, id).await?;
    let lines = logs::read(&state.db, id, 0, PAGE_LINES).await?;
    let last = lines.last().map_or(0, |l| l.seq);
    let now = state.clock.now();
    let current = deployments::current_release(&state.db, view.environment.id).await?;
    let title = format!("{} → {}", view.name(), view.environment.name);
    let body = html! {
        (summary(&view, current.map(|r| r.id), &who, now))
        h2 { "Log "
            a.muted href={ "/deployments/" (id) "/log.txt" } { "raw" } }
        div.log data-log data-live={ "/deployments/" (id) "/live?after=" (last) } role="log" aria-label="Deployment log" {
            @if lines.is_empty() { div data-empty { "No log line yet." } }
            @for line in &lines { (log_line(line)) }
        }
        @if lines.len() as u64 == PAGE_LINES {
            p.muted { "The page shows the first " (PAGE_LINES) " lines; the " a href={ "/deployments/" (id) "/log.txt" } { "raw log" } " has them all." }
        }
    };
    Ok(page(&title, Some(&who), Section::Overview, body))
}

/// The part of the page that changes as the deployment does; `current` is
/// the environment's release.
fn summary(
    view: &DeploymentView,
    current: Option<i64>,
    who: &SignedIn,
    now: DateTime<Utc>,
) -> Markup {
    let d = &view.deployment;
    let app = &view.application.name;
    let env = &view.environment.name;
    let env_path = environment_path(app, env);
    html! {
        section #summary {
            p.muted {
                a href={ "/apps/" (encode(app)) } { (app) } " / "
                a href=(env_path) { (env) }
            }
            div.actions {
                h1 { (view.name()) " → " (env) }
                (status(d.status))
                @if d.status == DeploymentStatus::InProgress {
                    @if let Some(phase) = d.phase { span.muted { (layout::phase_name(phase)) } }
                }
            }
            @if let Some(message) = &d.message {
                p class=(if d.status == DeploymentStatus::Failed { "error" } else { "" }) { (message) }
            }
            @if let Some(gate) = view.gate() {
                div.panel #gate role="status" {
                    strong { (match gate.kind {
                        GateKind::Approval => "Waiting for approval",
                        GateKind::Freeze => "Waiting for a freeze window to end",
                        GateKind::Checks => "Waiting for checks",
                    }) }
                    " — waits for " (gate.waiting_for)
                    @if let Some(since) = d.gate_since { " (since " (time(since, now)) ")" }
                    @if let (GateKind::Checks, Some(until)) = (gate.kind, gate.until) {
                        "; it fails if they have not passed by " (time(until, now))
                    }
                    ". It holds no place in the queue: the deployments behind it may go first."
                }
            }
            (checks(d, now))
            (timeline(d.status, d.phase))
            div.grid2 {
                div.panel {
                    dl.facts {
                        dt { "Commit" } dd { code { (d.ref_name) } " " (commit(&view.application.repository, d.sha.as_deref())) }
                        dt { "Task" } dd {
                            (d.task)
                            @if let Some(task) = &d.runs_task {
                                " — runs task " code { (task) } " of the spec alone; no service changes, and it is no release"
                            }
                        }
                        dt { "Asked by" } dd { (d.created_by) @if d.auto_deploy { " (auto-deploy)" } }
                        dt { "Created" } dd { (time(d.created_at, now)) }
                        @if let Some(started) = d.started_at {
                            dt { "Started" } dd { (time(started, now)) }
                        }
                        @if let (Some(started), Some(finished)) = (d.started_at, d.finished_at) {
                            dt { "Took" } dd { (layout::duration(finished - started)) }
                        }
                        @if let Some(runner) = &d.runner { dt { "Runner" } dd { (runner) } }
                        @if let Some(by) = &d.cancel_requested_by { dt { "Cancelled by" } dd { (by) } }
                        @if let Some(description) = &d.description { dt { "Description" } dd { (description) } }
                        @if let (Some(verdict), Some(by)) = (d.review_verdict, &d.reviewed_by) {
                            dt { (match verdict { ReviewVerdict::Approved => "Approved by", ReviewVerdict::Rejected => "Rejected by" }) }
                            dd {
                                (by)
                                @if let Some(at) = d.reviewed_at { " " (time(at, now)) }
                                @if let Some(comment) = &d.review_comment { ": " (comment) }
                            }
                        }
                        @if let Some(by) = &d.checks_forced_by {
                            dt { "Checks forced by" }
                            dd { (by) " (only the checks named as required were waited for)" }
                        }
                        @if let Some(by) = &d.freeze_overridden_by {
                            dt { "Freeze overridden by" }
                            dd {
                                (by)
                                @if let Some(at) = d.freeze_overridden_at { " " (time(at, now)) }
                                @if let Some(reason) = &d.freeze_override_reason { ": " (reason) }
                            }
                        }
                    }
                }
                div.panel {
                    @let convergence = view::convergence(d).unwrap_or_default();
                    @if !convergence.is_empty() {
                        table aria-label="How the services converge" {
                            thead { tr { th { "Service" } th { "State" } th { "Tasks" } } }
                            tbody {
                                @for c in &convergence {
                                    tr {
                                        td { (c.service) }
                                        td { (convergence_state(c.state)) }
                                        td { (c.detail.as_deref().unwrap_or("")) }
                                    }
                                }
                            }
                        }
                    }
                    @match view.services() {
                        Ok(services) if !services.is_empty() => { (layout::services(&services)) }
                        _ => @if convergence.is_empty() {
                            p.muted { "How each service converges shows here while it rolls out; the images it rolled out, once it succeeds." }
                        },
                    }
                }
            }
            (actions(view, current, who))
        }
    }
}

/// The CI checks on the deployment's commit as the provider last reported
/// them, each with its state and a link to it; what the deployment requires.
fn checks(d: &crate::db::entities::deployment::Model, now: DateTime<Utc>) -> Markup {
    let Some(required) = crate::checks::required(d) else {
        return html! {};
    };
    let reported = crate::checks::reported(d);
    html! {
        div.panel #checks {
            strong { "Required checks" }
            " — "
            @if required.names.is_empty() { "every check the forge reports" }
            @else {
                @for (i, name) in required.names.iter().enumerate() {
                    @if i > 0 { ", " }
                    code { (name) }
                }
                @if required.all { " and every other check" }
            }
            " (timeout " (required.timeout_minutes) " min)"
            @if reported.is_empty() {
                p.muted { "No report from the provider yet." }
            } @else {
                table aria-label="Checks" {
                    thead { tr { th { "Check" } th { "State" } } }
                    tbody {
                        @for c in &reported {
                            tr {
                                td {
                                    @if let Some(url) = &c.url { a href=(url) rel="noreferrer" { (c.name) } }
                                    @else { (c.name) }
                                }
                                td { (check_state(c.state)) }
                            }
                        }
                    }
                }
                @if let Some(at) = d.checks_reported_at { p.muted { "Reported " (time(at, now)) "." } }
            }
        }
    }
}

fn check_state(state: crate::checks::CheckState) -> Markup {
    use crate::checks::CheckState;
    let (class, label) = match state {
        CheckState::Pending => ("QUEUED", "pending"),
        CheckState::Success => ("SUCCEEDED", "passed"),
        CheckState::Failure => ("FAILED", "failed"),
    };
    html! { span class={ "status " (class) } { (label) } }
}

fn convergence_state(state: ConvergenceState) -> Markup {
    let (class, label) = match state {
        ConvergenceState::Converging => ("IN_PROGRESS", "converging"),
        ConvergenceState::Converged => ("SUCCEEDED", "converged"),
        ConvergenceState::Failed => ("FAILED", "failed"),
    };
    html! { span class={ "status " (class) } { (label) } }
}

/// The phases a deployment goes through, and where this one is.
fn timeline(status: DeploymentStatus, phase: Option<DeploymentPhase>) -> Markup {
    const STEPS: [(&str, Option<DeploymentPhase>); 5] = [
        ("queued", None),
        ("cloning", Some(DeploymentPhase::Cloning)),
        ("planning", Some(DeploymentPhase::Planning)),
        ("updating", Some(DeploymentPhase::Updating)),
        ("verifying", Some(DeploymentPhase::Verifying)),
    ];
    let reached = match (status, phase) {
        (DeploymentStatus::Queued, _) => 0,
        (_, Some(DeploymentPhase::RollingBack)) => STEPS.len(),
        (_, Some(p)) => STEPS.iter().position(|(_, s)| *s == Some(p)).unwrap_or(0),
        (DeploymentStatus::Succeeded, None) => STEPS.len(),
        (_, None) => 0,
    };
    let finished = status.is_final();
    html! {
        ol.timeline aria-label="Phases" {
            @for (i, (name, _)) in STEPS.iter().enumerate() {
                @let class = if i < reached || (finished && status == DeploymentStatus::Succeeded) {
                    "done"
                } else if i == reached && !finished {
                    "now"
                } else {
                    ""
                };
                li class=(class) { (name) }
            }
            @if phase == Some(DeploymentPhase::RollingBack) {
                li class=(if finished { "failed" } else { "now" }) { "rolling back" }
            }
            @match status {
                DeploymentStatus::Succeeded => li.done { "succeeded" },
                DeploymentStatus::Failed => li.failed { "failed" },
                DeploymentStatus::Cancelled => li.failed { "cancelled" },
                _ => {},
            }
        }
    }
}

/// Cancel while it runs; Redeploy once finished, and Rollback to it when it
/// is a release other than the one running.
fn actions(view: &DeploymentView, current: Option<i64>, who: &SignedIn) -> Markup {
    let d = &view.deployment;
    let id = d.id;
    let env_path = environment_path(&view.application.name, &view.environment.name);
    html! {
        @if who.may(roles::OPERATE) || who.may(roles::DEPLOY) {
            div.actions {
                @if d.gate == Some(GateKind::Approval) && who.may(roles::OPERATE) {
                    form.inline method="post" action={ "/deployments/" (id) "/approve" } {
                        (csrf(who))
                        input #approve-comment type="text" name="comment" maxlength="4096" placeholder="comment (optional)" aria-label="Comment on the approval";
                        button type="submit" { "Approve" }
                    }
                    form.inline method="post" action={ "/deployments/" (id) "/reject" } {
                        (csrf(who))
                        input #reject-comment type="text" name="comment" required maxlength="4096" placeholder="why not" aria-label="Why reject it";
                        button.danger type="submit" { "Reject" }
                    }
                }
                @if d.gate == Some(GateKind::Freeze) && who.may(roles::ADMIN) {
                    form.inline method="post" action={ "/deployments/" (id) "/override-freeze" } {
                        (csrf(who))
                        input #override-reason type="text" name="comment" required maxlength="4096" placeholder="why now" aria-label="Why override the freeze";
                        button.danger type="submit" { "Override freeze" }
                    }
                }
                @if !d.status.is_final() && who.may(roles::OPERATE) {
                    form.inline method="post" action={ "/deployments/" (id) "/cancel" } {
                        (csrf(who))
                        button.danger type="submit" disabled[d.cancel_requested] {
                            @if d.cancel_requested { "Cancel requested" } @else { "Cancel" }
                        }
                    }
                } @else if d.status.is_final() && who.may(roles::DEPLOY) {
                    form.inline method="post" action={ "/deployments/" (id) "/redeploy" } {
                        (csrf(who))
                        button type="submit" { "Redeploy " code { (d.ref_name) } }
                    }
                    @if d.status == DeploymentStatus::Succeeded && current != Some(d.id) {
                        form.inline method="post" action={ (env_path) "/rollback" } {
                            (csrf(who))
                            input type="hidden" name="to" value=(d.number);
                            input #rollback-reason type="text" name="reason" required maxlength="1000" placeholder="why" aria-label="Why roll back to this release";
                            button.danger type="submit" { "Roll back to " (view.name()) }
                        }
                    }
                }
            }
        }
    }
}

#[derive(Deserialize)]
pub(super) struct LiveQuery {
    after: Option<i64>,
}

/// `GET /deployments/{id}/live`: the summary as it changes (`swap`) and the
/// log lines after `after` — or after the `Last-Event-ID` a reconnecting
/// browser sends, each line's event id being its number — then `end`.
pub(super) async fn live(
    State(state): State<AppState>,
    who: SignedIn,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<LiveQuery>,
) -> WebResult<Response> {
    let id = parse_id(&id)?;
    let after = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .or(query.after)
        .unwrap_or(0);
    // Subscribed before the lines are read, so no change falls between.
    let mut events = state.events.subscribe();
    let lines = logs::follow(&state, id, after).await?;
    let (tx, rx) = mpsc::channel::<SseEvent>(64);
    tokio::spawn(async move {
        // The summary as it is now; whether the deployment has finished.
        let send_summary = |tx: mpsc::Sender<SseEvent>, state: AppState| {
            let who = &who;
            async move {
                let view = view::get(&state.db, id).await?;
                let current = deployments::current_release(&state.db, view.environment.id)
                    .await?
                    .map(|r| r.id);
                let _ = tx
                    .send(swap(summary(&view, current, who, state.clock.now())))
                    .await;
                ApiResult::Ok(view.status().is_final())
            }
        };
        if send_summary(tx.clone(), state.clone()).await.is_err() {
            return;
        }
        let ended = live::ended(&state, &who);
        tokio::pin!(ended);
        let mut lines = std::pin::pin!(lines);
        loop {
            tokio::select! {
                line = lines.next() => match line {
                    Some(line) => {
                        if tx.send(line_event(&line)).await.is_err() { return; }
                    }
                    None => break,
                },
                event = events.recv() => {
                    let changed = match event {
                        Ok(Event::Deployment(changed)) => changed.deployment_id == id,
                        Ok(_) => false,
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => true,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                    };
                    if changed && send_summary(tx.clone(), state.clone()).await.is_err() {
                        return;
                    }
                }
                () = tx.closed() => return,
                () = &mut ended => return,
            }
        }
        // The lines ended. When the deployment has finished, every line was
        // sent: the last word on its state, then `end`. Otherwise the
        // follower stopped early (the database failed): dropping the stream
        // makes the browser reconnect after the last line it has.
        if let Ok(true) = send_summary(tx.clone(), state.clone()).await {
            let _ = tx.send(SseEvent::default().event("end").data("end")).await;
        }
    });
    Ok(live::sse(ReceiverStream::new(rx)))
}

fn line_event(line: &log_line::Model) -> SseEvent {
    SseEvent::default()
        .event("line")
        .id(line.seq.to_string())
        .data(log_line(line).into_string())
}

/// `GET /deployments/{id}/log.txt`: the whole log as text, for a signed-in
/// browser or a bearer token.
pub(super) async fn raw(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if token.is_some() {
        match state.keys.authenticate(token) {
            Auth::Valid(claims) if roles::READ.contains(&claims.role) => {}
            Auth::Valid(_) => return forbidden(),
            Auth::Invalid(reason) => {
                return (axum::http::StatusCode::UNAUTHORIZED, reason).into_response()
            }
            Auth::Anonymous => {}
        }
    } else {
        let signed_in = match super::cookie(&headers, super::SESSION_COOKIE) {
            Some(secret) => matches!(crate::sessions::find(&state, secret).await, Ok(Some(_))),
            None => false,
        };
        if !signed_in {
            return super::to_sign_in(&format!("/deployments/{}/log.txt", encode(&id)));
        }
    }
    match raw_text(state, &id).await {
        Ok(body) => ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response(),
        Err(err) => super::WebError(err).into_response(),
    }
}

fn forbidden() -> Response {
    (
        axum::http::StatusCode::FORBIDDEN,
        "this token may not read logs",
    )
        .into_response()
}

/// The log as text, read and sent a page of lines at a time, so a long log
/// is never held whole in memory.
async fn raw_text(state: AppState, id: &str) -> ApiResult<axum::body::Body> {
    const PAGE: u64 = 5000;
    let id = parse_id(id)?;
    view::get(&state.db, id).await?;
    let pages = futures_util::stream::unfold(Some(0), move |after| {
        let state = state.clone();
        async move {
            let after = after?;
            match logs::read(&state.db, id, after, PAGE).await {
                Ok(lines) if lines.is_empty() => None,
                Ok(lines) => {
                    let last = lines.last().map(|l| l.seq);
                    let mut text = String::new();
                    for line in &lines {
                        text.push_str(&line.text);
                        text.push('\n');
                    }
                    Some((Ok::<_, std::io::Error>(text), last))
                }
                Err(_) => Some((Err(std::io::Error::other("reading the log failed")), None)),
            }
        }
    });
    Ok(axum::body::Body::from_stream(pages))
}

/// `POST /deployments/{id}/cancel`.
pub(super) async fn cancel(
    State(state): State<AppState>,
    who: SignedIn,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> WebResult<Response> {
    who.check_form(&form.csrf)?;
    who.require(roles::OPERATE)?;
    let id = parse_id(&id)?;
    deployments::cancel(&state, id, who.subject()).await?;
    Ok(Redirect::to(&format!("/deployments/{id}")).into_response())
}

#[derive(Deserialize)]
pub(super) struct CommentForm {
    csrf: String,
    comment: Option<String>,
}

/// `POST /deployments/{id}/approve`.
pub(super) async fn approve(
    State(state): State<AppState>,
    who: SignedIn,
    Path(id): Path<String>,
    Form(form): Form<CommentForm>,
) -> WebResult<Response> {
    who.check_form(&form.csrf)?;
    who.require(roles::OPERATE)?;
    let id = parse_id(&id)?;
    let comment = form.comment.filter(|c| !c.trim().is_empty());
    gates::approve(&state, id, who.subject(), comment.as_deref()).await?;
    Ok(Redirect::to(&format!("/deployments/{id}")).into_response())
}

/// `POST /deployments/{id}/reject`.
pub(super) async fn reject(
    State(state): State<AppState>,
    who: SignedIn,
    Path(id): Path<String>,
    Form(form): Form<CommentForm>,
) -> WebResult<Response> {
    who.check_form(&form.csrf)?;
    who.require(roles::OPERATE)?;
    let id = parse_id(&id)?;
    gates::reject(
        &state,
        id,
        who.subject(),
        form.comment.as_deref().unwrap_or_default(),
    )
    .await?;
    Ok(Redirect::to(&format!("/deployments/{id}")).into_response())
}

/// `POST /deployments/{id}/override-freeze`.
pub(super) async fn override_freeze(
    State(state): State<AppState>,
    who: SignedIn,
    Path(id): Path<String>,
    Form(form): Form<CommentForm>,
) -> WebResult<Response> {
    who.check_form(&form.csrf)?;
    who.require(roles::ADMIN)?;
    let id = parse_id(&id)?;
    gates::override_freeze(
        &state,
        id,
        who.subject(),
        form.comment.as_deref().unwrap_or_default(),
    )
    .await?;
    Ok(Redirect::to(&format!("/deployments/{id}")).into_response())
}

/// `POST /deployments/{id}/redeploy`: the same commit again.
pub(super) async fn redeploy(
    State(state): State<AppState>,
    who: SignedIn,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> WebResult<Response> {
    who.check_form(&form.csrf)?;
    who.require(roles::DEPLOY)?;
    let id = parse_id(&id)?;
    let view = view::get(&state.db, id).await?;
    let d = &view.deployment;
    let created = deployments::create(
        &state,
        who.subject(),
        NewDeployment {
            application: view.application.name.clone(),
            environment: view.environment.name.clone(),
            ref_name: d.ref_name.clone(),
            sha: d.sha.clone(),
            // A task run alone runs again; anything else rolls out.
            task: d.runs_task.as_ref().map(|_| d.task.clone()),
            description: Some(format!("redeploy of {}", view.name())),
            ..NewDeployment::default()
        },
    )
    .await?;
    Ok(Redirect::to(&format!("/deployments/{}", created.deployment.id)).into_response())
}
