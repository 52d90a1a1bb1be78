//! What runs where: the overview (`/`), an application (`/apps/{app}`) and
//! an environment (`/apps/{app}/{env}`), each live.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::Response;
use chrono::{DateTime, Utc};
use maud::{html, Markup};
use serde::Deserialize;

use crate::applications;
use crate::auth::roles;
use crate::commits::{self, Distance};
use crate::db::entities::deployment::{self, DeploymentStatus};
use crate::db::entities::{application, environment, plan};
use crate::deployments::{self, Filter};
use crate::error::ApiResult;
use crate::releases;
use crate::state::AppState;
use crate::view::{self, DeploymentView};

use super::layout::{self, commit, csrf, page, status, time, Section};
use super::{encode, environment_path, live, SignedIn, WebResult};

/// What the overview shows of one environment.
pub(super) struct Row {
    pub app: Arc<application::Model>,
    pub env: environment::Model,
    /// Its release: the deployment that last succeeded there.
    pub release: Option<deployment::Model>,
    pub running: Option<deployment::Model>,
    pub queued: u64,
    /// Of those queued, how many wait at a gate (checks, an approval, a freeze).
    pub gated: u64,
    /// The newest deployment, when it failed.
    pub failure: Option<deployment::Model>,
    /// How far its release is behind the releases of the application's
    /// other environments that are ahead of it, by environment.
    pub behind: Vec<(String, Distance)>,
}

/// The rows of every environment of `app`. Each environment costs a few
/// queries; the commit graph is loaded once for all of them.
async fn rows_of(state: &AppState, app: application::Model) -> ApiResult<Vec<Row>> {
    let db = &state.db;
    let app = Arc::new(app);
    let mut rows = Vec::new();
    for env in applications::environments(db, app.id).await? {
        let release = deployments::current_release(db, env.id).await?;
        let running = deployments::in_progress(db, env.id).await?;
        let queued = deployments::queued_count(db, env.id).await?;
        let gated = deployments::gated_count(db, env.id).await?;
        let failure = deployments::newest(db, env.id)
            .await?
            .filter(|d| d.status == DeploymentStatus::Failed);
        rows.push(Row {
            app: app.clone(),
            env,
            release,
            running,
            queued,
            gated,
            failure,
            behind: Vec::new(),
        });
    }
    let shas: Vec<(String, String)> = rows
        .iter()
        .filter_map(|r| {
            let sha = r.release.as_ref()?.sha.clone()?;
            Some((r.env.name.clone(), sha))
        })
        .collect();
    if shas.len() > 1 {
        let graph = commits::graph(db, app.id).await?;
        for row in &mut rows {
            let Some(here) = row.release.as_ref().and_then(|r| r.sha.as_deref()) else {
                continue;
            };
            row.behind = shas
                .iter()
                .filter(|(name, _)| *name != row.env.name)
                .filter_map(|(name, there)| {
                    graph
                        .distance(here, there)
                        .filter(|d| d.behind > 0)
                        .map(|d| (name.clone(), d))
                })
                .collect();
        }
    }
    Ok(rows)
}

/// "3 commits behind staging", "at least 3 commits behind staging".
fn behind_text(name: &str, distance: &Distance) -> String {
    let n = distance.behind;
    format!(
        "{}{n} commit{} behind {name}",
        if distance.exact { "" } else { "at least " },
        if n == 1 { "" } else { "s" }
    )
}

/// The rows of every environment of `apps`.
async fn rows(state: &AppState, apps: Vec<application::Model>) -> ApiResult<Vec<Row>> {
    let mut rows = Vec::new();
    for app in apps {
        rows.extend(rows_of(state, app).await?);
    }
    Ok(rows)
}

#[derive(Deserialize)]
pub(super) struct OverviewQuery {
    app: Option<String>,
}

