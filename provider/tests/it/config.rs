//! Configuration: secrets are never shown, and can come from files.

use clap::Parser;
use slipway_provider::Config;

#[test]
fn debug_never_shows_a_secret() {
    let config = Config::try_parse_from([
        "slipway-provider",
        "--api-url",
        "http://127.0.0.1:8700",
        "--token",
        "jwt-value-1",
        "--github-webhook-secret",
        "hook-secret-2",
        "--github-token",
        "ghp-token-3",
        "--gitlab-webhook-token",
        "gitlab-token-4",
        "--generic-token",
        "generic-token-5",
    ])
    .unwrap();
    let shown = format!("{config:?} {:?}", config.secrets().unwrap());
    for secret in [
        "jwt-value-1",
        "hook-secret-2",
        "ghp-token-3",
        "gitlab-token-4",
        "generic-token-5",
    ] {
        assert!(!shown.contains(secret), "{secret} shows in {shown}");
    }
    assert!(shown.contains("<redacted>"));
}

#[test]
fn secrets_come_from_files_without_their_newline() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    let secret = dir.path().join("secret");
    std::fs::write(&token, "jwt-from-file\n").unwrap();
    std::fs::write(&secret, "hook-secret-from-file\n").unwrap();
    let config = Config::try_parse_from([
        "slipway-provider".as_ref(),
        "--api-url".as_ref(),
        "http://127.0.0.1:8700".as_ref(),
        "--token-file".as_ref(),
        token.as_os_str(),
        "--github-webhook-secret-file".as_ref(),
        secret.as_os_str(),
    ])
    .unwrap();
    let secrets = config.secrets().unwrap();
    assert_eq!(secrets.token.expose(), "jwt-from-file");
    assert_eq!(
        secrets.github_webhook_secret.unwrap().expose(),
        "hook-secret-from-file"
    );
    assert!(secrets.github_token.is_none());

    let missing = Config::try_parse_from([
        "slipway-provider".as_ref(),
        "--api-url".as_ref(),
        "http://127.0.0.1:8700".as_ref(),
        "--token-file".as_ref(),
        dir.path().join("absent").as_os_str(),
    ])
    .unwrap();
    let err = missing.secrets().unwrap_err().to_string();
    assert!(err.contains("--token-file"), "{err}");
}
