//! Chat-ops: Slack's slash command (`/slipway deploy shop production`) at
//! `POST /hooks/slack`.
//!
//! - A request is Slack's only if `X-Slack-Signature` is `v0=` and the hex
//!   HMAC-SHA256, under the signing secret, of `v0:<timestamp>:<body>`, and
//!   its `X-Slack-Request-Timestamp` is within five minutes of now; anything
//!   else is refused before the body is read as a command.
//! - The Slack user is a Slipway identity and role only by configuration
//!   (`--slack-user U123=alice:deployer`); anyone else is told so, and may
//!   do nothing. Roles are those of the mutations the commands stand for.
//! - The answer comes at once (Slack waits three seconds); what becomes of
//!   a deployment started from chat is posted to the command's
//!   `response_url` through the outbox ([`notifications::follow`]), when
//!   that URL is Slack's (`--slack-url`).
//! - Every command that acts is recorded in the audit log (`CHAT`).

use std::collections::HashMap;

use axum::body::{to_bytes, Body};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Json, Router};
use serde_json::{json, Value};
use slipway_secret::signature::slack;
use slipway_secret::Secret;

use crate::audit::{self, Action, Origin, Peer, Via};
use crate::auth::{roles, Role};
use crate::deployments::{self, NewDeployment};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::view::DeploymentView;
use crate::{applications, notifications, releases};

/// The largest command Slack sends is a few hundred bytes.
const MAX_BODY_BYTES: usize = 16 * 1024;
/// The most environments `status` lists.
const MAX_LISTED: usize = 30;

/// How Slack's slash commands reach Slipway.
#[derive(Clone, Debug)]
pub struct SlackCommands {
    pub signing_secret: Secret,
    /// Slack user ids, and who each is in Slipway.
    pub users: HashMap<String, SlackUser>,
    /// Where a command's `response_url` must lead (`https://hooks.slack.com`).
    pub slack_url: String,
}

/// A Slack user's Slipway identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlackUser {
    pub subject: String,
    pub role: Role,
}

/// `U123=alice:deployer`, as `--slack-user` takes it.
pub fn parse_user(text: &str) -> Result<(String, SlackUser), String> {
    let form = || format!("`{text}` is not USER_ID=SUBJECT:ROLE (e.g. U024BE7LH=alice:deployer)");
    let (id, who) = text.trim().split_once('=').ok_or_else(form)?;
    let (subject, role) = who.rsplit_once(':').ok_or_else(form)?;
    if id.is_empty() || subject.is_empty() {
        return Err(form());
    }
    let role: Role = role.parse().map_err(|err| format!("{err} in `{text}`"))?;
    Ok((
        id.to_owned(),
        SlackUser {
            subject: subject.to_owned(),
            role,
        },
    ))
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/hooks/slack", post(slash_command))
        .with_state(state)
}

/// `POST /hooks/slack`.
async fn slash_command(
    State(state): State<AppState>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(slack) = state.settings.slack.clone() else {
        return (
            StatusCode::NOT_FOUND,
            "chat-ops is not configured: start the API with --slack-signing-secret-file and --slack-user\n",
        )
            .into_response();
    };
    let Ok(body) = to_bytes(body, MAX_BODY_BYTES).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, "the command is too large\n").into_response();
    };
    let now = chrono::Utc::now().timestamp();
    if let Err(why) = verify(&slack.signing_secret, &headers, &body, now) {
        tracing::warn!(why, "refused a Slack command");
        return (StatusCode::UNAUTHORIZED, format!("{why}\n")).into_response();
    }
    let form: HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    let field = |name: &str| form.get(name).map(String::as_str).unwrap_or_default();
    let asked = Asked {
        user_id: field("user_id"),
        text: field("text"),
        response_url: Some(field("response_url")).filter(|url| is_slack(url, &slack.slack_url)),
        origin: Origin::of(peer.map(|Extension(Peer(peer))| peer), &headers),
    };
    Json(answer(&state, &slack, asked).await).into_response()
}

/// Checks that Slack signed `body` at a time within five minutes of `now`.
fn verify(secret: &Secret, headers: &HeaderMap, body: &[u8], now: i64) -> Result<(), String> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    slack::verify(
        secret,
        header("x-slack-request-timestamp"),
        header("x-slack-signature"),
        body,
        now,
    )
}

