//! Acting on environments (deploy, lock, unlock, resume, roll back), the
//! runners, and setting applications up. Every action is a form carrying the
//! session's CSRF token, refused on the server for a role that may not take
//! it (whatever the page showed), and calls the same code as its mutation.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::{html, Markup};
use serde::Deserialize;

use crate::applications::{self, NewApplication, NewEnvironment};
use crate::auth::roles;
use crate::db::entities::deployment::DeploymentStatus;
use crate::deployments::{self, Filter, NewDeployment};
use crate::releases::{self, Rollback};
use crate::runners;
use crate::state::AppState;

use super::layout::{commit, csrf, page, time, Section};
use super::{encode, environment_path, CsrfForm, SignedIn, WebResult};

/// `GET /apps/{app}/{env}/deploy`: what to deploy.
pub(super) async fn deploy_page(
    State(state): State<AppState>,
    who: SignedIn,
    Path((app, env)): Path<(String, String)>,
) -> WebResult<Markup> {
    who.require(roles::DEPLOY)?;
    let (app, env) = applications::get_environment(&state.db, &app, &env).await?;
    let release = deployments::current_release(&state.db, env.id).await?;
    let tracked = env.auto_deploy_ref.clone().unwrap_or_else(|| "main".into());
    let path = environment_path(&app.name, &env.name);
    let body = html! {
        p.muted { a href={ "/apps/" (encode(&app.name)) } { (app.name) } " / " a href=(path) { (env.name) } }
        h1 { "Deploy to " (env.name) }
        @if let Some(by) = &env.locked_by {
            div.banner.lock role="status" { span { strong { "Locked" } " by " (by) ": " (env.lock_reason.as_deref().unwrap_or("")) ". A deployment is refused until it is unlocked." } }
        }
        div.panel {
            p {
                "Runs now: "
                @if let Some(release) = &release {
                    a href={ "/deployments/" (release.id) } { (app.name) "#" (release.number) }
                    " (" code { (release.ref_name) } " " (commit(&app.repository, release.sha.as_deref())) ")"
                } @else { "nothing yet" }
            }
            p.muted { "The runner resolves the ref, plans the stack against what runs and rolls it out; the deployment's page shows the plan and follows it live. " strong { "Preview changes" } " asks a runner what it would change first, and deploys nothing." }
            form method="post" action={ (path) "/deploy" } {
                (csrf(&who))
                input type="hidden" name="application" value=(app.name);
                input type="hidden" name="environment" value=(env.name);
                div.field {
                    label for="ref" { "Branch, tag or commit" }
                    input #ref type="text" name="ref" value=(tracked) required maxlength="255";
                }
                div.field {
                    label for="description" { "Note " small { "optional, shown with the deployment" } }
                    input #description type="text" name="description" maxlength="4096";
                }
                div.field {
                    label for="task" { "Task " small { "optional: run this task of the spec alone (" code { "migrate" } "), changing no service" } }
                    input #task type="text" name="task" maxlength="64" pattern="(deploy:)?[a-z0-9][a-z0-9_-]*";
                }
                @if let Some(required) = crate::checks::policy(&env) {
                    p.muted {
                        "It waits for CI to pass on its commit: "
                        @if required.names.is_empty() { "every check" } @else { (required.names.join(", ")) @if required.all { " and every other check" } }
                        " (at most " (required.timeout_minutes) " minutes)."
                    }
                    @if required.all {
                        div.field {
                            label {
                                input type="checkbox" name="force" value="on";
                                " Force: wait only for the checks named as required"
                                @if required.names.is_empty() { " (none)" }
                                " — recorded as forced by you"
                            }
                        }
                    }
                }
                div.actions {
                    button type="submit" formaction="/plans" { "Preview changes" }
                    button.primary type="submit" { "Deploy" }
                }
            }
        }
    };
    Ok(page(
        &format!("Deploy {} / {}", app.name, env.name),
        Some(&who),
        Section::Overview,
        body,
    ))
}

#[derive(Deserialize)]
pub(super) struct DeployForm {
    csrf: String,
    r#ref: String,
    /// The commit a plan saw: the deployment deploys exactly it.
    sha: Option<String>,
    description: Option<String>,
    /// A task of the spec to run alone instead of a rollout.
    task: Option<String>,
    /// `on` when the deployer goes past the checks not named as required.
    force: Option<String>,
}