/// `GET /`: every application × environment.
pub(super) async fn overview(
    State(state): State<AppState>,
    who: SignedIn,
    Query(query): Query<OverviewQuery>,
) -> WebResult<Markup> {
    let all = applications::list(&state.db).await?;
    let names: Vec<String> = all.iter().map(|a| a.name.clone()).collect();
    let shown = match query.app.as_deref().filter(|a| !a.is_empty()) {
        Some(name) => vec![applications::get(&state.db, name).await?],
        None => all,
    };
    let rows = rows(&state, shown).await?;
    let now = state.clock.now();
    let live = match &query.app {
        Some(app) if !app.is_empty() => format!("/live?app={}", encode(app)),
        _ => "/live".to_owned(),
    };
    let body = html! {
        h1 { "What runs where" }
        @if names.is_empty() {
            div.panel {
                p { "No application yet." }
                @if who.may(roles::ADMIN) {
                    p { a.button.primary href="/setup" { "Set up an application" } }
                } @else {
                    p.muted { "An admin sets applications up." }
                }
            }
        } @else {
            form.filter method="get" action="/" {
                label.muted for="app" { "Application" }
                select #app name="app" {
                    option value="" { "All" }
                    @for name in &names {
                        option value=(name) selected[query.app.as_deref() == Some(name.as_str())] { (name) }
                    }
                }
                button type="submit" { "Filter" }
            }
            (environments_table(&rows, now, &live))
        }
    };
    Ok(page("Overview", Some(&who), Section::Overview, body))
}

/// The table of environments, live from `live`.
fn environments_table(rows: &[Row], now: DateTime<Utc>, live: &str) -> Markup {
    html! {
        table.responsive #environments data-live=(live) {
            thead { tr {
                th { "Environment" } th { "Runs" } th { "Now" } th { "Lock" } th { "Last failure" }
            } }
            tbody #environment-rows {
                @for row in rows { (environment_row(row, now)) }
            }
        }
    }
}

/// One environment's row: what runs, what is in progress, the lock, the
/// failure of the newest deployment.
pub(super) fn environment_row(row: &Row, now: DateTime<Utc>) -> Markup {
    let app = &row.app.name;
    let env = &row.env.name;
    html! {
        tr id={ "env-" (row.env.id) } {
            td data-label="Environment" {
                a href={ "/apps/" (encode(app)) } { (app) } " / "
                a href=(environment_path(app, env)) { strong { (env) } }
                @if let Some(url) = &row.env.url {
                    br; a.muted href=(url) rel="noopener" { (url) }
                }
            }
            td data-label="Runs" {
                @if let Some(release) = &row.release {
                    a href={ "/deployments/" (release.id) } { (app) "#" (release.number) }
                    " " (commit(&row.app.repository, release.sha.as_deref()))
                    br;
                    span.muted { (release.created_by) ", " (time(release.finished_at.unwrap_or(release.created_at), now)) }
                    @for (name, distance) in &row.behind { br; span.chip { (behind_text(name, distance)) } }
                } @else {
                    span.muted { "nothing yet" }
                }
            }
            td data-label="Now" {
                @if let Some(running) = &row.running {
                    (status(running.status)) " "
                    a href={ "/deployments/" (running.id) } { (app) "#" (running.number) }
                    @if let Some(phase) = running.phase { " " span.muted { (layout::phase_name(phase)) } }
                } @else {
                    span.muted { "idle" }
                }
                @if row.queued > 0 { br; span.chip { (row.queued) " queued" } }
                @if row.gated > 0 { br; span.chip { (row.gated) " waiting for checks, an approval or a freeze to end" } }
                @if row.env.auto_deploy_paused_by.is_some() { br; span.chip { "auto-deploy paused" } }
            }
            td data-label="Lock" {
                @if let Some(by) = &row.env.locked_by {
                    strong { "🔒 " (by) } br;
                    span.muted { (row.env.lock_reason.as_deref().unwrap_or("")) }
                } @else {
                    span.muted { "unlocked" }
                }
            }
            td data-label="Last failure" {
                @if let Some(failed) = &row.failure {
                    a href={ "/deployments/" (failed.id) } { (app) "#" (failed.number) } " "
                    span.error { (failed.message.as_deref().unwrap_or("failed")) }
                } @else {
                    span.muted { "—" }
                }
            }
        }
    }
}