/// Whether `url` leads to Slack (`slack_url`'s origin, under it).
fn is_slack(url: &str, slack_url: &str) -> bool {
    let base = slack_url.trim_end_matches('/');
    url.strip_prefix(base)
        .is_some_and(|rest| rest.starts_with('/'))
}

/// One command, as Slack sent it.
struct Asked<'a> {
    user_id: &'a str,
    text: &'a str,
    response_url: Option<&'a str>,
    origin: Origin,
}

/// What a command asks.
#[derive(Debug, PartialEq, Eq)]
enum Command {
    Deploy {
        app: String,
        env: String,
        reference: Option<String>,
    },
    Status {
        app: Option<String>,
    },
    Lock {
        app: String,
        env: String,
        reason: String,
    },
    Unlock {
        app: String,
        env: String,
    },
    Rollback {
        app: String,
        env: String,
        to: Option<String>,
    },
    Help,
}

const USAGE: &str = "`deploy APP ENV [REF]` · `status [APP]` · `lock APP ENV REASON` · \
                     `unlock APP ENV` · `rollback APP ENV [--to N]`";

impl Command {
    fn parse(text: &str) -> Result<Command, String> {
        let words: Vec<&str> = text.split_whitespace().collect();
        let usage = |what: &str| format!("{what}: {USAGE}");
        Ok(match words.as_slice() {
            [] | ["help"] => Command::Help,
            ["deploy", app, env] => Command::Deploy {
                app: app.to_string(),
                env: env.to_string(),
                reference: None,
            },
            ["deploy", app, env, reference] => Command::Deploy {
                app: app.to_string(),
                env: env.to_string(),
                reference: Some(reference.to_string()),
            },
            ["status"] => Command::Status { app: None },
            ["status", app] => Command::Status {
                app: Some(app.to_string()),
            },
            ["lock", app, env, reason @ ..] if !reason.is_empty() => Command::Lock {
                app: app.to_string(),
                env: env.to_string(),
                reason: reason.join(" "),
            },
            ["unlock", app, env] => Command::Unlock {
                app: app.to_string(),
                env: env.to_string(),
            },
            ["rollback", app, env] => Command::Rollback {
                app: app.to_string(),
                env: env.to_string(),
                to: None,
            },
            ["rollback", app, env, "--to", to] => Command::Rollback {
                app: app.to_string(),
                env: env.to_string(),
                to: Some(to.to_string()),
            },
            [verb @ ("deploy" | "status" | "lock" | "unlock" | "rollback"), ..] => {
                return Err(usage(&format!("`{verb}` is not used so")))
            }
            [verb, ..] => return Err(usage(&format!("`{verb}` is not a command"))),
        })
    }

    /// The mutation the command stands for, and the roles it takes.
    fn action(&self) -> Option<(&'static str, &'static [Role])> {
        match self {
            Command::Deploy { .. } => Some(("createDeployment", roles::DEPLOY)),
            Command::Lock { .. } => Some(("lockEnvironment", roles::OPERATE)),
            Command::Unlock { .. } => Some(("unlockEnvironment", roles::OPERATE)),
            Command::Rollback { .. } => Some(("rollbackDeployment", roles::DEPLOY)),
            Command::Status { .. } | Command::Help => None,
        }
    }

    fn arguments(&self) -> Value {
        match self {
            Command::Deploy {
                app,
                env,
                reference,
            } => json!({"application": app, "environment": env, "ref": reference}),
            Command::Lock { app, env, reason } => {
                json!({"application": app, "environment": env, "reason": reason})
            }
            Command::Unlock { app, env } => json!({"application": app, "environment": env}),
            Command::Rollback { app, env, to } => {
                json!({"application": app, "environment": env, "to": to})
            }
            Command::Status { app } => json!({"application": app}),
            Command::Help => json!({}),
        }
    }
}

/// What Slack shows: only to the one who asked, or to the channel.
fn ephemeral(text: impl Into<String>) -> Value {
    json!({"response_type": "ephemeral", "text": text.into()})
}

fn in_channel(text: impl Into<String>) -> Value {
    json!({"response_type": "in_channel", "text": text.into()})
}

