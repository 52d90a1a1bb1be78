//! The web UI without a browser: sign-in and sessions, every page for each
//! role, CSRF and role refusals, escaping, security headers, assets, and the
//! live log's server-sent events.

use std::time::Duration;

use chrono::Utc;
use reqwest::header::{HeaderMap, COOKIE, LOCATION, SET_COOKIE};
use reqwest::{redirect, Client, StatusCode};
use serde_json::json;
use slipway_api::auth::Role;
use slipway_api::{Clock, Settings};

use slipway_testkit::api::{Backend, TestApi};

const APPEND: &str = "mutation($id: ID!, $lines: [LogLineInput!]!) { appendDeploymentLogs(id: $id, lines: $lines) { logCount } }";

fn client() -> Client {
    Client::builder()
        .redirect(redirect::Policy::none())
        .build()
        .unwrap()
}

/// The value of cookie `name` that an answer sets, with its attributes.
fn set_cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(str::to_owned)
}

/// `name=value` of a Set-Cookie line.
fn pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_owned()
}

/// A browser signed in as `subject` with `role`, through a sign-in link.
pub struct Browser<'a> {
    server: &'a TestApi,
    client: Client,
    cookie: String,
}

impl<'a> Browser<'a> {
    pub async fn sign_in(server: &'a TestApi, role: Role, subject: &str) -> Browser<'a> {
        let (code, _) = slipway_api::sessions::create_code(&server.state, subject, role, "test")
            .await
            .unwrap();
        let client = client();
        let answer = open_link(&client, server, &code, "/").await;
        assert_eq!(answer.status(), StatusCode::SEE_OTHER);
        let cookie = set_cookie(answer.headers(), "slipway_session").expect("a session cookie");
        Browser {
            server,
            client,
            cookie: pair(&cookie),
        }
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.server.url(path))
            .header(COOKIE, &self.cookie)
            .send()
            .await
            .unwrap()
    }

    /// A page's status and HTML.
    async fn page(&self, path: &str) -> (StatusCode, String) {
        let answer = self.get(path).await;
        (answer.status(), answer.text().await.unwrap())
    }

    /// The CSRF token the session's forms carry, read from a page.
    pub async fn csrf(&self) -> String {
        let (_, html) = self.page("/runners").await;
        let at = html.find("name=\"csrf\" value=\"").expect("a form") + 19;
        html[at..at + html[at..].find('"').unwrap()].to_owned()
    }

    pub async fn post(&self, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.client
            .post(self.server.url(path))
            .header(COOKIE, &self.cookie)
            .form(form)
            .send()
            .await
            .unwrap()
    }
}

/// What a person does with a sign-in link: opens it, which shows a form
/// (spending nothing), and presses Continue. The answer to the form.
async fn open_link(client: &Client, server: &TestApi, code: &str, next: &str) -> reqwest::Response {
    let page = client
        .get(server.url(&format!("/login?code={code}&next={next}")))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(set_cookie(page.headers(), "slipway_session").is_none());
    let login = pair(&set_cookie(page.headers(), "slipway_login").unwrap());
    let nonce = login.split_once('=').unwrap().1.to_owned();
    let html = page.text().await.unwrap();
    assert!(html.contains(">Continue</button>"), "{html}");
    client
        .post(server.url("/login"))
        .header(COOKIE, login)
        .form(&[("code", code), ("login", &nonce), ("next", next)])
        .send()
        .await
        .unwrap()
}

async fn locked_by(server: &TestApi, app: &str, env: &str) -> serde_json::Value {
    let data = server
        .ok_as(
            Role::Viewer,
            "query($a: String!) { application(name: $a) { environments { name lock { lockedBy } } } }",
            json!({"a": app}),
        )
        .await;
    data["application"]["environments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == env)
        .map(|e| e["lock"]["lockedBy"].clone())
        .unwrap_or_default()
}

async fn a_sign_in_link_opens_a_session_once(backend: Backend) {
    let server = TestApi::start(backend).await;
    let (code, _) =
        slipway_api::sessions::create_code(&server.state, "ada", Role::Deployer, "slipway up")
            .await
            .unwrap();
    let client = client();
    let answer = open_link(&client, &server, &code, "/runners").await;
    assert_eq!(answer.status(), StatusCode::SEE_OTHER);
    assert_eq!(answer.headers()[LOCATION], "/runners");
    let cookie = set_cookie(answer.headers(), "slipway_session").unwrap();
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Lax"), "{cookie}");
    assert!(!cookie.contains(&code), "the cookie is not the code");

    let page = client
        .get(server.url("/"))
        .header(COOKIE, pair(&cookie))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("What runs where"), "{html}");
    assert!(html.contains("ada · deployer"), "{html}");

    let again = open_link(&client, &server, &code, "/").await;
    assert_eq!(again.status(), StatusCode::UNAUTHORIZED);
    assert!(set_cookie(again.headers(), "slipway_session").is_none());
    assert!(again
        .text()
        .await
        .unwrap()
        .contains("this sign-in link has been used or has expired"));
}

async fn a_token_becomes_a_session_and_is_not_kept_in_the_browser(backend: Backend) {
    let server = TestApi::start(backend).await;
    let client = client();
    let form = client.get(server.url("/login")).send().await.unwrap();
    assert_eq!(form.status(), StatusCode::OK);
    let login = pair(&set_cookie(form.headers(), "slipway_login").unwrap());
    let nonce = login.split_once('=').unwrap().1.to_owned();
    let html = form.text().await.unwrap();
    assert!(html.contains(&format!("value=\"{nonce}\"")));

    let submit = |token: String, cookie: Option<String>| {
        let client = client.clone();
        let url = server.url("/login");
        let nonce = nonce.clone();
        async move {
            let mut request = client.post(url).form(&[
                ("token", token.as_str()),
                ("login", nonce.as_str()),
                ("next", "/setup"),
            ]);
            if let Some(cookie) = cookie {
                request = request.header(COOKIE, cookie);
            }
            request.send().await.unwrap()
        }
    };

    let wrong = submit("not-a-token".into(), Some(login.clone())).await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(set_cookie(wrong.headers(), "slipway_session").is_none());

    let runner = submit(server.token(Role::Runner, "r1"), Some(login.clone())).await;
    assert_eq!(runner.status(), StatusCode::UNAUTHORIZED);
    assert!(runner
        .text()
        .await
        .unwrap()
        .contains("a runner token cannot sign in"));

    // A form posted from elsewhere has no login cookie of this browser.
    let forged = submit(server.token(Role::Admin, "root"), None).await;
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);
    assert!(set_cookie(forged.headers(), "slipway_session").is_none());

    let token = server.token(Role::Admin, "root");
    let ok = submit(token.clone(), Some(login)).await;
    assert_eq!(ok.status(), StatusCode::SEE_OTHER);
    assert_eq!(ok.headers()[LOCATION], "/setup");
    let session = set_cookie(ok.headers(), "slipway_session").unwrap();
    assert!(!session.contains(&token));
    let setup = client
        .get(server.url("/setup"))
        .header(COOKIE, pair(&session))
        .send()
        .await
        .unwrap();
    assert_eq!(setup.status(), StatusCode::OK);
}