/// `GET /live`: the overview's rows as they change.
pub(super) async fn live(
    State(state): State<AppState>,
    who: SignedIn,
    Query(query): Query<OverviewQuery>,
) -> WebResult<Response> {
    let only = match query.app.as_deref().filter(|a| !a.is_empty()) {
        Some(name) => Some(applications::get(&state.db, name).await?),
        None => None,
    };
    let live_url = match &only {
        Some(app) => format!("/live?app={}", encode(&app.name)),
        None => "/live".to_owned(),
    };
    let only_id = only.as_ref().map(|a| a.id);
    let render_state = state.clone();
    // Any change may change other rows (how far behind each is) or add one:
    // the whole table is rendered again.
    Ok(live::swaps(state, who, move |change| {
        let state = render_state.clone();
        let only = only.clone();
        let live_url = live_url.clone();
        async move {
            if let (Some(only), Some((app, _))) = (only_id, change) {
                if app != only {
                    return Ok(None);
                }
            }
            let apps = match only {
                Some(app) => vec![app],
                None => applications::list(&state.db).await?,
            };
            let rows = rows(&state, apps).await?;
            Ok(Some(environments_table(
                &rows,
                state.clock.now(),
                &live_url,
            )))
        }
    }))
}

/// `GET /apps/{app}`: an application's environments and latest deployments.
pub(super) async fn application(
    State(state): State<AppState>,
    who: SignedIn,
    Path(name): Path<String>,
) -> WebResult<Markup> {
    let app = applications::get(&state.db, &name).await?;
    let rows = rows(&state, vec![app.clone()]).await?;
    let (recent, _) = deployments::list(
        &state.db,
        &Filter {
            application: Some(app.name.clone()),
            ..Filter::default()
        },
        20,
        None,
    )
    .await?;
    let now = state.clock.now();
    let body = html! {
        h1 { (app.name) }
        p.muted { code { (app.repository) } " · spec " code { (app.spec_path) } }
        h2 { "Environments" }
        @if rows.is_empty() {
            div.panel { p.muted { "No environment yet: the first deployment or lock makes one, or an admin adds one in Setup." } }
        } @else {
            (environments_table(&rows, now, &format!("/live?app={}", encode(&app.name))))
        }
        h2 { "Latest deployments" }
        (deployments_table(&recent, now))
    };
    Ok(page(&app.name, Some(&who), Section::Overview, body))
}

/// A table of deployments, newest first.
pub(super) fn deployments_table(deployments: &[DeploymentView], now: DateTime<Utc>) -> Markup {
    html! {
        @if deployments.is_empty() {
            div.panel { p.muted { "No deployment yet." } }
        } @else {
            table.responsive {
                thead { tr { th { "Deployment" } th { "Status" } th { "Commit" } th { "Task" } th { "By" } th { "Created" } } }
                tbody {
                    @for d in deployments {
                        tr {
                            td data-label="Deployment" {
                                a href={ "/deployments/" (d.deployment.id) } { (d.name()) }
                                " → " (d.environment.name)
                            }
                            td data-label="Status" {
                                (status(d.status()))
                                @if let Some(message) = &d.deployment.message { br; span.muted { (message) } }
                            }
                            td data-label="Commit" {
                                code { (d.deployment.ref_name) } " "
                                (commit(&d.application.repository, d.deployment.sha.as_deref()))
                            }
                            td data-label="Task" { (d.deployment.task) }
                            td data-label="By" { (d.deployment.created_by) }
                            td data-label="Created" { (time(d.deployment.created_at, now)) }
                        }
                    }
                }
            }
        }
    }
}