async fn answer(state: &AppState, slack: &SlackCommands, asked: Asked<'_>) -> Value {
    let command = match Command::parse(asked.text) {
        Ok(command) => command,
        Err(why) => return ephemeral(why),
    };
    let Some(user) = slack.users.get(asked.user_id) else {
        let refusal = format!(
            "Slipway does not know you (Slack user {}): an admin maps Slack users to Slipway with --slack-user",
            asked.user_id
        );
        if let Some((action, _)) = command.action() {
            let refused = Err(("FORBIDDEN".to_owned(), refusal.clone()));
            record(
                state,
                &command,
                action,
                None,
                asked.user_id,
                &asked.origin,
                refused,
            )
            .await;
        }
        return ephemeral(refusal);
    };
    let Some((action, allowed)) = command.action() else {
        return match run_read(state, &command).await {
            Ok(text) => ephemeral(text),
            Err(err) => ephemeral(err.message()),
        };
    };
    let done = if allowed.contains(&user.role) {
        run(state, user, &command, asked.response_url).await
    } else {
        Err(ApiError::Forbidden(format!(
            "the {} role may not do this",
            user.role.as_str()
        )))
    };
    let result = done
        .as_ref()
        .map(|_| ())
        .map_err(|err| (err.code().to_owned(), err.message().to_owned()));
    record(
        state,
        &command,
        action,
        Some(user),
        asked.user_id,
        &asked.origin,
        result,
    )
    .await;
    match done {
        Ok(text) => in_channel(text),
        Err(err) => ephemeral(err.message()),
    }
}

async fn record(
    state: &AppState,
    command: &Command,
    action: &str,
    user: Option<&SlackUser>,
    user_id: &str,
    origin: &Origin,
    result: Result<(), (String, String)>,
) {
    let actor = match user {
        Some(user) => user.subject.clone(),
        None => format!("slack:{user_id}"),
    };
    audit::record(
        state,
        Action {
            actor: Some(actor),
            role: user.map(|user| user.role),
            via: Via::Chat,
            action: action.to_owned(),
            arguments: command.arguments(),
            origin: origin.clone(),
            result,
        },
    )
    .await;
}

/// Carries out a command that acts; the channel's message says what it did.
async fn run(
    state: &AppState,
    user: &SlackUser,
    command: &Command,
    response_url: Option<&str>,
) -> ApiResult<String> {
    let by = &user.subject;
    match command {
        Command::Deploy {
            app,
            env,
            reference,
        } => {
            let (_, environment) = applications::get_environment(&state.db, app, env).await?;
            let reference = reference
                .clone()
                .or(environment.auto_deploy_ref)
                .unwrap_or_else(|| "main".into());
            let view = deployments::create(
                state,
                by,
                NewDeployment {
                    application: app.clone(),
                    environment: env.clone(),
                    ref_name: reference.clone(),
                    description: Some("from Slack".into()),
                    ..NewDeployment::default()
                },
            )
            .await?;
            follow(state, by, &view, response_url).await;
            Ok(format!(
                "{by} deploys `{reference}` of {app} to {env}: {}",
                linked(state, &view)
            ))
        }
        Command::Lock { app, env, reason } => {
            applications::set_lock(state, app, env, Some((by, reason))).await?;
            Ok(format!("{by} locked {app}/{env}: {reason}"))
        }
        Command::Unlock { app, env } => {
            applications::set_lock(state, app, env, None).await?;
            Ok(format!("{by} unlocked {app}/{env}"))
        }
        Command::Rollback { app, env, to } => {
            let view = releases::rollback(
                state,
                by,
                releases::Rollback {
                    application: app.clone(),
                    environment: env.clone(),
                    to: to.clone(),
                    reason: format!("rollback from Slack by {by}"),
                },
            )
            .await?;
            follow(state, by, &view, response_url).await;
            Ok(format!(
                "{by} rolls {app}/{env} back: {}",
                linked(state, &view)
            ))
        }
        Command::Status { .. } | Command::Help => unreachable!("reads are not run as actions"),
    }
}

/// Posts what becomes of `view` to the command's `response_url`.
async fn follow(state: &AppState, by: &str, view: &DeploymentView, response_url: Option<&str>) {
    let Some(url) = response_url else {
        return;
    };
    if let Err(err) = notifications::follow(state, by, view, url).await {
        tracing::warn!(
            ?err,
            deployment = view.deployment.id,
            "cannot follow a deployment for Slack"
        );
    }
}