/// `POST /apps/{app}/{env}/deploy`.
pub(super) async fn deploy(
    State(state): State<AppState>,
    who: SignedIn,
    Path((app, env)): Path<(String, String)>,
    Form(form): Form<DeployForm>,
) -> WebResult<Response> {
    who.check_form(&form.csrf)?;
    who.require(roles::DEPLOY)?;
    let created = deployments::create(
        &state,
        who.subject(),
        NewDeployment {
            application: app,
            environment: env,
            ref_name: form.r#ref.trim().to_owned(),
            sha: form
                .sha
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty()),
            description: form.description.filter(|d| !d.trim().is_empty()),
            task: form
                .task
                .map(|t| t.trim().to_owned())
                .filter(|t| !t.is_empty()),
            force: form.force.as_deref() == Some("on"),
            ..NewDeployment::default()
        },
    )
    .await?;
    Ok(Redirect::to(&format!("/deployments/{}", created.deployment.id)).into_response())
}

#[derive(Deserialize)]
pub(super) struct ReasonForm {
    csrf: String,
    reason: String,
}

/// `POST /apps/{app}/{env}/lock`.
pub(super) async fn lock(
    State(state): State<AppState>,
    who: SignedIn,
    Path((app, env)): Path<(String, String)>,
    Form(form): Form<ReasonForm>,
) -> WebResult<Response> {
    who.check_form(&form.csrf)?;
    who.require(roles::OPERATE)?;
    let reason = form.reason.trim();
    applications::set_lock(&state, &app, &env, Some((who.subject(), reason))).await?;
    Ok(Redirect::to(&environment_path(&app, &env)).into_response())
}

/// `POST /apps/{app}/{env}/unlock`.
pub(super) async fn unlock(
    State(state): State<AppState>,
    who: SignedIn,
    Path((app, env)): Path<(String, String)>,
    Form(form): Form<CsrfForm>,
) -> WebResult<Response> {
    who.check_form(&form.csrf)?;
    who.require(roles::OPERATE)?;
    applications::set_lock(&state, &app, &env, None).await?;
    Ok(Redirect::to(&environment_path(&app, &env)).into_response())
}

/// `POST /apps/{app}/{env}/resume`: auto-deploys run again.
pub(super) async fn resume(
    State(state): State<AppState>,
    who: SignedIn,
    Path((app, env)): Path<(String, String)>,
    Form(form): Form<CsrfForm>,
) -> WebResult<Response> {
    who.check_form(&form.csrf)?;
    who.require(roles::DEPLOY)?;
    releases::resume(&state, &app, &env).await?;
    Ok(Redirect::to(&environment_path(&app, &env)).into_response())
}

#[derive(Deserialize)]
pub(super) struct RollbackForm {
    csrf: String,
    to: Option<String>,
    reason: String,
}

/// `POST /apps/{app}/{env}/rollback`: restores a release; the new
/// deployment's page follows it.
pub(super) async fn rollback(
    State(state): State<AppState>,
    who: SignedIn,
    Path((app, env)): Path<(String, String)>,
    Form(form): Form<RollbackForm>,
) -> WebResult<Response> {
    who.check_form(&form.csrf)?;
    who.require(roles::DEPLOY)?;
    let created = releases::rollback(
        &state,
        who.subject(),
        Rollback {
            application: app,
            environment: env,
            to: form.to.filter(|t| !t.trim().is_empty()),
            reason: form.reason,
        },
    )
    .await?;
    Ok(Redirect::to(&format!("/deployments/{}", created.deployment.id)).into_response())
}

