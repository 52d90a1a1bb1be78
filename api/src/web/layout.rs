//! What every page shares: the chrome, statuses, times, commits, forms and log
//! lines. maud escapes every value it is given; nothing here writes raw HTML
//! from data.

use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use maud::{html, Markup, PreEscaped, DOCTYPE};

use crate::auth::roles;
use crate::db::entities::deployment::{DeploymentPhase, DeploymentStatus};
use crate::db::entities::log_line;
use crate::releases;

use super::assets::url;
use super::SignedIn;

/// The top-level section a page belongs to, for the navigation.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Section {
    Overview,
    Runners,
    Setup,
    None,
}

/// A whole page: head, navigation, `body`.
pub(super) fn page(title: &str, who: Option<&SignedIn>, section: Section, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Slipway" }
                link rel="icon" href=(url("icon.svg"));
                link rel="stylesheet" href=(url("app.css"));
                script src=(url("app.js")) defer {}
            }
            body {
                header.top {
                    a.brand href="/" { img src=(url("icon.svg")) alt=""; "Slipway" }
                    @if let Some(who) = who {
                        nav aria-label="Main" {
                            (nav_link("/", "Overview", section == Section::Overview))
                            (nav_link("/runners", "Runners", section == Section::Runners))
                            @if who.may(roles::ADMIN) {
                                (nav_link("/setup", "Setup", section == Section::Setup))
                            }
                            a href="/graphql" { "GraphiQL" }
                        }
                        div.who {
                            span { (who.subject()) " · " (who.0.role.as_str()) }
                            form.inline method="post" action="/logout" {
                                (csrf(who))
                                button type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main { (body) }
                div.connection data-connection hidden { "Reconnecting…" }
            }
        }
    }
}

fn nav_link(href: &str, label: &str, current: bool) -> Markup {
    html! {
        @if current { a href=(href) aria-current="page" { (label) } }
        @else { a href=(href) { (label) } }
    }
}

/// A page that says what went wrong.
pub(super) fn error_page(status: StatusCode, message: &str) -> Markup {
    let title = status.canonical_reason().unwrap_or("Error");
    page(
        title,
        None,
        Section::None,
        html! {
            div.panel {
                h1 { (status.as_u16()) " " (title) }
                p.error { (message) }
                p { a href="/" { "Back to the overview" } }
            }
        },
    )
}

/// The hidden field every form of a session carries.
pub(super) fn csrf(who: &SignedIn) -> Markup {
    html! { input type="hidden" name="csrf" value=(who.0.csrf); }
}

pub(super) fn status(status: DeploymentStatus) -> Markup {
    let label = match status {
        DeploymentStatus::Queued => "queued",
        DeploymentStatus::InProgress => "in progress",
        DeploymentStatus::Succeeded => "succeeded",
        DeploymentStatus::Failed => "failed",
        DeploymentStatus::Cancelled => "cancelled",
    };
    html! { span class={ "status " (status.as_str()) } { (label) } }
}

pub(super) fn phase_name(phase: DeploymentPhase) -> &'static str {
    match phase {
        DeploymentPhase::Cloning => "cloning",
        DeploymentPhase::Planning => "planning",
        DeploymentPhase::Updating => "updating",
        DeploymentPhase::Verifying => "verifying",
        DeploymentPhase::RollingBack => "rolling back",
    }
}

/// A moment as "4 min ago", with the exact time on hover.
pub(super) fn time(at: DateTime<Utc>, now: DateTime<Utc>) -> Markup {
    let exact = at.format("%Y-%m-%d %H:%M:%S UTC").to_string();
    html! {
        time datetime=(at.to_rfc3339()) title=(exact) data-relative { (ago(now - at)) }
    }
}

/// "just now", "4 min ago", "3 hours ago", "2 days ago".
pub(super) fn ago(elapsed: chrono::Duration) -> String {
    let seconds = elapsed.num_seconds();
    if seconds < 45 {
        return "just now".into();
    }
    let (n, unit) = match seconds {
        s if s < 3600 => (((s + 30) / 60).max(1), "min"),
        s if s < 86_400 => ((s + 1800) / 3600, "hour"),
        s if s < 30 * 86_400 => ((s + 43_200) / 86_400, "day"),
        s if s < 365 * 86_400 => ((s + 15 * 86_400) / (30 * 86_400), "month"),
        s => ((s + 182 * 86_400) / (365 * 86_400), "year"),
    };
    match (n, unit) {
        (_, "min") => format!("{n} min ago"),
        (1, _) => format!("1 {unit} ago"),
        _ => format!("{n} {unit}s ago"),
    }
}