/// `shop#13`, linked to its page when the API's public URL is known.
fn linked(state: &AppState, view: &DeploymentView) -> String {
    match &state.settings.public_url {
        Some(base) => format!(
            "<{}/deployments/{}|{}>",
            base.trim_end_matches('/'),
            view.deployment.id,
            view.name()
        ),
        None => view.name(),
    }
}

/// `help` and `status`.
async fn run_read(state: &AppState, command: &Command) -> ApiResult<String> {
    let apps = match command {
        Command::Status { app: Some(name) } => vec![applications::get(&state.db, name).await?],
        Command::Status { app: None } => applications::list(&state.db).await?,
        _ => return Ok(format!("Slipway understands {USAGE}")),
    };
    let mut lines = Vec::new();
    for app in &apps {
        for env in applications::environments(&state.db, app.id).await? {
            if lines.len() == MAX_LISTED {
                lines.push("… and more: ask `status APP`".to_owned());
                return Ok(lines.join("\n"));
            }
            let mut line = format!("*{}/{}*: ", app.name, env.name);
            match deployments::current_release(&state.db, env.id).await? {
                Some(release) => {
                    let sha = release
                        .sha
                        .as_deref()
                        .map_or("", |sha| &sha[..sha.len().min(7)]);
                    line.push_str(&format!(
                        "{}#{} `{}` at `{sha}`",
                        app.name, release.number, release.ref_name
                    ));
                }
                None => line.push_str("nothing released yet"),
            }
            if let Some(running) = deployments::in_progress(&state.db, env.id).await? {
                line.push_str(&format!(" · {}#{} in progress", app.name, running.number));
            }
            let queued = deployments::queued_count(&state.db, env.id).await?;
            if queued > 0 {
                line.push_str(&format!(" · {queued} queued"));
            }
            if let Some(by) = &env.locked_by {
                line.push_str(&format!(" · locked by {by}"));
            }
            lines.push(line);
        }
    }
    if lines.is_empty() {
        return Ok("No environments yet.".into());
    }
    Ok(lines.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_and_say_how_they_are_used() {
        assert_eq!(
            Command::parse("deploy shop production v1.2"),
            Ok(Command::Deploy {
                app: "shop".into(),
                env: "production".into(),
                reference: Some("v1.2".into())
            })
        );
        assert_eq!(
            Command::parse("lock shop production  db   migration"),
            Ok(Command::Lock {
                app: "shop".into(),
                env: "production".into(),
                reason: "db migration".into()
            })
        );
        assert_eq!(
            Command::parse("rollback shop production --to 12"),
            Ok(Command::Rollback {
                app: "shop".into(),
                env: "production".into(),
                to: Some("12".into())
            })
        );
        assert_eq!(Command::parse(""), Ok(Command::Help));
        let err = Command::parse("lock shop production").unwrap_err();
        assert!(err.starts_with("`lock` is not used so"), "{err}");
        let err = Command::parse("drop tables").unwrap_err();
        assert!(err.contains("`drop` is not a command"), "{err}");
    }

    #[test]
    fn users_are_mapped_by_id() {
        assert_eq!(
            parse_user("U024BE7LH=alice@example.com:deployer"),
            Ok((
                "U024BE7LH".into(),
                SlackUser {
                    subject: "alice@example.com".into(),
                    role: Role::Deployer
                }
            ))
        );
        assert!(parse_user("U1=alice").is_err());
        assert!(parse_user("U1=alice:captain")
            .unwrap_err()
            .contains("captain"));
    }

    #[test]
    fn signatures_are_read_from_slack_s_headers() {
        // Slack's documented example.
        let secret = Secret::new("8f742231b10e8888abcd99yyyzzz85a5");
        let body = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        let mut headers = HeaderMap::new();
        headers.insert("x-slack-request-timestamp", "1531420618".parse().unwrap());
        headers.insert(
            "x-slack-signature",
            "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
                .parse()
                .unwrap(),
        );
        assert_eq!(verify(&secret, &headers, body, 1531420618 + 60), Ok(()));
        headers.remove("x-slack-signature");
        let unsigned = verify(&secret, &headers, body, 1531420618).unwrap_err();
        assert!(unsigned.contains("no X-Slack-Signature"), "{unsigned}");
    }
}
