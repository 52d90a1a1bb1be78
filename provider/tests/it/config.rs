//! Configuration: secrets are never shown, and can come from files; the
//! data directory does not depend on where the provider is started.

use clap::Parser;
use slipway_provider::hooks::SOURCES;
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
        secrets.hook("github").unwrap().expose(),
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

/// `args` after the API URL, parsed.
fn parse(args: &[&std::ffi::OsStr]) -> Config {
    let mut all: Vec<&std::ffi::OsStr> = vec![
        "slipway-provider".as_ref(),
        "--api-url".as_ref(),
        "http://127.0.0.1:8700".as_ref(),
    ];
    all.extend_from_slice(args);
    Config::try_parse_from(all).unwrap()
}

#[test]
fn every_secret_keeps_only_what_is_before_its_trailing_newlines() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    let gitlab = dir.path().join("gitlab");
    // Trailing newlines go (CRLF too); a trailing space is the secret's own.
    std::fs::write(&token, "jwt \r\n\n").unwrap();
    std::fs::write(&gitlab, "gitlab-token\r\n").unwrap();
    let config = parse(&[
        "--token-file".as_ref(),
        token.as_os_str(),
        "--gitlab-webhook-token-file".as_ref(),
        gitlab.as_os_str(),
        "--generic-token".as_ref(),
        "generic\n".as_ref(),
    ]);
    let secrets = config.secrets().unwrap();
    assert_eq!(secrets.token.expose(), "jwt ");
    assert_eq!(secrets.hook("gitlab").unwrap().expose(), "gitlab-token");
    assert_eq!(secrets.hook("generic").unwrap().expose(), "generic");
    assert!(secrets.hook("github").is_none());
}

#[test]
fn an_empty_secret_is_an_error_that_names_its_flag() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "\n").unwrap();
    let config = parse(&[
        "--token".as_ref(),
        "jwt".as_ref(),
        "--github-webhook-secret-file".as_ref(),
        empty.as_os_str(),
    ]);
    let err = config.secrets().unwrap_err().to_string();
    assert!(err.contains("--github-webhook-secret-file"), "{err}");
    assert!(err.contains(&empty.display().to_string()), "{err}");
    assert!(err.contains("empty"), "{err}");

    let config = parse(&[
        "--token".as_ref(),
        "jwt".as_ref(),
        "--generic-token".as_ref(),
        "\n".as_ref(),
    ]);
    let err = config.secrets().unwrap_err().to_string();
    assert_eq!(err, "--generic-token is empty");
}

#[test]
fn an_unreadable_secret_file_is_named_but_its_content_never_shows() {
    let dir = tempfile::tempdir().unwrap();
    let binary = dir.path().join("binary");
    std::fs::write(&binary, b"hunter2-\xff\xfe").unwrap();
    let config = parse(&["--token-file".as_ref(), binary.as_os_str()]);
    let err = config.secrets().unwrap_err().to_string();
    assert!(err.contains("--token-file"), "{err}");
    assert!(err.contains(&binary.display().to_string()), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
}

#[test]
fn the_default_data_dir_is_absolute() {
    let config = parse(&[]);
    assert!(
        config.data_dir.is_absolute(),
        "{} depends on the working directory",
        config.data_dir.display()
    );
    assert_eq!(
        config.data_dir,
        std::path::Path::new("/var/lib/slipway-provider")
    );
    let embedded = Config::new("http://127.0.0.1:8700", "jwt");
    assert_eq!(embedded.data_dir, config.data_dir);
}

#[test]
fn each_hook_source_is_on_exactly_when_its_secret_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gitlab");
    std::fs::write(&file, "gitlab-token").unwrap();
    let config = parse(&[
        "--token".as_ref(),
        "jwt".as_ref(),
        "--github-webhook-secret".as_ref(),
        "hook".as_ref(),
        "--gitlab-webhook-token-file".as_ref(),
        file.as_os_str(),
    ]);
    let secrets = config.secrets().unwrap();
    let on: Vec<(&str, &str, bool, bool)> = SOURCES
        .iter()
        .map(|source| {
            (
                source.name,
                source.route,
                source.is_configured(&config.hooks),
                secrets.hook(source.name).is_some(),
            )
        })
        .collect();
    assert_eq!(
        on,
        [
            ("github", "/hooks/github", true, true),
            ("gitlab", "/hooks/gitlab", true, true),
            ("generic", "/hooks/generic", false, false),
        ]
    );
    let flags: Vec<&str> = SOURCES.iter().map(|source| source.secret_flag).collect();
    assert_eq!(
        flags,
        [
            "github-webhook-secret",
            "gitlab-webhook-token",
            "generic-token"
        ]
    );
}