/// `GET /runners`: each runner, what it says of itself and what it holds.
pub(super) async fn runners(State(state): State<AppState>, who: SignedIn) -> WebResult<Markup> {
    let runners = runners::list(&state).await?;
    let (running, _) = deployments::list(
        &state.db,
        &Filter {
            status: Some(DeploymentStatus::InProgress),
            ..Filter::default()
        },
        200,
        None,
    )
    .await?;
    let now = state.clock.now();
    let body = html! {
        h1 { "Runners" }
        @if runners.is_empty() {
            div.panel { p.muted { "No runner has registered yet. " code { "slipway up" } " runs one; on a swarm, the stack in " code { "deploy/" } " does." } }
        } @else {
            table.responsive {
                thead { tr { th { "Runner" } th { "Health" } th { "Labels" } th { "Version" } th { "Last heard from" } th { "Holds" } } }
                tbody {
                    @for runner in &runners {
                        @let labels: Vec<String> = serde_json::from_str(&runner.labels).unwrap_or_default();
                        tr {
                            td data-label="Runner" { strong { (runner.name) }
                                @if let Some(instance) = &runner.last_instance { br; code.muted { (instance) } } }
                            td data-label="Health" {
                                @if runners::is_connected(runner, now) { span.status.SUCCEEDED { "connected" } }
                                @else { span.status.FAILED title="not heard from for more than 30 seconds" { "lost" } }
                            }
                            td data-label="Labels" { div.chips { @for label in &labels { span.chip { (label) } } } }
                            td data-label="Version" { (runner.version.as_deref().unwrap_or("—")) }
                            td data-label="Last heard from" { (time(runner.last_seen_at, now)) }
                            td data-label="Holds" {
                                @let held: Vec<_> = running.iter().filter(|d| d.deployment.runner.as_deref() == Some(runner.name.as_str())).collect();
                                @if held.is_empty() { span.muted { "nothing" } }
                                @for d in held {
                                    a href={ "/deployments/" (d.deployment.id) } { (d.name()) } " → " (d.environment.name) br;
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(page("Runners", Some(&who), Section::Runners, body))
}

/// `GET /setup` (admins): applications and environments, the hooks that
/// deploy them.
pub(super) async fn setup(State(state): State<AppState>, who: SignedIn) -> WebResult<Markup> {
    who.require(roles::ADMIN)?;
    let apps = applications::list(&state.db).await?;
    let mut listed = Vec::new();
    for app in &apps {
        listed.push((app, applications::environments(&state.db, app.id).await?));
    }
    let hooks = state
        .settings
        .hooks_url
        .clone()
        .unwrap_or_else(|| "http://HOOKS-ADDRESS".into());
    let body = html! {
        h1 { "Setup" }
        div.grid2 {
            div.panel {
                h2 { "New application" }
                form method="post" action="/setup/applications" {
                    (csrf(&who))
                    div.field { label for="app-name" { "Name" } input #app-name type="text" name="name" required maxlength="63" pattern="[a-z0-9][a-z0-9_.-]*" placeholder="shop"; small { "Lowercase letters, digits, " code { "-" } ", " code { "_" } ", " code { "." } } }
                    div.field { label for="repository" { "Repository" } input #repository type="text" name="repository" required placeholder="https://github.com/acme/shop.git"; small { "https, ssh or git URL; credentials are the runner's, never part of the URL" } }
                    div.field { label for="spec-path" { "Deploy spec" } input #spec-path type="text" name="spec_path" value="slipway.yml"; }
                    button.primary type="submit" { "Create application" }
                }
            }
            div.panel {
                h2 { "New environment" }
                @if apps.is_empty() {
                    p.muted { "Create an application first." }
                } @else {
                    form method="post" action="/setup/environments" {
                        (csrf(&who))
                        div.field { label for="env-app" { "Application" }
                            select #env-app name="application" { @for app in &apps { option value=(app.name) { (app.name) } } } }
                        div.field { label for="env-name" { "Name" } input #env-name type="text" name="name" required maxlength="63" placeholder="production"; }
                        div.field { label for="tracked" { "Auto-deploy branch " small { "pushes to it deploy here; leave empty for none" } } input #tracked type="text" name="auto_deploy_ref" placeholder="main"; }
                        div.field { label for="env-url" { "URL " small { "where people reach it" } } input #env-url type="url" name="url" placeholder="https://shop.example.com"; }
                        button.primary type="submit" { "Create environment" }
                    }
                }
            }
        }
        h2 { "Hooks" }
        div.panel {
            p { "The provider turns these hooks into deployments; each route is on when its secret is set." }
            table.responsive {
                thead { tr { th { "Source" } th { "URL" } th { "Secret" } } }
                tbody {
                    tr { td { "GitHub" } td { code { (hooks) "/hooks/github" } } td { code { "--github-webhook-secret" } " (events " em { "Deployments" } " and " em { "Pushes" } ", content type JSON)" } }
                    tr { td { "GitLab" } td { code { (hooks) "/hooks/gitlab" } } td { code { "--gitlab-webhook-token" } " (push and pipeline events)" } }
                    tr { td { "Any CI" } td { code { (hooks) "/hooks/generic" } } td { code { "--generic-token" } " as " code { "Authorization: Bearer" } } }
                }
            }
        }
        h2 { "Applications" }
        @if listed.is_empty() {
            div.panel { p.muted { "None yet." } }
        } @else {
            table.responsive {
                thead { tr { th { "Application" } th { "Repository" } th { "Spec" } th { "Environments" } } }
                tbody {
                    @for (app, envs) in &listed {
                        tr {
                            td { a href={ "/apps/" (encode(&app.name)) } { (app.name) } }
                            td { code { (app.repository) } }
                            td { code { (app.spec_path) } }
                            td { div.chips { @for env in envs {
                                a.chip href=(environment_path(&app.name, &env.name)) { (env.name)
                                    @if let Some(tracked) = &env.auto_deploy_ref { " ← " (tracked) } }
                            } } }
                        }
                    }
                }
            }
        }
        h2 { "Check a spec" }
        p.muted { "A runner fetches the ref, reads the spec as a deployment would, resolves each image to its digest and compares with what runs: spec errors name the file and the field. Nothing is deployed." }
        @if listed.iter().all(|(_, envs)| envs.is_empty()) {
            div.panel { p.muted { "Create an application and an environment first." } }
        }
        div.grid2 {
            @for (app, envs) in &listed {
                @if !envs.is_empty() {
                    div.panel {
                        h3 { (app.name) }
                        form method="post" action="/plans" {
                            (csrf(&who))
                            input type="hidden" name="application" value=(app.name);
                            div.field { label for={ "check-env-" (app.id) } { "Environment" }
                                select id={ "check-env-" (app.id) } name="environment" { @for env in envs { option value=(env.name) { (env.name) } } } }
                            div.field { label for={ "check-ref-" (app.id) } { "Branch, tag or commit" }
                                input id={ "check-ref-" (app.id) } type="text" name="ref" required maxlength="255" value=(envs[0].auto_deploy_ref.as_deref().unwrap_or("main")); }
                            button type="submit" { "Check the spec" }
                        }
                    }
                }
            }
        }
    };
    Ok(page("Setup", Some(&who), Section::Setup, body))
}

#[derive(Deserialize)]
pub(super) struct ApplicationForm {
    csrf: String,
    name: String,
    repository: String,
    spec_path: Option<String>,
}

/// `POST /setup/applications`.
pub(super) async fn create_application(
    State(state): State<AppState>,
    who: SignedIn,
    Form(form): Form<ApplicationForm>,
) -> WebResult<Response> {
    who.check_form(&form.csrf)?;
    who.require(roles::ADMIN)?;
    let app = applications::create(
        &state,
        NewApplication {
            name: form.name.trim().to_owned(),
            repository: form.repository.trim().to_owned(),
            spec_path: form.spec_path.filter(|p| !p.trim().is_empty()),
        },
    )
    .await?;
    Ok(Redirect::to(&format!("/apps/{}", encode(&app.name))).into_response())
}

#[derive(Deserialize)]
pub(super) struct EnvironmentForm {
    csrf: String,
    application: String,
    name: String,
    auto_deploy_ref: Option<String>,
    url: Option<String>,
}

/// `POST /setup/environments`.
pub(super) async fn create_environment(
    State(state): State<AppState>,
    who: SignedIn,
    Form(form): Form<EnvironmentForm>,
) -> WebResult<Response> {
    who.check_form(&form.csrf)?;
    who.require(roles::ADMIN)?;
    let non_empty = |v: Option<String>| v.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
    let (env, app) = applications::create_environment(
        &state,
        NewEnvironment {
            application: form.application,
            name: form.name.trim().to_owned(),
            auto_deploy_ref: non_empty(form.auto_deploy_ref),
            url: non_empty(form.url),
            ..NewEnvironment::default()
        },
    )
    .await?;
    Ok(Redirect::to(&environment_path(&app.name, &env.name)).into_response())
}