/// How long something lasted: "42 s", "3 min 5 s", "2 h 10 min".
pub(super) fn duration(elapsed: chrono::Duration) -> String {
    let s = elapsed.num_seconds().max(0);
    match s {
        s if s < 60 => format!("{s} s"),
        s if s < 3600 => format!("{} min {} s", s / 60, s % 60),
        s if s < 86_400 => format!("{} h {} min", s / 3600, (s % 3600) / 60),
        s => format!("{} d {} h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// A commit's short sha, linked to the forge when it is known.
pub(super) fn commit(repository: &str, sha: Option<&str>) -> Markup {
    let Some(sha) = sha else {
        return html! { span.muted { "commit not known yet" } };
    };
    let short = &sha[..sha.len().min(7)];
    html! {
        @if let Some(link) = releases::commit_url(repository, sha) {
            a.mono href=(link) title=(sha) { (short) }
        } @else {
            code title=(sha) { (short) }
        }
    }
}

/// One log line: its number (a permalink, `#L12`), its text with ANSI
/// colours as classes.
pub(super) fn log_line(line: &log_line::Model) -> Markup {
    let stream = match line.stream.as_str() {
        "STDERR" | "stderr" => "stderr",
        "SYSTEM" | "system" => "system",
        _ => "stdout",
    };
    html! {
        div class={ "line " (stream) } id={ "L" (line.seq) } {
            a.ln href={ "#L" (line.seq) } { (line.seq) }
            span.text { (ansi(&line.text)) }
        }
    }
}

/// Text with ANSI SGR sequences (`ESC[1;31m`) turned into spans with
/// classes; every other escape sequence is dropped, all text escaped.
pub(super) fn ansi(text: &str) -> Markup {
    let mut out = String::new();
    let mut classes: Vec<String> = Vec::new();
    let mut open = false;
    let mut rest = text;
    while let Some(at) = rest.find('\x1b') {
        push_text(&mut out, &rest[..at], &classes, &mut open);
        rest = &rest[at + 1..];
        let Some(body) = rest.strip_prefix('[') else {
            continue;
        };
        let end = body
            .find(|c: char| c.is_ascii_alphabetic())
            .unwrap_or(body.len());
        let (params, kind) = (&body[..end], body[end..].chars().next());
        rest = &body[(end + kind.map_or(0, char::len_utf8)).min(body.len())..];
        if kind != Some('m') {
            continue;
        }
        for code in params.split(';') {
            match code.parse::<u8>().unwrap_or(0) {
                0 => classes.clear(),
                1 => classes.push("ansi-bold".into()),
                2 => classes.push("ansi-dim".into()),
                3 => classes.push("ansi-italic".into()),
                4 => classes.push("ansi-underline".into()),
                c @ (30..=37 | 90..=97) => {
                    classes.retain(|k| !k.starts_with("ansi-fg-"));
                    classes.push(format!("ansi-fg-{c}"));
                }
                39 => classes.retain(|k| !k.starts_with("ansi-fg-")),
                c @ 40..=47 => {
                    classes.retain(|k| !k.starts_with("ansi-bg-"));
                    classes.push(format!("ansi-bg-{c}"));
                }
                49 => classes.retain(|k| !k.starts_with("ansi-bg-")),
                _ => {}
            }
        }
        if open {
            out.push_str("</span>");
            open = false;
        }
    }
    push_text(&mut out, rest, &classes, &mut open);
    if open {
        out.push_str("</span>");
    }
    PreEscaped(out)
}

fn push_text(out: &mut String, text: &str, classes: &[String], open: &mut bool) {
    if text.is_empty() {
        return;
    }
    if !classes.is_empty() && !*open {
        out.push_str(&format!("<span class=\"{}\">", classes.join(" ")));
        *open = true;
    }
    use std::fmt::Write as _;
    maud::Escaper::new(out)
        .write_str(text)
        .expect("writing to a String");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ansi_colours_become_classes_and_text_is_escaped() {
        let html = ansi("\x1b[1;31merror\x1b[0m: <script>").into_string();
        assert_eq!(
            html,
            "<span class=\"ansi-bold ansi-fg-31\">error</span>: &lt;script&gt;"
        );
    }

    #[test]
    fn other_escape_sequences_are_dropped() {
        assert_eq!(ansi("a\x1b[2Kb\x1b[").into_string(), "ab");
    }

    #[test]
    fn times_read_as_people_say_them() {
        let m = chrono::Duration::minutes;
        assert_eq!(ago(chrono::Duration::seconds(10)), "just now");
        assert_eq!(ago(m(4)), "4 min ago");
        assert_eq!(ago(m(60)), "1 hour ago");
        assert_eq!(ago(m(60 * 26)), "1 day ago");
        assert_eq!(ago(m(60 * 24 * 3)), "3 days ago");
    }
}