async fn every_page_renders_for_each_role_with_only_the_actions_it_may_take(backend: Backend) {
    let server = TestApi::start(backend).await;
    server
        .app(
            "web",
            "https://github.com/acme/web.git",
            &[("production", Some("main"), Some("https://web.example"))],
        )
        .await;
    let first = server
        .deploy_ref("web", "production", "main", Some(&"a".repeat(40)))
        .await;
    server.claim_ok("r1", &first).await;
    server.finish("r1", &first, "SUCCEEDED").await;
    let second = server
        .deploy_ref("web", "production", "main", Some(&"b".repeat(40)))
        .await;
    server.claim_ok("r1", &second).await;
    server.finish("r1", &second, "SUCCEEDED").await;
    let running = server.deploy("web", "production").await;
    server.claim_ok("r1", &running).await;

    let pages = [
        "/".to_owned(),
        "/?app=web".into(),
        "/apps/web".into(),
        "/apps/web/production".into(),
        "/apps/web/production/deploy".into(),
        format!("/deployments/{first}"),
        format!("/deployments/{running}"),
        "/runners".into(),
        "/setup".into(),
    ];
    for role in [Role::Admin, Role::Deployer, Role::Viewer] {
        let browser = Browser::sign_in(&server, role, "someone").await;
        for path in &pages {
            let (status, html) = browser.page(path).await;
            let expected = match (role, path.as_str()) {
                (Role::Admin, _) => StatusCode::OK,
                (_, "/setup") => StatusCode::FORBIDDEN,
                (Role::Viewer, "/apps/web/production/deploy") => StatusCode::FORBIDDEN,
                _ => StatusCode::OK,
            };
            assert_eq!(status, expected, "{role:?} {path}: {html}");
            assert!(html.starts_with("<!DOCTYPE html>"), "{path}");
        }
        let (_, environment) = browser.page("/apps/web/production").await;
        let (_, deployment) = browser.page(&format!("/deployments/{running}")).await;
        let (_, release) = browser.page(&format!("/deployments/{first}")).await;
        let acts = role != Role::Viewer;
        assert_eq!(environment.contains(">Lock</button>"), acts, "{role:?}");
        assert_eq!(environment.contains("Roll back to web#1"), acts, "{role:?}");
        assert_eq!(environment.contains("Deploy…"), acts, "{role:?}");
        assert_eq!(deployment.contains(">Cancel</button>"), acts, "{role:?}");
        assert_eq!(release.contains("Redeploy"), acts, "{role:?}");
        assert_eq!(
            environment.contains("href=\"/setup\""),
            role == Role::Admin,
            "{role:?}"
        );
        // What runs, linked to the forge; the release it replaced.
        assert!(environment.contains("https://github.com/acme/web/commit/bbbbbbb"));
        assert!(environment.contains("web#2"));
        let (_, overview) = browser.page("/").await;
        assert!(overview.contains("web#3"), "the deployment in progress");
        assert!(overview.contains("https://web.example"));
    }
}

