//! Slack incoming-webhook messages: a line that says what happened, the
//! reason of a failure, and a context line with the commit (linked to the
//! forge), who, and how long it took. Blocks for Slack's clients, `text`
//! for notifications and clients without blocks.
//!
//! Every value is escaped for Slack's `mrkdwn` (`&`, `<`, `>`), so a ref,
//! a message or a name cannot make a link or a mention of its own.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::db::entities::notification_event::DeploymentEvent;
use crate::releases::commit_url;
use crate::view::DeploymentView;

/// The longest failure reason quoted in a message.
const MAX_REASON: usize = 1500;

/// The message about `event` of `view`. `public_url` is where people reach
/// the API, for a link to the deployment's page.
pub fn message(view: &DeploymentView, event: DeploymentEvent, public_url: Option<&str>) -> Value {
    let d = &view.deployment;
    let name = escape(&view.name());
    let linked = match public_url {
        Some(base) => format!(
            "<{}/deployments/{}|{name}>",
            base.trim_end_matches('/'),
            d.id
        ),
        None => name.clone(),
    };
    let env = escape(&view.environment.name);
    let what = match &d.runs_task {
        Some(task) => format!("task `{}` of ", escape(task)),
        None if d.task == "rollback" => "rollback ".into(),
        None => String::new(),
    };
    let (icon, happened) = match event {
        DeploymentEvent::Queued => (":hourglass_flowing_sand:", "is queued for"),
        DeploymentEvent::Started => (":rocket:", "started on"),
        DeploymentEvent::Succeeded => (":white_check_mark:", "succeeded on"),
        DeploymentEvent::Failed => (":x:", "failed on"),
        DeploymentEvent::RolledBack => (
            ":leftwards_arrow_with_hook:",
            "failed and was rolled back on",
        ),
        DeploymentEvent::Cancelled => (":no_entry_sign:", "was cancelled on"),
    };
    let headline = format!("{icon} {what}*{linked}* {happened} *{env}*");
    let mut blocks = vec![json!({
        "type": "section",
        "text": {"type": "mrkdwn", "text": headline},
    })];
    let reason = match event {
        DeploymentEvent::Failed | DeploymentEvent::RolledBack => d.message.as_deref(),
        DeploymentEvent::Queued => d.gate_waiting_for.as_deref(),
        _ => None,
    };
    if let Some(reason) = reason.filter(|r| !r.trim().is_empty()) {
        let quoted: Vec<String> = cut(reason, MAX_REASON)
            .lines()
            .map(|line| format!("> {}", escape(line)))
            .collect();
        let label = if event == DeploymentEvent::Queued {
            "Waiting for"
        } else {
            "Reason"
        };
        blocks.push(json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": format!("*{label}*\n{}", quoted.join("\n"))},
        }));
    }
    blocks.push(json!({
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": context(view, event)}],
    }));
    json!({
        "text": format!("{what}{name} {happened} {env}"),
        "blocks": blocks,
    })
}

/// "`main` at <commit|abc1234> · by alice · took 1m 32s".
fn context(view: &DeploymentView, event: DeploymentEvent) -> String {
    let d = &view.deployment;
    let mut parts = Vec::new();
    let reference = format!("`{}`", escape(&d.ref_name));
    parts.push(match &d.sha {
        Some(sha) => {
            let short = escape(&sha[..sha.len().min(7)]);
            match commit_url(&view.application.repository, sha) {
                Some(url) => format!("{reference} at <{url}|{short}>"),
                None => format!("{reference} at `{short}`"),
            }
        }
        None => reference,
    });
    match (event, &d.cancel_requested_by) {
        (DeploymentEvent::Cancelled, Some(by)) => {
            parts.push(format!(
                "by {}, cancelled by {}",
                escape(&d.created_by),
                escape(by)
            ));
        }
        _ => parts.push(format!("by {}", escape(&d.created_by))),
    }
    if event == DeploymentEvent::Started {
        if let Some(runner) = &d.runner {
            parts.push(format!("runner {}", escape(runner)));
        }
    }
    if let (Some(started), Some(finished)) = (d.started_at, d.finished_at) {
        parts.push(format!("took {}", took(started, finished)));
    }
    parts.join(" · ")
}

/// A duration as people read it: `45s`, `3m 05s`, `2h 10m`.
fn took(from: DateTime<Utc>, to: DateTime<Utc>) -> String {
    let secs = (to - from).num_seconds().max(0);
    match secs {
        0..=59 => format!("{secs}s"),
        60..=3599 => format!("{}m {:02}s", secs / 60, secs % 60),
        _ => format!("{}h {:02}m", secs / 3600, secs % 3600 / 60),
    }
}

/// Escapes text for Slack's `mrkdwn`.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_people_say_them() {
        let at = |s: i64| DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap();
        assert_eq!(took(at(0), at(45)), "45s");
        assert_eq!(took(at(0), at(185)), "3m 05s");
        assert_eq!(took(at(0), at(7800)), "2h 10m");
    }

    #[test]
    fn text_cannot_make_links_or_mentions() {
        assert_eq!(
            escape("<!channel> & <https://x|y>"),
            "&lt;!channel&gt; &amp; &lt;https://x|y&gt;"
        );
        assert_eq!(cut("ééé", 2), "éé…");
    }
}
