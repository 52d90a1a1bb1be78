//! What every page shares: the chrome, statuses, times, commits, services,
//! forms and log lines. maud escapes every value it is given; the one place
//! that writes markup itself, [`ansi`], writes only its own spans around
//! escaped text.

use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use maud::{html, Markup, PreEscaped, DOCTYPE};

use crate::auth::roles;
use crate::db::entities::deployment::{DeploymentPhase, DeploymentStatus};
use crate::db::entities::log_line;
use crate::releases;
use crate::view::ServiceImage;

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
                            span { (who.subject()) " · " (who.session.role.as_str()) }
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
    html! { input type="hidden" name="csrf" value=(who.session.csrf); }
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

/// "just now", "4 min ago", "3 hours ago", "2 days ago": rounded first, so
/// 59.5 minutes is "1 hour ago", never "60 min ago".
pub(super) fn ago(elapsed: chrono::Duration) -> String {
    let seconds = elapsed.num_seconds();
    if seconds < 45 {
        return "just now".into();
    }
    let plural = |n: i64, unit: &str| {
        if n == 1 {
            format!("1 {unit} ago")
        } else {
            format!("{n} {unit}s ago")
        }
    };
    let minutes = (seconds + 30) / 60;
    if minutes < 60 {
        return format!("{minutes} min ago");
    }
    let hours = (seconds + 1800) / 3600;
    if hours < 24 {
        return plural(hours, "hour");
    }
    let days = (seconds + 43_200) / 86_400;
    if days < 30 {
        return plural(days, "day");
    }
    let months = (days + 15) / 30;
    if months < 12 {
        return plural(months, "month");
    }
    plural((days + 182) / 365, "year")
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

/// The services of a release and the images they run, with digests.
pub(super) fn services(services: &[ServiceImage]) -> Markup {
    html! {
        @if !services.is_empty() {
            table {
                thead { tr { th { "Service" } th { "Image" } } }
                tbody {
                    @for s in services {
                        tr {
                            td { (s.name) }
                            td { code { (s.image) }
                                @if let Some(digest) = &s.digest {
                                    br; code.muted title=(digest) { (digest.get(..19).unwrap_or(digest)) "…" }
                                } }
                        }
                    }
                }
            }
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
/// classes (bold, dim, italic, underline, one foreground and one background
/// colour at most); every other escape sequence (CSI, OSC such as a
/// hyperlink's URL, two-byte escapes) is dropped, and all text is escaped.
pub(super) fn ansi(text: &str) -> Markup {
    let mut out = String::new();
    let mut style = Style::default();
    let mut open = false;
    let mut rest = text;
    while let Some(at) = rest.find('\x1b') {
        push_text(&mut out, &rest[..at], &style, &mut open);
        let (sequence, after) = escape(&rest[at + 1..]);
        rest = after;
        if let Escape::Sgr(params) = sequence {
            style.apply(params);
            if open {
                out.push_str("</span>");
                open = false;
            }
        }
    }
    push_text(&mut out, rest, &style, &mut open);
    if open {
        out.push_str("</span>");
    }
    PreEscaped(out)
}

/// What follows an ESC.
enum Escape<'a> {
    /// `ESC [ params m`: graphics.
    Sgr(&'a str),
    /// Anything else, dropped.
    Other,
}

/// Splits the escape sequence at the start of `text` (which follows an ESC)
/// from the rest. A CSI is `[`, parameter bytes (0x30–0x3F), intermediate
/// bytes (0x20–0x2F) and one final byte (0x40–0x7E); an OSC is `]` up to BEL
/// or `ESC \`; any other escape is intermediate bytes and one character. An unterminated sequence
/// takes what it began with, not the rest of the line.
fn escape(text: &str) -> (Escape<'_>, &str) {
    let bytes = text.as_bytes();
    match bytes.first() {
        Some(b'[') => {
            let mut i = 1;
            while i < bytes.len() && (0x30..=0x3f).contains(&bytes[i]) {
                i += 1;
            }
            let params = &text[1..i];
            while i < bytes.len() && (0x20..=0x2f).contains(&bytes[i]) {
                i += 1;
            }
            match bytes.get(i) {
                Some(b'm') if i == 1 + params.len() => (Escape::Sgr(params), &text[i + 1..]),
                Some(final_byte) if (0x40..=0x7e).contains(final_byte) => {
                    (Escape::Other, &text[i + 1..])
                }
                // Not a CSI after all: drop the `[` only.
                _ => (Escape::Other, &text[1..]),
            }
        }
        Some(b']') => {
            let end = text.find(['\x07', '\x1b']).unwrap_or(text.len());
            let rest = &text[end..];
            let rest = rest
                .strip_prefix('\x07')
                .or_else(|| rest.strip_prefix("\x1b\\"))
                .unwrap_or(rest);
            (Escape::Other, rest)
        }
        Some(_) => {
            // Intermediate bytes, then one final character (`ESC ( B`).
            let start = bytes
                .iter()
                .take_while(|b| (0x20..=0x2f).contains(*b))
                .count();
            let skip = text[start..].chars().next().map_or(0, char::len_utf8);
            (Escape::Other, &text[start + skip..])
        }
        None => (Escape::Other, text),
    }
}

/// The graphics state an SGR sequence sets.
#[derive(Default)]
struct Style {
    bold: bool,
    dim: bool,
    italic: bool,
    underline: bool,
    fg: Option<u8>,
    bg: Option<u8>,
}

impl Style {
    fn apply(&mut self, params: &str) {
        let mut codes = params.split(';').map(|c| c.parse::<u16>().unwrap_or(0));
        while let Some(code) = codes.next() {
            match code {
                0 => *self = Style::default(),
                1 => self.bold = true,
                2 => self.dim = true,
                3 => self.italic = true,
                4 => self.underline = true,
                22 => (self.bold, self.dim) = (false, false),
                23 => self.italic = false,
                24 => self.underline = false,
                c @ (30..=37 | 90..=97) => self.fg = Some(c as u8),
                39 => self.fg = None,
                c @ 40..=47 => self.bg = Some(c as u8),
                49 => self.bg = None,
                // 256 colours (`5;n`) and true colour (`2;r;g;b`) have no
                // class: their arguments are skipped, not read as codes.
                38 | 48 => match codes.next() {
                    Some(5) => {
                        codes.next();
                    }
                    Some(2) => {
                        codes.nth(2);
                    }
                    _ => {}
                },
                _ => {}
            }
        }
    }

    fn classes(&self) -> String {
        let mut classes = Vec::new();
        for (on, class) in [
            (self.bold, "ansi-bold"),
            (self.dim, "ansi-dim"),
            (self.italic, "ansi-italic"),
            (self.underline, "ansi-underline"),
        ] {
            if on {
                classes.push(class.to_owned());
            }
        }
        if let Some(fg) = self.fg {
            classes.push(format!("ansi-fg-{fg}"));
        }
        if let Some(bg) = self.bg {
            classes.push(format!("ansi-bg-{bg}"));
        }
        classes.join(" ")
    }
}

fn push_text(out: &mut String, text: &str, style: &Style, open: &mut bool) {
    if text.is_empty() {
        return;
    }
    if !*open {
        let classes = style.classes();
        if !classes.is_empty() {
            out.push_str(&format!("<span class=\"{classes}\">"));
            *open = true;
        }
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
        assert_eq!(ansi("\x1b[3~hello").into_string(), "hello");
        assert_eq!(
            ansi("see \x1b]8;;https://x.example\x07link\x1b]8;;\x07.").into_string(),
            "see link."
        );
        assert_eq!(ansi("\x1b(Bé ü").into_string(), "é ü");
    }

    #[test]
    fn repeated_styles_do_not_pile_up() {
        let html = ansi(&"\x1b[1mx".repeat(1000)).into_string();
        assert!(html.len() < 1000 * 40, "{} bytes", html.len());
        assert_eq!(
            ansi("\x1b[38;2;255;0;0mred\x1b[22;1mbold").into_string(),
            "red<span class=\"ansi-bold\">bold</span>"
        );
    }

    #[test]
    fn times_read_as_people_say_them() {
        let m = chrono::Duration::minutes;
        assert_eq!(ago(chrono::Duration::seconds(10)), "just now");
        assert_eq!(ago(m(4)), "4 min ago");
        assert_eq!(ago(m(60)), "1 hour ago");
        assert_eq!(ago(m(60 * 26)), "1 day ago");
        assert_eq!(ago(m(60 * 24 * 3)), "3 days ago");
        assert_eq!(ago(chrono::Duration::seconds(3570)), "1 hour ago");
        assert_eq!(ago(m(60 * 24) - chrono::Duration::seconds(60)), "1 day ago");
        assert_eq!(ago(m(60 * 24 * 29) + m(60 * 13)), "1 month ago");
        assert_eq!(ago(m(60 * 24 * 360)), "1 year ago");
    }
}