async fn a_viewer_s_forged_post_is_refused_and_changes_nothing(backend: Backend) {
    let server = TestApi::start(backend).await;
    server
        .app(
            "web",
            "file:///srv/git/web.git",
            &[("production", None, None)],
        )
        .await;
    let id = server.deploy("web", "production").await;
    let viewer = Browser::sign_in(&server, Role::Viewer, "vic").await;
    let csrf = viewer.csrf().await;
    let lock = viewer
        .post(
            "/apps/web/production/lock",
            &[("csrf", &csrf), ("reason", "mine now")],
        )
        .await;
    assert_eq!(lock.status(), StatusCode::FORBIDDEN);
    assert!(lock
        .text()
        .await
        .unwrap()
        .contains("the viewer role may not"));
    assert!(locked_by(&server, "web", "production").await.is_null());
    let cancel = viewer
        .post(&format!("/deployments/{id}/cancel"), &[("csrf", &csrf)])
        .await;
    assert_eq!(cancel.status(), StatusCode::FORBIDDEN);
    assert_eq!(server.status(&id).await["status"], "QUEUED");
    let deploy = viewer
        .post(
            "/apps/web/production/deploy",
            &[("csrf", &csrf), ("ref", "main")],
        )
        .await;
    assert_eq!(deploy.status(), StatusCode::FORBIDDEN);
    assert_eq!(server.deployments().await.len(), 1);

    // Without a session a POST is sent to sign in, and nothing happens.
    let anonymous = client()
        .post(server.url("/apps/web/production/lock"))
        .form(&[("csrf", csrf.as_str()), ("reason", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::SEE_OTHER);
    assert!(locked_by(&server, "web", "production").await.is_null());
}

async fn a_form_without_the_session_s_token_or_from_another_site_is_refused(backend: Backend) {
    let server = TestApi::start(backend).await;
    server
        .app(
            "web",
            "file:///srv/git/web.git",
            &[("production", None, None)],
        )
        .await;
    let admin = Browser::sign_in(&server, Role::Admin, "root").await;
    let csrf = admin.csrf().await;

    let forged = admin
        .post(
            "/apps/web/production/lock",
            &[("csrf", "guessed"), ("reason", "x")],
        )
        .await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert!(forged
        .text()
        .await
        .unwrap()
        .contains("reload it and try again"));
    let elsewhere = admin
        .client
        .post(server.url("/apps/web/production/lock"))
        .header(COOKIE, &admin.cookie)
        .header("origin", "https://evil.example")
        .form(&[("csrf", csrf.as_str()), ("reason", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(elsewhere.status(), StatusCode::FORBIDDEN);
    assert!(locked_by(&server, "web", "production").await.is_null());

    let locked = admin
        .post(
            "/apps/web/production/lock",
            &[("csrf", &csrf), ("reason", "release freeze")],
        )
        .await;
    assert_eq!(locked.status(), StatusCode::SEE_OTHER);
    assert_eq!(locked.headers()[LOCATION], "/apps/web/production");
    assert_eq!(locked_by(&server, "web", "production").await, "root");
    let (_, html) = admin.page("/apps/web/production").await;
    assert!(html.contains("release freeze"));
    assert!(html.contains(">Unlock</button>"));

    // Bad input is said on the page, and changes nothing.
    let empty = admin
        .post(
            "/apps/web/production/rollback",
            &[("csrf", &csrf), ("reason", " ")],
        )
        .await;
    assert_eq!(empty.status(), StatusCode::BAD_REQUEST);
    assert!(empty
        .text()
        .await
        .unwrap()
        .contains("`reason` must say why"));
    assert!(server.deployments().await.is_empty());
}

async fn hostile_names_refs_and_log_lines_are_escaped(backend: Backend) {
    let server = TestApi::start(backend).await;
    server
        .app(
            "web",
            "file:///srv/git/web.git",
            &[("production", None, None)],
        )
        .await;
    let hostile = "<script>alert(1)</script>";
    let id = server.deploy_ref("web", "production", hostile, None).await;
    server.claim_ok("r1", &id).await;
    server
        .ok(
            &server.token(Role::Runner, "r1"),
            APPEND,
            json!({"id": id, "lines": [{"text": "\u{1b}[31m<img src=x onerror=alert(2)>\u{1b}[0m \"quoted\""}]}),
        )
        .await;
    server
        .lock("web", "production", "\"><script>alert(3)</script>")
        .await;
    let admin = Browser::sign_in(&server, Role::Admin, "<b>root</b>").await;
    for path in [
        "/".to_owned(),
        "/apps/web/production".into(),
        format!("/deployments/{id}"),
    ] {
        let (status, html) = admin.page(&path).await;
        assert_eq!(status, StatusCode::OK);
        assert!(!html.contains("<script>alert"), "{path}: {html}");
        assert!(!html.contains("<img src=x"), "{path}");
        assert!(!html.contains("<b>root</b>"), "{path}");
        assert!(html.contains("&lt;b&gt;root&lt;/b&gt;"), "{path}");
    }
    let (_, deployment) = admin.page(&format!("/deployments/{id}")).await;
    assert!(deployment.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(deployment.contains(
        "<span class=\"ansi-fg-31\">&lt;img src=x onerror=alert(2)&gt;</span> &quot;quoted&quot;"
    ));
    let (_, environment) = admin.page("/apps/web/production").await;
    assert!(environment.contains("&quot;&gt;&lt;script&gt;alert(3)&lt;/script&gt;"));
    // The raw log is the text as it was logged, as plain text.
    let raw = admin.get(&format!("/deployments/{id}/log.txt")).await;
    assert_eq!(raw.headers()["content-type"], "text/plain; charset=utf-8");
    assert_eq!(raw.headers()["x-content-type-options"], "nosniff");
    assert!(raw.text().await.unwrap().contains("<img src=x"));
}

async fn a_session_expires_and_signing_out_ends_it(backend: Backend) {
    let clock = Clock::manual(Utc::now());
    let server = TestApi::start_with(backend, clock.clone(), Settings::default()).await;
    let browser = Browser::sign_in(&server, Role::Viewer, "vic").await;
    assert_eq!(browser.page("/").await.0, StatusCode::OK);
    clock.advance(slipway_api::sessions::SESSION_TTL + chrono::Duration::seconds(1));
    let expired = browser.get("/runners").await;
    assert_eq!(expired.status(), StatusCode::SEE_OTHER);
    assert_eq!(expired.headers()[LOCATION], "/login?next=%2Frunners");
    // A live stream of the expired session is refused too.
    assert_eq!(browser.get("/live").await.status(), StatusCode::SEE_OTHER);

    // A sign-in link that waited too long opens nothing.
    let (code, _) = slipway_api::sessions::create_code(&server.state, "x", Role::Viewer, "t")
        .await
        .unwrap();
    clock.advance(slipway_api::sessions::CODE_TTL + chrono::Duration::seconds(1));
    let late = open_link(&client(), &server, &code, "/").await;
    assert_eq!(late.status(), StatusCode::UNAUTHORIZED);

    let browser = Browser::sign_in(&server, Role::Viewer, "vic").await;
    let csrf = browser.csrf().await;
    let out = browser.post("/logout", &[("csrf", &csrf)]).await;
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    let cleared = set_cookie(out.headers(), "slipway_session").unwrap();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    // The old cookie no longer signs anyone in.
    assert_eq!(browser.get("/").await.status(), StatusCode::SEE_OTHER);
}

async fn pages_send_security_headers_and_assets_are_kept_for_good(backend: Backend) {
    let server = TestApi::start(backend).await;
    let browser = Browser::sign_in(&server, Role::Viewer, "vic").await;
    for answer in [
        browser.get("/").await,
        client().get(server.url("/login")).send().await.unwrap(),
    ] {
        let headers = answer.headers();
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("script-src 'self'"), "{csp}");
        assert!(!csp.contains("unsafe-inline") || !csp.contains("script-src 'self' 'unsafe"));
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(headers["referrer-policy"], "same-origin");
        assert_eq!(
            headers["cache-control"], "no-store",
            "pages hold the CSRF token"
        );
        let html = answer.text().await.unwrap();
        assert!(!html.contains("<script>"), "no inline script");
        assert!(!html.contains(" style=\""), "no inline style");
    }
    let (_, html) = browser.page("/").await;
    let at = html.find("/assets/app.").unwrap();
    let css = &html[at..at + html[at..].find('"').unwrap()];
    assert!(css.ends_with(".css"), "{css}");
    let asset = client().get(server.url(css)).send().await.unwrap();
    assert_eq!(asset.status(), StatusCode::OK);
    assert_eq!(
        asset.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    assert_eq!(asset.headers()["content-type"], "text/css; charset=utf-8");
    let stale = client()
        .get(server.url("/assets/app.000000000000.css"))
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), StatusCode::NOT_FOUND);

    // GraphiQL for a browser, from this origin's assets.
    let graphiql = client()
        .get(server.url("/graphql"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    let csp = graphiql.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("script-src 'self';"), "{csp}");
    let page = graphiql.text().await.unwrap();
    assert!(page.contains("/assets/graphiql-ui."), "{page}");
    assert!(!page.contains("https://"), "nothing from a CDN: {page}");
}

/// Reads server-sent events from `answer` until one of type `until` arrives;
/// returns `(event, id, data)` of each.
async fn events_until(
    answer: &mut reqwest::Response,
    until: &str,
) -> Vec<(String, Option<String>, String)> {
    let mut buffer = String::new();
    let mut events = Vec::new();
    loop {
        let chunk = tokio::time::timeout(Duration::from_secs(10), answer.chunk())
            .await
            .expect("an event within 10 s")
            .unwrap()
            .expect("the stream goes on");
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let (mut event, mut id, mut data) = (String::from("message"), None, Vec::new());
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    event = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("id:") {
                    id = Some(v.trim().to_owned());
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push(v.strip_prefix(' ').unwrap_or(v).to_owned());
                }
            }
            if data.is_empty() {
                continue; // a keep-alive comment
            }
            let done = event == until;
            events.push((event, id, data.join("\n")));
            if done {
                return events;
            }
        }
    }
}

async fn the_live_log_resumes_after_the_last_event_id_and_ends_with_the_deployment(
    backend: Backend,
) {
    let server = TestApi::start(backend).await;
    server
        .app(
            "web",
            "file:///srv/git/web.git",
            &[("production", None, None)],
        )
        .await;
    let id = server.deploy("web", "production").await;
    server.claim_ok("r1", &id).await;
    let runner = server.token(Role::Runner, "r1");
    let lines =
        |texts: &[&str]| json!(texts.iter().map(|t| json!({"text": t})).collect::<Vec<_>>());
    server
        .ok(
            &runner,
            APPEND,
            json!({"id": id, "lines": lines(&["one", "two", "three"])}),
        )
        .await;
    let browser = Browser::sign_in(&server, Role::Viewer, "vic").await;
    let mut live = browser
        .client
        .get(server.url(&format!("/deployments/{id}/live?after=0")))
        .header(COOKIE, &browser.cookie)
        .header("last-event-id", "2")
        .send()
        .await
        .unwrap();
    assert_eq!(live.headers()["content-type"], "text/event-stream");
    let first = events_until(&mut live, "line").await;
    assert_eq!(first[0].0, "swap", "the state first: {first:?}");
    assert!(first[0].2.contains("id=\"summary\""));
    assert_eq!(
        first[1].1.as_deref(),
        Some("3"),
        "after line 2 comes line 3 only"
    );
    assert!(first[1].2.contains("three"));

    server
        .ok(
            &runner,
            APPEND,
            json!({"id": id, "lines": lines(&["four"])}),
        )
        .await;
    let more = events_until(&mut live, "line").await;
    assert_eq!(more.len(), 1, "{more:?}");
    assert_eq!(more[0].1.as_deref(), Some("4"));
    assert!(more[0].2.contains("id=\"L4\""));

    server.finish("r1", &id, "SUCCEEDED").await;
    let last = events_until(&mut live, "end").await;
    let swaps: Vec<_> = last
        .iter()
        .filter(|(event, _, _)| event == "swap")
        .collect();
    assert!(
        swaps.last().unwrap().2.contains("succeeded"),
        "the last word is the final state: {last:?}"
    );
    assert!(
        last.iter().all(|(event, _, _)| event != "line"),
        "no line twice"
    );
}

async fn the_overview_is_live(backend: Backend) {
    let server = TestApi::start(backend).await;
    server
        .app(
            "web",
            "file:///srv/git/web.git",
            &[("production", None, None)],
        )
        .await;
    let browser = Browser::sign_in(&server, Role::Viewer, "vic").await;
    let mut live = browser.get("/live").await;
    let first = events_until(&mut live, "swap").await;
    assert!(first[0].2.contains("id=\"environments\""), "{first:?}");
    let id = server.deploy("web", "production").await;
    server.claim_ok("r1", &id).await;
    let changed = loop {
        let swap = events_until(&mut live, "swap").await.pop().unwrap();
        if swap.2.contains("in progress") {
            break swap;
        }
    };
    assert!(
        changed.2.starts_with("<table") && changed.2.contains("id=\"env-"),
        "the table again, as other rows may change too: {changed:?}"
    );
    server.lock("web", "production", "freeze").await;
    loop {
        let swap = events_until(&mut live, "swap").await.pop().unwrap();
        if swap.2.contains("freeze") {
            break;
        }
    }
}

async fn the_overview_says_how_many_commits_an_environment_is_behind_another(backend: Backend) {
    let server = TestApi::start(backend).await;
    server
        .app(
            "web",
            "file:///srv/git/web.git",
            &[("production", None, None), ("staging", None, None)],
        )
        .await;
    let sha = |c: char| c.to_string().repeat(40);
    let runner = server.token(Role::Runner, "r1");
    // production runs a; staging runs c, whose parent b's parent is a.
    for (env, head, reported) in [
        ("production", 'a', vec![('a', None)]),
        ("staging", 'c', vec![('c', Some('b')), ('b', Some('a'))]),
    ] {
        let id = server
            .deploy_ref("web", env, "main", Some(&sha(head)))
            .await;
        server.claim_ok("r1", &id).await;
        let commits: Vec<_> = reported
            .iter()
            .map(|(c, parent)| json!({"sha": sha(*c), "parents": parent.map(|p| vec![sha(p)]).unwrap_or_default()}))
            .collect();
        server
            .ok(
                &runner,
                "mutation($id: ID!, $c: [CommitInput!]!) { reportDeploymentCommits(id: $id, commits: $c) }",
                json!({"id": id, "c": commits}),
            )
            .await;
        server.finish("r1", &id, "SUCCEEDED").await;
    }
    let browser = Browser::sign_in(&server, Role::Viewer, "vic").await;
    let (_, overview) = browser.page("/").await;
    assert!(overview.contains("2 commits behind staging"), "{overview}");
    assert!(!overview.contains("behind production"), "staging is ahead");
    let (_, environment) = browser.page("/apps/web/production").await;
    assert!(
        environment.contains("2 commits behind staging"),
        "{environment}"
    );
}

async fn signing_out_ends_the_session_s_live_streams(backend: Backend) {
    let settings = Settings {
        timeouts: slipway_api::Timeouts {
            session_check: Duration::from_millis(200),
            ..slipway_api::Timeouts::default()
        },
        ..Settings::default()
    };
    let server = TestApi::start_with(backend, Clock::system(), settings).await;
    server
        .app(
            "web",
            "file:///srv/git/web.git",
            &[("production", None, None)],
        )
        .await;
    let id = server.deploy("web", "production").await;
    let browser = Browser::sign_in(&server, Role::Viewer, "vic").await;
    let mut overview = browser.get("/live").await;
    let mut log = browser.get(&format!("/deployments/{id}/live")).await;
    events_until(&mut overview, "swap").await;
    events_until(&mut log, "swap").await;
    let csrf = browser.csrf().await;
    assert_eq!(
        browser.post("/logout", &[("csrf", &csrf)]).await.status(),
        StatusCode::SEE_OTHER
    );
    for stream in [&mut overview, &mut log] {
        let ended = tokio::time::timeout(Duration::from_secs(10), async {
            while let Ok(Some(_)) = stream.chunk().await {}
        })
        .await;
        assert!(ended.is_ok(), "the stream ends after signing out");
    }
}

async fn the_deployment_page_shows_how_each_service_converges(backend: Backend) {
    let server = TestApi::start(backend).await;
    server
        .app(
            "web",
            "file:///srv/git/web.git",
            &[("production", None, None)],
        )
        .await;
    let id = server.deploy("web", "production").await;
    server.claim_ok("r1", &id).await;
    let progress = "mutation($id: ID!, $c: [ServiceConvergenceInput!]) { updateDeploymentProgress(id: $id, convergence: $c) { status } }";
    let runner = server.token(Role::Runner, "r1");
    server
        .ok(
            &runner,
            progress,
            json!({"id": id, "c": [
                {"service": "web-production_web", "state": "CONVERGING", "detail": "1/3 running"},
                {"service": "web-production_db", "state": "FAILED", "detail": "task: non-zero exit (3)"},
            ]}),
        )
        .await;
    let browser = Browser::sign_in(&server, Role::Viewer, "vic").await;
    let (_, html) = browser.page(&format!("/deployments/{id}")).await;
    assert!(html.contains("web-production_web"), "{html}");
    assert!(html.contains("1/3 running"), "{html}");
    assert!(html.contains("task: non-zero exit (3)"), "{html}");
    assert!(
        html.contains("<span class=\"status FAILED\">failed</span>"),
        "{html}"
    );

    // A report replaces the one before; another runner's is refused.
    server
        .ok(
            &runner,
            progress,
            json!({"id": id, "c": [{"service": "web-production_web", "state": "CONVERGED"}]}),
        )
        .await;
    let data = server
        .ok_as(
            Role::Viewer,
            "query($id: ID!) { deployment(id: $id) { convergence { service state detail } } }",
            json!({"id": id}),
        )
        .await;
    assert_eq!(
        data["deployment"]["convergence"],
        json!([{"service": "web-production_web", "state": "CONVERGED", "detail": null}])
    );
    let (code, _) = server
        .err(
            &server.token(Role::Runner, "r2"),
            progress,
            json!({"id": id, "c": []}),
        )
        .await;
    assert_eq!(code, "CONFLICT");
}

/// The plans waiting for a runner.
async fn requested_plans(server: &TestApi) -> usize {
    server
        .ok_as(Role::Runner, "{ requestedPlans { id } }", json!({}))
        .await["requestedPlans"]
        .as_array()
        .unwrap()
        .len()
}

async fn a_preview_shows_what_a_deployment_would_change_and_deploys_the_commit_it_saw(
    backend: Backend,
) {
    let server = TestApi::start(backend).await;
    server
        .app(
            "web",
            "https://github.com/acme/web.git",
            &[("production", Some("main"), None)],
        )
        .await;
    let deployer = Browser::sign_in(&server, Role::Deployer, "ada").await;
    let (_, deploy_page) = deployer.page("/apps/web/production/deploy").await;
    assert!(
        deploy_page.contains("formaction=\"/plans\"") && deploy_page.contains("Preview changes"),
        "{deploy_page}"
    );
    let csrf = deployer.csrf().await;
    let form = [
        ("csrf", csrf.as_str()),
        ("application", "web"),
        ("environment", "production"),
        ("ref", "main"),
        ("description", "ignored by a preview"),
    ];

    // Refused without the session's token, from another site, and to a viewer.
    let mut forged = form;
    forged[0].1 = "not-the-token";
    assert_eq!(
        deployer.post("/plans", &forged).await.status(),
        StatusCode::FORBIDDEN
    );
    let elsewhere = deployer
        .client
        .post(server.url("/plans"))
        .header(COOKIE, &deployer.cookie)
        .header("origin", "https://evil.example")
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(elsewhere.status(), StatusCode::FORBIDDEN);
    let viewer = Browser::sign_in(&server, Role::Viewer, "vic").await;
    let viewer_csrf = viewer.csrf().await;
    let mut as_viewer = form;
    as_viewer[0].1 = &viewer_csrf;
    let refused = viewer.post("/plans", &as_viewer).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert_eq!(requested_plans(&server).await, 0, "nothing was asked for");

    let asked = deployer.post("/plans", &form).await;
    assert_eq!(asked.status(), StatusCode::SEE_OTHER);
    let location = asked.headers()[LOCATION].to_str().unwrap().to_owned();
    let id = location
        .strip_prefix("/plans/")
        .expect("the plan's page")
        .to_owned();
    assert_eq!(requested_plans(&server).await, 1);
    let (status, waiting) = deployer.page(&location).await;
    assert_eq!(status, StatusCode::OK, "{waiting}");
    assert!(waiting.contains("waiting for a runner"), "{waiting}");
    assert!(
        waiting.contains(&format!("data-live=\"/plans/{id}/live\"")),
        "{waiting}"
    );

    // Live: the plan as it is, then each change, then the end.
    let mut live = deployer.get(&format!("{location}/live")).await;
    assert_eq!(live.status(), StatusCode::OK);
    let first = events_until(&mut live, "swap").await;
    assert!(first[0].2.contains("waiting for a runner"), "{first:?}");
    let runner = server.token(Role::Runner, "r1");
    server
        .ok(
            &runner,
            "mutation($id: ID!) { claimPlan(id: $id) { id } }",
            json!({"id": id}),
        )
        .await;
    let claimed = events_until(&mut live, "swap").await;
    assert!(
        claimed[0].2.contains("The runner is fetching the commit"),
        "{claimed:?}"
    );
    assert!(claimed[0].2.contains("planned by runner r1"), "{claimed:?}");
    let sha = "c".repeat(40);
    let result = json!({"stack": "web-production", "services": [
        {"name": "web-production_web", "action": "update", "changes": ["/TaskTemplate/ContainerSpec/Image"],
         "image": "127.0.0.1:5000/web:v2@sha256:feedbeef", "digest": "sha256:feedbeef"},
        {"name": "web-production_<b>worker</b>", "action": "unchanged", "image": "busybox:latest"},
        {"name": "web-production_cache", "action": "create", "image": "redis:7"},
        {"name": "web-production_old", "action": "remove", "image": "busybox:old"},
    ]});
    server
        .ok(
            &runner,
            "mutation($id: ID!, $sha: String, $r: JSON) { finishPlan(id: $id, sha: $sha, result: $r) { id } }",
            json!({"id": id, "sha": sha, "r": result}),
        )
        .await;
    let end = events_until(&mut live, "end").await;
    let last = &end
        .iter()
        .rev()
        .find(|(event, _, _)| event == "swap")
        .expect("a last swap")
        .2;
    assert!(
        last.contains("1 to create, 1 to update, 1 unchanged, 1 to remove"),
        "{last}"
    );

    // The page for each role: the diff for all, Deploy for those who may.
    let admin = Browser::sign_in(&server, Role::Admin, "root").await;
    for (role, browser) in [
        (Role::Admin, &admin),
        (Role::Deployer, &deployer),
        (Role::Viewer, &viewer),
    ] {
        let (status, html) = browser.page(&location).await;
        assert_eq!(status, StatusCode::OK, "{role:?}");
        assert!(html.contains("/TaskTemplate/ContainerSpec/Image"), "{html}");
        assert!(html.contains("sha256:feedbeef"), "{html}");
        assert!(
            html.contains("127.0.0.1:5000/web:v2<"),
            "the image, its digest apart: {html}"
        );
        assert!(html.contains("class=\"status create\""), "{html}");
        assert!(html.contains("class=\"status remove\""), "{html}");
        assert!(
            html.contains("web-production_&lt;b&gt;worker&lt;/b&gt;"),
            "escaped: {html}"
        );
        assert!(!html.contains("<b>worker"), "{html}");
        let deploy = format!("name=\"sha\" value=\"{sha}\"");
        assert_eq!(
            html.contains(&deploy),
            role != Role::Viewer,
            "{role:?}: {html}"
        );
        assert_eq!(
            html.contains("Deploy ccccccc"),
            role != Role::Viewer,
            "{role:?}"
        );
    }
    assert!(
        server.deployments().await.is_empty(),
        "a plan deploys nothing"
    );

    // Its Deploy button deploys exactly the commit the plan saw.
    let deployed = deployer
        .post(
            "/apps/web/production/deploy",
            &[("csrf", &csrf), ("ref", "main"), ("sha", &sha)],
        )
        .await;
    assert_eq!(deployed.status(), StatusCode::SEE_OTHER);
    let deployments = server.deployments().await;
    assert_eq!(deployments.len(), 1);
    assert_eq!(deployments[0]["sha"], sha.as_str());
    assert_eq!(deployments[0]["ref"], "main");

    // A task of the spec, run alone: the deployment's page says so.
    let deployed = deployer
        .post(
            "/apps/web/production/deploy",
            &[("csrf", &csrf), ("ref", "main"), ("task", " migrate ")],
        )
        .await;
    assert_eq!(deployed.status(), StatusCode::SEE_OTHER);
    let location = deployed.headers()[LOCATION].to_str().unwrap().to_owned();
    let (_, html) = viewer.page(&location).await;
    assert!(
        html.contains("runs task <code>migrate</code> of the spec alone"),
        "{html}"
    );
    assert_eq!(server.deployments().await.len(), 2);

    // A failed plan says why.
    let failed = server.request_plan("web", "production", "broken").await;
    server
        .ok(
            &runner,
            "mutation($id: ID!) { claimPlan(id: $id) { id } }",
            json!({"id": failed}),
        )
        .await;
    server
        .ok(
            &runner,
            "mutation($id: ID!, $m: String) { finishPlan(id: $id, message: $m) { id } }",
            json!({"id": failed, "m": "docker-compose.yml: services.web.deploy.replicas: <not a number>"}),
        )
        .await;
    let (_, html) = viewer.page(&format!("/plans/{failed}")).await;
    assert!(html.contains("The plan failed"), "{html}");
    assert!(
        html.contains("services.web.deploy.replicas: &lt;not a number&gt;"),
        "{html}"
    );
    let (status, _) = viewer.page("/plans/999").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn an_admin_checks_a_spec_from_the_setup_page(backend: Backend) {
    let server = TestApi::start(backend).await;
    server
        .app(
            "web",
            "https://github.com/acme/web.git",
            &[
                ("staging", Some("develop"), None),
                ("production", None, None),
            ],
        )
        .await;
    server
        .app("docs", "https://github.com/acme/docs.git", &[])
        .await;
    let admin = Browser::sign_in(&server, Role::Admin, "root").await;
    let (status, setup) = admin.page("/setup").await;
    assert_eq!(status, StatusCode::OK);
    assert!(setup.contains("Check a spec"), "{setup}");
    assert!(setup.contains("<option value=\"staging\">"), "{setup}");
    assert!(setup.contains("<option value=\"production\">"), "{setup}");
    assert_eq!(
        setup.matches("Check the spec</button>").count(),
        1,
        "none for docs, which has no environment: {setup}"
    );
    let csrf = admin.csrf().await;
    let asked = admin
        .post(
            "/plans",
            &[
                ("csrf", &csrf),
                ("application", "web"),
                ("environment", "production"),
                ("ref", "v1.0"),
            ],
        )
        .await;
    assert_eq!(asked.status(), StatusCode::SEE_OTHER);
    let location = asked.headers()[LOCATION].to_str().unwrap().to_owned();
    let (_, html) = admin.page(&location).await;
    assert!(
        html.contains("What deploying <code>v1.0</code> to production would change"),
        "{html}"
    );
    let missing = admin
        .post(
            "/plans",
            &[
                ("csrf", &csrf),
                ("application", "docs"),
                ("environment", "production"),
                ("ref", "main"),
            ],
        )
        .await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert!(missing.text().await.unwrap().contains("has no environment"));
}

async fn the_deployment_page_shows_its_gate_and_the_forms_that_open_it(backend: Backend) {
    let server = TestApi::start(backend).await;
    server
        .app(
            "web",
            "file:///srv/git/web.git",
            &[("production", None, None)],
        )
        .await;
    server
        .ok_as(
            Role::Admin,
            "mutation { setApprovalPolicy(application: \"web\", environment: \"production\", required: true, notByCreator: true) { name } }",
            serde_json::json!({}),
        )
        .await;
    // Created by `deployer` (the subject `deploy` signs as).
    let id = server.deploy("web", "production").await;
    let path = format!("/deployments/{id}");

    let viewer = Browser::sign_in(&server, Role::Viewer, "vic").await;
    let (_, html) = viewer.page(&path).await;
    assert!(html.contains("Waiting for approval"), "{html}");
    assert!(
        html.contains("waits for an approval by a deployer other than deployer, who created it")
    );
    assert!(
        !html.contains("/approve\""),
        "a viewer gets no Approve form"
    );
    let csrf = viewer.csrf().await;
    let forged = viewer
        .post(&format!("{path}/approve"), &[("csrf", &csrf)])
        .await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);

    // Its creator sees the forms but may not approve it.
    let creator = Browser::sign_in(&server, Role::Deployer, "deployer").await;
    let (_, html) = creator.page(&path).await;
    assert!(
        html.contains(&format!("action=\"{path}/approve\"")),
        "{html}"
    );
    assert!(html.contains(&format!("action=\"{path}/reject\"")));
    let csrf = creator.csrf().await;
    let own = creator
        .post(&format!("{path}/approve"), &[("csrf", &csrf)])
        .await;
    assert_eq!(own.status(), StatusCode::FORBIDDEN);
    assert!(own.text().await.unwrap().contains("may not approve it"));

    // Another deployer approves it with a comment, which the page shows.
    let bob = Browser::sign_in(&server, Role::Deployer, "bob").await;
    let csrf = bob.csrf().await;
    let without_token = bob
        .post(
            &format!("{path}/approve"),
            &[("csrf", "forged"), ("comment", "x")],
        )
        .await;
    assert_ne!(without_token.status(), StatusCode::SEE_OTHER);
    let approved = bob
        .post(
            &format!("{path}/approve"),
            &[("csrf", &csrf), ("comment", "diff checked")],
        )
        .await;
    assert_eq!(approved.status(), StatusCode::SEE_OTHER);
    let (_, html) = bob.page(&path).await;
    assert!(!html.contains("Waiting for approval"), "{html}");
    assert!(html.contains("Approved by"), "{html}");
    assert!(html.contains("diff checked"));

    // A freeze: only an admin gets the override form, and the page records it.
    server
        .ok_as(
            Role::Admin,
            "mutation { setApprovalPolicy(application: \"web\", environment: \"production\", required: false) { name } }",
            serde_json::json!({}),
        )
        .await;
    server
        .ok_as(
            Role::Admin,
            "mutation { addFreezeWindow(application: \"web\", environment: \"production\", cron: \"* * * * *\", durationMinutes: 60, timeZone: \"Europe/Berlin\", reason: \"always frozen\", mode: WAIT) { id } }",
            serde_json::json!({}),
        )
        .await;
    let frozen = server.deploy("web", "production").await;
    let path = format!("/deployments/{frozen}");
    let (_, html) = bob.page(&path).await;
    assert!(
        html.contains("Waiting for a freeze window to end"),
        "{html}"
    );
    assert!(
        !html.contains("/override-freeze\""),
        "a deployer may not override"
    );
    let admin = Browser::sign_in(&server, Role::Admin, "root").await;
    let (_, html) = admin.page(&path).await;
    assert!(
        html.contains(&format!("action=\"{path}/override-freeze\"")),
        "{html}"
    );
    let csrf = admin.csrf().await;
    let overridden = admin
        .post(
            &format!("{path}/override-freeze"),
            &[("csrf", &csrf), ("comment", "hotfix")],
        )
        .await;
    assert_eq!(overridden.status(), StatusCode::SEE_OTHER);
    let (_, html) = admin.page(&path).await;
    assert!(html.contains("Freeze overridden by"), "{html}");
    assert!(html.contains("hotfix"));
}

async fn the_deployment_page_shows_the_checks_with_their_state_and_links(backend: Backend) {
    let server = TestApi::start(backend).await;
    server
        .app(
            "web",
            "https://github.com/acme/web.git",
            &[("production", None, None)],
        )
        .await;
    server
        .ok_as(
            Role::Admin,
            "mutation { setRequiredChecks(application: \"web\", environment: \"production\", checks: [\"ci/build\", \"test\"], timeoutMinutes: 45) { name } }",
            json!({}),
        )
        .await;
    let id = server.deploy("web", "production").await;
    let path = format!("/deployments/{id}");
    let browser = Browser::sign_in(&server, Role::Viewer, "vic").await;
    let (_, html) = browser.page(&path).await;
    assert!(html.contains("Waiting for checks"), "{html}");
    assert!(html.contains("Required checks"), "{html}");
    assert!(html.contains("(timeout 45 min)"), "{html}");
    assert!(html.contains("No report from the provider yet."), "{html}");

    let sha = "0123456789abcdef0123456789abcdef01234567";
    server
        .ok(
            &server.token(Role::Provider, "provider"),
            "mutation($id: ID!, $sha: String!) { reportChecks(deployment: $id, sha: $sha, checks: [
                {name: \"ci/build\", state: SUCCESS, url: \"https://ci.example.com/b/1?x=1&y=<2>\"},
                {name: \"test\", state: PENDING}
            ]) { id } }",
            json!({"id": id, "sha": sha}),
        )
        .await;
    let (_, html) = browser.page(&path).await;
    assert!(html.contains("waits for test to pass on 0123456"), "{html}");
    assert!(
        html.contains(r#"<a href="https://ci.example.com/b/1?x=1&amp;y=&lt;2&gt;" rel="noreferrer">ci/build</a>"#),
        "a link, escaped: {html}"
    );
    assert!(html.contains(">passed</span>"), "{html}");
    assert!(html.contains(">pending</span>"), "{html}");

    // With `all`, the deploy form offers Force, which the deployment records.
    server
        .ok_as(
            Role::Admin,
            "mutation { setRequiredChecks(application: \"web\", environment: \"production\", checks: [\"test\"], all: true) { name } }",
            json!({}),
        )
        .await;
    let deployer = Browser::sign_in(&server, Role::Deployer, "dana").await;
    let (_, form) = deployer.page("/apps/web/production/deploy").await;
    assert!(
        form.contains("It waits for CI to pass on its commit: test and every other check"),
        "{form}"
    );
    assert!(form.contains(r#"name="force""#), "{form}");
    let csrf = deployer.csrf().await;
    let created = deployer
        .post(
            "/apps/web/production/deploy",
            &[("csrf", csrf.as_str()), ("ref", "main"), ("force", "on")],
        )
        .await;
    assert_eq!(created.status(), StatusCode::SEE_OTHER);
    let forced = server
        .ok_as(
            Role::Viewer,
            "{ deployments(first: 1) { nodes { checksForcedBy requiredChecks { names all } } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        forced["deployments"]["nodes"][0],
        json!({"checksForcedBy": "dana", "requiredChecks": {"names": ["test"], "all": false}})
    );
}

async fn the_overview_says_how_many_deployments_wait_at_a_gate(backend: Backend) {
    let server = TestApi::start(backend).await;
    server
        .app(
            "web",
            "file:///srv/git/web.git",
            &[("production", None, None)],
        )
        .await;
    server
        .ok_as(
            Role::Admin,
            "mutation { setApprovalPolicy(application: \"web\", environment: \"production\", required: true) { name } }",
            json!({}),
        )
        .await;
    server.deploy("web", "production").await;
    let browser = Browser::sign_in(&server, Role::Viewer, "vic").await;
    let (_, overview) = browser.page("/").await;
    assert!(overview.contains("1 queued"), "{overview}");
    assert!(
        overview.contains("1 waiting for checks, an approval or a freeze to end"),
        "{overview}"
    );
    let (_, environment) = browser.page("/apps/web/production").await;
    assert!(
        environment.contains("1 of the queued wait for checks, an approval or a freeze to end"),
        "{environment}"
    );
}

async fn the_runners_page_tells_connected_runners_from_lost_ones(backend: Backend) {
    let clock = Clock::manual(Utc::now());
    let server = TestApi::start_with(backend, clock.clone(), Settings::default()).await;
    server
        .ok(
            &server.token(Role::Runner, "eu-1"),
            "mutation { registerRunner(labels: [\"swarm=prod-eu\"], version: \"9.9\") { name } }",
            json!({}),
        )
        .await;
    let browser = Browser::sign_in(&server, Role::Viewer, "vic").await;
    let (_, html) = browser.page("/runners").await;
    assert!(
        html.contains("eu-1") && html.contains("swarm=prod-eu"),
        "{html}"
    );
    assert!(
        html.contains(">connected<") && !html.contains(">lost<"),
        "{html}"
    );
    clock.advance(chrono::Duration::seconds(31));
    let (_, html) = browser.page("/runners").await;
    assert!(
        html.contains(">lost<") && !html.contains(">connected<"),
        "{html}"
    );
}

async fn the_environment_page_shows_what_runs_on_each_node_and_the_drift(backend: Backend) {
    let server = TestApi::start(backend).await;
    server.create_app("web").await;
    let id = server.deploy("web", "production").await;
    let runner = server.token(Role::Runner, "r1");
    server
        .ok(
            &runner,
            "mutation { registerRunner(labels: []) { name } }",
            json!({}),
        )
        .await;
    let browser = Browser::sign_in(&server, Role::Viewer, "vic").await;
    let (_, html) = browser.page("/apps/web/production").await;
    assert!(html.contains("No runner has looked"), "{html}");
    assert!(server.claim("r1", &id).await.get("errors").is_none());
    server
        .ok(
            &runner,
            "mutation($id: ID!) { finishDeployment(id: $id, status: SUCCEEDED, services: [{name: \"web_web\", image: \"web:1@sha256:aaaa\", digest: \"sha256:aaaa\"}]) { id } }",
            json!({"id": id}),
        )
        .await;
    let report = "mutation($digest: String!) { reportObserved(application: \"web\", environment: \"production\", services: [{name: \"web_web\", replicas: 1, tasks: [{node: \"node-<7>\", digest: $digest, state: \"running\"}]}]) { name } }";
    server
        .ok(&runner, report, json!({"digest": "sha256:aaaa"}))
        .await;
    let (_, html) = browser.page("/apps/web/production").await;
    assert!(
        html.contains("On the swarm") && html.contains(">consistent<"),
        "{html}"
    );
    assert!(
        html.contains("node-&lt;7&gt;") && !html.contains("node-<7>"),
        "escaped: {html}"
    );
    server
        .ok(&runner, report, json!({"digest": "sha256:bbbb"}))
        .await;
    let (_, html) = browser.page("/apps/web/production").await;
    assert!(html.contains("Drift"), "{html}");
    assert!(
        html.contains("web_web on node-&lt;7&gt; runs bbbb, not the release&#39;s aaaa")
            || html.contains("web_web on node-&lt;7&gt; runs bbbb, not the release's aaaa"),
        "{html}"
    );
}

slipway_testkit::on_both_backends!(
    the_environment_page_shows_what_runs_on_each_node_and_the_drift,
    the_runners_page_tells_connected_runners_from_lost_ones,
    the_deployment_page_shows_the_checks_with_their_state_and_links,
    the_overview_says_how_many_deployments_wait_at_a_gate,
    the_deployment_page_shows_its_gate_and_the_forms_that_open_it,
    a_preview_shows_what_a_deployment_would_change_and_deploys_the_commit_it_saw,
    an_admin_checks_a_spec_from_the_setup_page,
    the_deployment_page_shows_how_each_service_converges,
    signing_out_ends_the_session_s_live_streams,
    the_overview_says_how_many_commits_an_environment_is_behind_another,
    a_sign_in_link_opens_a_session_once,
    a_token_becomes_a_session_and_is_not_kept_in_the_browser,
    every_page_renders_for_each_role_with_only_the_actions_it_may_take,
    a_viewer_s_forged_post_is_refused_and_changes_nothing,
    a_form_without_the_session_s_token_or_from_another_site_is_refused,
    hostile_names_refs_and_log_lines_are_escaped,
    a_session_expires_and_signing_out_ends_it,
    pages_send_security_headers_and_assets_are_kept_for_good,
    the_live_log_resumes_after_the_last_event_id_and_ends_with_the_deployment,
    the_overview_is_live,
);