/// `GET /apps/{app}/{env}`: an environment: its lock, auto-deploy, what
/// runs, its releases (with Rollback) and latest deployments.
pub(super) async fn environment(
    State(state): State<AppState>,
    who: SignedIn,
    Path((app, env)): Path<(String, String)>,
) -> WebResult<Markup> {
    let (app, env) = applications::get_environment(&state.db, &app, &env).await?;
    let title = format!("{} / {}", app.name, env.name);
    let live = environment_live_part(&state, &who, Arc::new(app.clone()), env.clone()).await?;
    let body = html! {
        p.muted { a href={ "/apps/" (encode(&app.name)) } { (app.name) } " / " }
        div.actions {
            h1 { (env.name) }
            @if who.may(roles::DEPLOY) {
                a.button.primary href={ (environment_path(&app.name, &env.name)) "/deploy" } { "Deploy…" }
            }
        }
        @if let Some(url) = &env.url { p { a href=(url) rel="noopener" { (url) } } }
        (live)
    };
    Ok(page(&title, Some(&who), Section::Overview, body))
}

/// The live part of an environment's page.
async fn environment_live_part(
    state: &AppState,
    who: &SignedIn,
    app: Arc<application::Model>,
    env: environment::Model,
) -> ApiResult<Markup> {
    let now = state.clock.now();
    let row = rows_of(state, (*app).clone())
        .await?
        .into_iter()
        .find(|row| row.env.id == env.id)
        .ok_or_else(|| applications::environment_not_found(&app.name, &env.name))?;
    let env = row.env.clone();
    let (releases, more) = releases::list(&state.db, env.id, 25, None).await?;
    let (recent, _) = deployments::list(
        &state.db,
        &Filter {
            application: Some(app.name.clone()),
            environment: Some(env.name.clone()),
            ..Filter::default()
        },
        10,
        None,
    )
    .await?;
    let base = environment_path(&app.name, &env.name);
    let operate = who.may(roles::OPERATE);
    let deploy = who.may(roles::DEPLOY);
    let current = row.release.as_ref().map(|r| r.id);
    let checked = crate::drift::latest(&state.db, env.id).await?;
    Ok(html! {
        div #environment data-live={ (base) "/live" } {
            @if let Some(by) = &env.locked_by {
                div.banner.lock role="status" {
                    span { strong { "Locked" } " by " (by)
                        @if let Some(at) = env.locked_at { ", " (time(at, now)) } ": "
                        (env.lock_reason.as_deref().unwrap_or("")) }
                    @if operate {
                        form.inline method="post" action={ (base) "/unlock" } {
                            (csrf(who)) button type="submit" { "Unlock" }
                        }
                    }
                }
            } @else if operate {
                form.inline.lock-form method="post" action={ (base) "/lock" } {
                    (csrf(who))
                    label for="lock-reason" { "Lock" }
                    input #lock-reason type="text" name="reason" required maxlength="1000" placeholder="why (shown to everyone)";
                    button type="submit" { "Lock" }
                }
            }
            @if let Some(by) = &env.auto_deploy_paused_by {
                div.banner.paused role="status" {
                    span { strong { "Auto-deploy paused" } " by " (by)
                        @if let Some(at) = env.auto_deploy_paused_at { ", " (time(at, now)) }
                        @if let Some(reason) = &env.auto_deploy_pause_reason { ": " (reason) }
                        ". Pushes do not deploy here until someone deploys or resumes." }
                    @if deploy {
                        form.inline method="post" action={ (base) "/resume" } {
                            (csrf(who)) button type="submit" { "Resume auto-deploy" }
                        }
                    }
                }
            }
            @if let Some(failed) = &row.failure {
                div.banner.failure role="status" {
                    span { "The newest deployment, " a href={ "/deployments/" (failed.id) } { (app.name) "#" (failed.number) }
                        ", failed: " (failed.message.as_deref().unwrap_or("")) }
                }
            }
            div.grid2 {
                div.panel {
                    h2 { "Runs" }
                    @if let Some(release) = &row.release {
                        dl.facts {
                            dt { "Release" } dd { a href={ "/deployments/" (release.id) } { (app.name) "#" (release.number) } }
                            dt { "Commit" } dd { code { (release.ref_name) } " " (commit(&app.repository, release.sha.as_deref())) }
                            dt { "By" } dd { (release.created_by) }
                            dt { "Since" } dd { (time(release.finished_at.unwrap_or(release.created_at), now)) }
                            @if !row.behind.is_empty() {
                                dt { "Behind" }
                                dd { @for (i, (name, distance)) in row.behind.iter().enumerate() {
                                    @if i > 0 { ", " } (behind_text(name, distance))
                                } }
                            }
                        }
                        (layout::services(&view::services(release)?))
                        @if let (Some(sha), Some(tracked)) = (&release.sha, &env.auto_deploy_ref) {
                            @if let Some(url) = releases::compare_url(&app.repository, sha, tracked) {
                                p { a href=(url) rel="noopener" { "Commits on " (tracked) " not deployed here" } }
                            }
                        }
                    } @else {
                        p.muted { "Nothing has been deployed here yet." }
                    }
                }
                div.panel {
                    h2 { "Now" }
                    @if let Some(running) = &row.running {
                        p { (status(running.status)) " " a href={ "/deployments/" (running.id) } { (app.name) "#" (running.number) }
                            @if let Some(phase) = running.phase { " " span.muted { (layout::phase_name(phase)) } } }
                    } @else {
                        p.muted { "No deployment in progress." }
                    }
                    @if row.gated > 0 {
                        p { (row.gated) " of the queued wait for checks, an approval or a freeze to end: their pages say which." }
                    }
                    p { (row.queued) " queued · auto-deploys from "
                        @if let Some(tracked) = &env.auto_deploy_ref { code { (tracked) } } @else { "no branch" } }
                }
            }
            h2 { "On the swarm" }
            (on_the_swarm(&env, row.release.as_ref(), now)?)
            h2 { "Against git" }
            (against_git(checked.as_ref(), now))
            h2 { "Releases" }
            @if releases.is_empty() {
                div.panel { p.muted { "No release yet: a deployment that succeeds here is one." } }
            } @else {
                table.responsive {
                    thead { tr { th { "Release" } th { "Commit" } th { "Task" } th { "By" } th { "Served" } @if deploy { th { "" } } } }
                    tbody {
                        @for (i, release) in releases.iter().enumerate() {
                            @let until = if i == 0 { None } else { releases[i - 1].finished_at };
                            tr {
                                td data-label="Release" {
                                    a href={ "/deployments/" (release.id) } { (app.name) "#" (release.number) }
                                    @if Some(release.id) == current { " " span.chip { "running" } }
                                }
                                td data-label="Commit" { code { (release.ref_name) } " " (commit(&app.repository, release.sha.as_deref())) }
                                td data-label="Task" { (release.task) }
                                td data-label="By" { (release.created_by) }
                                td data-label="Served" {
                                    @if let Some(from) = release.finished_at {
                                        (time(from, now))
                                        @if let Some(until) = until { span.muted { ", for " (layout::duration(until - from)) } }
                                    }
                                }
                                @if deploy {
                                    td {
                                        @if Some(release.id) != current {
                                            form.inline method="post" action={ (base) "/rollback" } {
                                                (csrf(who))
                                                input type="hidden" name="to" value=(release.number);
                                                input type="text" id={ "reason-" (release.number) } name="reason" required maxlength="1000" placeholder="why" aria-label={ "Why roll back to " (app.name) "#" (release.number) };
                                                button.danger type="submit" { "Roll back to " (app.name) "#" (release.number) }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                @if more { p.muted { "Older releases: " code { "slipway releases " (app.name) " " (env.name) } } }
            }
            h2 { "Latest deployments" }
            (deployments_table(&recent, now))
        }
    })
}

/// How the swarm differs from the release's commit, as the last drift check
/// planned it.
fn against_git(checked: Option<&plan::Model>, now: DateTime<Utc>) -> Markup {
    let Some(plan) = checked else {
        return html! {
            div.panel { p.muted { "Not checked yet: every 10 minutes a runner plans the release's commit against the swarm, the first time 10 minutes after the release." } }
        };
    };
    let seen = html! {
        span.muted { " Checked " (time(plan.finished_at.unwrap_or(plan.created_at), now))
            " by " (plan.runner.as_deref().unwrap_or("a runner"))
            " (" a href={ "/plans/" (plan.id) } { "the plan" } ")." }
    };
    let drifted = crate::drift::drifted(plan);
    html! {
        @if drifted.is_empty() {
            p { span.status.SUCCEEDED { "as in git" } " Deploying the release's commit again would change nothing." (seen) }
        } @else {
            div.banner.failure role="status" {
                span { strong { "Differs from git" } (seen)
                    ul { @for service in &drifted {
                        li { code { (service.name) } ": "
                            @match service.action.as_str() {
                                "update" => { "changed on the swarm since: " (service.changes.join(", ")) }
                                "remove" => { "on the swarm, not in the commit" }
                                "create" => { "in the commit, not on the swarm" }
                                other => { (other) }
                            }
                        }
                    } } }
            }
        }
    }
}

/// What runs where: every task of the stack as a runner last saw the swarm,
/// and how it drifted from the release.
fn on_the_swarm(
    env: &environment::Model,
    release: Option<&deployment::Model>,
    now: DateTime<Utc>,
) -> ApiResult<Markup> {
    let Some(observed) = crate::nodes::observed(env)? else {
        return Ok(html! {
            div.panel { p.muted { "No runner has looked at this environment's stack yet: runners look after each deployment and every minute." } }
        });
    };
    let drift = match release {
        Some(release) => crate::nodes::drift(&view::services(release)?, &observed),
        None => vec!["the environment has no release".into()],
    };
    let seen = html! {
        span.muted { " Seen " (time(env.observed_at.unwrap_or(env.created_at), now))
            " by " (env.observed_by.as_deref().unwrap_or("a runner")) "." }
    };
    Ok(html! {
        @if drift.is_empty() {
            p { span.status.SUCCEEDED { "consistent" } " Every node runs the release's digests, every replica up." (seen) }
        } @else {
            div.banner.failure role="status" {
                span { strong { "Drift" } (seen)
                    ul { @for line in &drift { li { (line) } } } }
            }
        }
        table.responsive {
            thead { tr { th { "Service" } th { "Tasks" } th { "Node" } th { "Digest" } th { "State" } } }
            tbody {
                @for service in &observed {
                    @let count = match service.replicas {
                        Some(want) => format!("{} of {want}", service.running()),
                        None => format!("{} (global)", service.running()),
                    };
                    @if service.tasks.is_empty() {
                        tr { td data-label="Service" { (service.name) } td data-label="Tasks" { (count) } td { "—" } td { "—" } td { "no task" } }
                    }
                    @for task in &service.tasks {
                        tr {
                            td data-label="Service" { (service.name) }
                            td data-label="Tasks" { (count) }
                            td data-label="Node" { (task.node.as_deref().unwrap_or("—")) }
                            td data-label="Digest" { @match &task.digest {
                                Some(digest) => code title=(digest) { (digest.get(..19).unwrap_or(digest)) "…" },
                                None => span.muted { "unpinned" },
                            } }
                            td data-label="State" { (task.state)
                                @if let Some(error) = &task.error { ": " span.muted { (error) } } }
                        }
                    }
                }
            }
        }
    })
}

/// `GET /apps/{app}/{env}/live`: the environment's page as it changes,
/// and as the application's other environments do (how far behind it is).
pub(super) async fn environment_live(
    State(state): State<AppState>,
    who: SignedIn,
    Path((app, env)): Path<(String, String)>,
) -> WebResult<Response> {
    let (app, env) = applications::get_environment(&state.db, &app, &env).await?;
    let app = Arc::new(app);
    let render_state = state.clone();
    let signed_in = Arc::new(who.clone());
    Ok(live::swaps(state, who, move |change| {
        let state = render_state.clone();
        let app = app.clone();
        let env = env.clone();
        let who = signed_in.clone();
        async move {
            if change.is_some_and(|(changed_app, _)| changed_app != app.id) {
                return Ok(None);
            }
            Ok(Some(environment_live_part(&state, &who, app, env).await?))
        }
    }))
}
