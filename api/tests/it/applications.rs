//! Applications: repository URLs never carry credentials, and admins change them.

use serde_json::{json, Value};
use slipway_api::auth::Role;

use slipway_testkit::api::{Backend, TestApi};

const CREATE: &str = "mutation($repository: String!) {
    createApplication(input: {name: \"web\", repository: $repository}) { name repository }
}";

const UPDATE: &str = "mutation($name: String!, $repository: String, $specPath: String) {
    updateApplication(name: $name, repository: $repository, specPath: $specPath) { name repository specPath }
}";

async fn repository_urls_with_credentials_are_refused(backend: Backend) {
    let server = TestApi::start(backend).await;
    let admin = server.token(Role::Admin, "admin");
    for url in [
        "https://user:s3cr3t-token@github.com/shop/web.git",
        "https://s3cr3t-token@github.com/shop/web.git",
        "http://user:s3cr3t-token@git.internal/shop/web.git",
        "ssh://git:s3cr3t-token@git.internal/shop/web.git",
    ] {
        let body = server
            .gql(Some(&admin), CREATE, json!({"repository": url}))
            .await;
        let (code, message) = slipway_testkit::api::error_of(&body);
        assert_eq!(code, "BAD_USER_INPUT", "{url}: {message}");
        assert!(
            message.contains("--git-token") && message.contains("SSH key"),
            "says what to do instead: {message}"
        );
        assert!(
            !body.to_string().contains("s3cr3t-token"),
            "the secret is not echoed: {body}"
        );
    }
    let viewer = server.token(Role::Viewer, "v");
    let none = server
        .ok(&viewer, "{ applications { name } }", json!({}))
        .await;
    assert_eq!(none["applications"], json!([]), "nothing was created");

    for (name, url) in [
        ("scp", "git@github.com:shop/web.git"),
        ("ssh", "ssh://git@git.internal:2222/shop/web.git"),
        ("https", "https://github.com/shop/web.git"),
        ("local", "file:///srv/git/web.git"),
    ] {
        let created = server
            .ok(
                &admin,
                "mutation($name: String!, $repository: String!) { createApplication(input: {name: $name, repository: $repository}) { repository } }",
                json!({"name": name, "repository": url}),
            )
            .await;
        assert_eq!(created["createApplication"]["repository"], url);
    }
}

/// Every answer the API gives about `web`, as text.
async fn everything_shown(server: &TestApi, deployment: &str) -> String {
    let viewer = server.token(Role::Viewer, "v");
    let read = server
        .ok(
            &viewer,
            "query($id: ID!) {
                applications { repository }
                application(name: \"web\") { repository }
                deployment(id: $id) { application { repository } environment { application { repository } } }
            }",
            json!({"id": deployment}),
        )
        .await;
    let runner = server.token(Role::Runner, "r");
    let claimable = server
        .ok(
            &runner,
            "{ claimableDeployments { application { repository } } }",
            json!({}),
        )
        .await;
    format!("{read} {claimable}")
}

async fn a_stored_url_with_credentials_is_shown_masked_until_an_admin_fixes_it(backend: Backend) {
    use sea_orm::sea_query::Expr;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    use slipway_api::db::entities::application;
    let server = TestApi::start(backend).await;
    server.create_app("web").await;
    // Stored before such URLs were refused.
    application::Entity::update_many()
        .col_expr(
            application::Column::Repository,
            Expr::value("https://deploy:s3cr3t-token@github.com/shop/web.git"),
        )
        .filter(application::Column::Name.eq("web"))
        .exec(&server.state.db)
        .await
        .unwrap();
    let id = server.deploy("web", "prod").await;

    let shown = everything_shown(&server, &id).await;
    assert!(!shown.contains("s3cr3t-token"), "{shown}");
    assert!(
        shown.contains("https://deploy:***@github.com/shop/web.git"),
        "{shown}"
    );
    // The runner's work is masked too: it clones with its own token.
    let runner = server.token(Role::Runner, "r");
    let work = server
        .ok(
            &runner,
            "mutation($id: ID!) { claimDeployment(id: $id) { application { repository } } }",
            json!({"id": id}),
        )
        .await;
    assert_eq!(
        work["claimDeployment"]["application"]["repository"],
        "https://deploy:***@github.com/shop/web.git"
    );

    // Only an admin may change it, and not to another URL with credentials.
    let fixed = json!({"name": "web", "repository": "https://github.com/shop/web.git"});
    let deployer = server.token(Role::Deployer, "d");
    let (code, _) = server.err(&deployer, UPDATE, fixed.clone()).await;
    assert_eq!(code, "FORBIDDEN");
    let admin = server.token(Role::Admin, "admin");
    let body = server
        .gql(
            Some(&admin),
            UPDATE,
            json!({"name": "web", "repository": "https://x:0ther-secret@github.com/shop/web.git"}),
        )
        .await;
    assert_eq!(slipway_testkit::api::error_of(&body).0, "BAD_USER_INPUT");
    assert!(!body.to_string().contains("0ther-secret"), "{body}");
    let updated = server.ok(&admin, UPDATE, fixed).await;
    assert_eq!(
        updated["updateApplication"],
        json!({"name": "web", "repository": "https://github.com/shop/web.git", "specPath": "slipway.yml"})
    );
    let stored = application::Entity::find()
        .filter(application::Column::Name.eq("web"))
        .one(&server.state.db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.repository, "https://github.com/shop/web.git");
}

async fn an_admin_updates_what_it_names_and_nothing_else(backend: Backend) {
    let server = TestApi::start(backend).await;
    server.create_app("web").await;
    let admin = server.token(Role::Admin, "admin");
    let moved = server
        .ok(
            &admin,
            UPDATE,
            json!({"name": "web", "specPath": "deploy/slipway.yml"}),
        )
        .await;
    assert_eq!(
        moved["updateApplication"],
        json!({"name": "web", "repository": "file:///srv/git/app.git", "specPath": "deploy/slipway.yml"})
    );
    let cases: [(Value, &str, &str); 4] = [
        (
            json!({"name": "nope", "specPath": "x.yml"}),
            "NOT_FOUND",
            "`nope`",
        ),
        (
            json!({"name": "web"}),
            "BAD_USER_INPUT",
            "nothing to change",
        ),
        (
            json!({"name": "web", "specPath": "../etc/passwd"}),
            "BAD_USER_INPUT",
            "`specPath`",
        ),
        (
            json!({"name": "web", "repository": " "}),
            "BAD_USER_INPUT",
            "`repository`",
        ),
    ];
    for (variables, code, says) in cases {
        let (got, message) = server.err(&admin, UPDATE, variables.clone()).await;
        assert_eq!(got, code, "{variables}: {message}");
        assert!(message.contains(says), "{message:?} should say {says:?}");
    }
    let viewer = server.token(Role::Viewer, "v");
    let now = server
        .ok(
            &viewer,
            "{ application(name: \"web\") { repository specPath } }",
            json!({}),
        )
        .await;
    assert_eq!(
        now["application"],
        json!({"repository": "file:///srv/git/app.git", "specPath": "deploy/slipway.yml"}),
        "the refusals changed nothing"
    );
}

slipway_testkit::on_both_backends!(
    repository_urls_with_credentials_are_refused,
    a_stored_url_with_credentials_is_shown_masked_until_an_admin_fixes_it,
    an_admin_updates_what_it_names_and_nothing_else,
);
