//! Fetching commits into mirrors, against real repositories: `file://`, a
//! `git daemon`, an `sshd` and git's smart HTTP over HTTPS and HTTP, all on
//! 127.0.0.1.

use std::path::{Path, PathBuf};
use std::time::Duration;

use slipway_runner::git::{CommitFiles, Credentials, GitError, Mirrors};
use slipway_runner::spec::Files;
use slipway_secret::Secret;
use slipway_testkit::free_port;
use slipway_testkit::git::http::GitHttp;
use slipway_testkit::git::ssh::{SshKey, SshServer};
use slipway_testkit::git::{GitDaemon, Repo};
use slipway_testkit::tls::Identity;

const TIMEOUT: Duration = Duration::from_secs(60);

/// `git daemon` serving `repo`, allowing fetches by sha when `allow_sha`;
/// returns it (stopped on drop) and the repository's `git://` URL.
async fn serve(repo: &Repo, allow_sha: bool) -> (GitDaemon, String) {
    if allow_sha {
        repo.git(&["config", "uploadpack.allowReachableSHA1InWant", "true"]);
    }
    let daemon = GitDaemon::serve(repo.base()).await;
    let url = daemon.url(repo.name());
    (daemon, url)
}

fn history(repo: &Repo, commits: usize) -> Vec<String> {
    (0..commits)
        .map(|i| {
            repo.commit(
                &[
                    ("slipway.yml", &format!("stack: s{i}\n")),
                    ("data.txt", &"x".repeat(1000 * (i + 1))),
                ],
                &format!("c{i}"),
            )
        })
        .collect()
}

fn read(mirror: &std::path::Path, sha: &str, path: &str) -> Option<String> {
    let files = CommitFiles::open(mirror, sha).unwrap();
    files
        .read(path)
        .unwrap()
        .map(|b| String::from_utf8(b).unwrap())
}

#[tokio::test]
async fn a_commit_is_fetched_shallow_where_the_server_allows_and_then_cached() {
    let repo = Repo::new();
    let shas = history(&repo, 5);
    let (_daemon, url) = serve(&repo, true).await;
    let dir = tempfile::tempdir().unwrap();
    let mirrors = Mirrors::new(dir.path(), Credentials::default());

    let fetched = mirrors
        .fetch(&url, "main", Some(&shas[3]), TIMEOUT)
        .await
        .unwrap();
    assert!(!fetched.cached);
    assert!(fetched.how.contains("shallow"), "{}", fetched.how);
    assert_eq!(
        read(&fetched.mirror, &shas[3], "slipway.yml").as_deref(),
        Some("stack: s3\n")
    );
    assert_eq!(read(&fetched.mirror, &shas[3], "missing.yml"), None);

    let again = mirrors
        .fetch(&url, "main", Some(&shas[3]), TIMEOUT)
        .await
        .unwrap();
    assert!(again.cached, "a known commit needs no network");
    assert_eq!(again.received_bytes, 0);
}

#[tokio::test]
async fn a_server_refusing_shas_is_fetched_by_ref() {
    let repo = Repo::new();
    let shas = history(&repo, 3);
    let (_daemon, url) = serve(&repo, false).await;
    let dir = tempfile::tempdir().unwrap();
    let mirrors = Mirrors::new(dir.path(), Credentials::default());
    // An older commit: the shallow ref does not hold it, the full one does.
    let fetched = mirrors
        .fetch(&url, "main", Some(&shas[0]), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(fetched.sha, shas[0]);
    assert_eq!(
        read(&fetched.mirror, &shas[0], "slipway.yml").as_deref(),
        Some("stack: s0\n")
    );
    // Without a sha, the ref resolves to its tip.
    let tip = mirrors.fetch(&url, "main", None, TIMEOUT).await.unwrap();
    assert_eq!(tip.sha, shas[2]);
}

#[tokio::test]
async fn local_repositories_fall_back_to_a_full_fetch() {
    let repo = Repo::new();
    let shas = history(&repo, 2);
    let dir = tempfile::tempdir().unwrap();
    let mirrors = Mirrors::new(dir.path(), Credentials::default());
    let fetched = mirrors
        .fetch(&repo.url(), "main", Some(&shas[1]), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(
        read(&fetched.mirror, &shas[1], "slipway.yml").as_deref(),
        Some("stack: s1\n")
    );
}

#[tokio::test]
async fn unknown_commits_and_unreachable_repositories_say_which() {
    let repo = Repo::new();
    history(&repo, 1);
    let dir = tempfile::tempdir().unwrap();
    let mirrors = Mirrors::new(dir.path(), Credentials::default());
    let unknown = "0123456789abcdef0123456789abcdef01234567";
    match mirrors
        .fetch(&repo.url(), "main", Some(unknown), TIMEOUT)
        .await
    {
        Err(GitError::UnknownCommit { sha, .. }) => assert_eq!(sha, unknown),
        other => panic!("expected UnknownCommit, got {other:?}"),
    }
    let port = free_port();
    let nowhere = format!("git://127.0.0.1:{port}/nothing.git");
    match mirrors.fetch(&nowhere, "main", None, TIMEOUT).await {
        Err(err @ GitError::Unreachable { .. }) => {
            assert!(err.to_string().contains(&nowhere), "{err}")
        }
        other => panic!("expected Unreachable, got {other:?}"),
    }
}

#[tokio::test]
async fn head_names_the_default_branch() {
    let repo = Repo::new();
    let shas = history(&repo, 2);
    let dir = tempfile::tempdir().unwrap();
    let mirrors = Mirrors::new(dir.path(), Credentials::default());
    let fetched = mirrors
        .fetch(&repo.url(), "HEAD", None, TIMEOUT)
        .await
        .unwrap();
    assert_eq!(fetched.sha, shas[1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_server_does_not_hold_the_mirror_after_the_fetch_timed_out() {
    let repo = Repo::new();
    let shas = history(&repo, 2);
    let (daemon, _) = serve(&repo, true).await;
    // The server accepts and then says nothing, until the proxy lets it.
    let proxy = slipway_testkit::proxy::Proxy::start(slipway_testkit::proxy::Target::Tcp(
        format!("127.0.0.1:{}", daemon.port).parse().unwrap(),
    ))
    .await;
    proxy.hold();
    let url = format!("git://{}/{}", proxy.addr, repo.name());
    let dir = tempfile::tempdir().unwrap();
    let mirrors =
        Mirrors::new(dir.path(), Credentials::default()).with_stall(Duration::from_secs(3));

    let started = std::time::Instant::now();
    match mirrors
        .fetch(&url, "main", Some(&shas[1]), Duration::from_secs(2))
        .await
    {
        Err(GitError::Timeout { .. }) => {}
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(10));

    // libgit2 gave up too, so the next fetch of the same mirror gets the
    // mirror's lock and goes through once the server answers.
    proxy.restore();
    let fetched = mirrors
        .fetch(&url, "main", Some(&shas[1]), Duration::from_secs(20))
        .await
        .expect("the second fetch is not stuck behind the first");
    assert_eq!(fetched.sha, shas[1]);
}

#[tokio::test]
async fn a_url_rewritten_to_a_local_path_falls_back_to_a_full_fetch() {
    let repo = Repo::new();
    let shas = history(&repo, 2);
    // git's `url.<base>.insteadOf`, which libgit2 honours: the https:// URL
    // meets the local transport, which refuses shallow fetches.
    let home = tempfile::tempdir().unwrap();
    std::fs::write(
        home.path().join(".gitconfig"),
        format!(
            "[url \"{}\"]\n\tinsteadOf = https://git.example.invalid/shop.git\n",
            repo.path().display()
        ),
    )
    .unwrap();
    // This test runs in a process of its own (nextest), before any other
    // git operation of that process reads the global configuration.
    std::env::set_var("HOME", home.path());
    std::env::remove_var("XDG_CONFIG_HOME");
    let dir = tempfile::tempdir().unwrap();
    let mirrors = Mirrors::new(dir.path(), Credentials::default());
    let fetched = mirrors
        .fetch(
            "https://git.example.invalid/shop.git",
            "main",
            Some(&shas[1]),
            TIMEOUT,
        )
        .await
        .expect("falls back to a full fetch");
    assert_eq!(
        read(&fetched.mirror, &shas[1], "slipway.yml").as_deref(),
        Some("stack: s1\n")
    );
}

#[test]
fn passwords_in_repository_urls_never_reach_messages() {
    use slipway_runner::git::redact_url;
    assert_eq!(
        redact_url("https://ci:ghp_secret@github.com/acme/shop.git"),
        "https://ci:***@github.com/acme/shop.git"
    );
    assert_eq!(
        redact_url("ssh://git@github.com/acme/shop.git"),
        "ssh://git@github.com/acme/shop.git"
    );
    assert_eq!(
        redact_url("git@github.com:acme/shop.git"),
        "git@github.com:acme/shop.git"
    );
    let err = GitError::UnknownRef {
        url: redact_url("https://u:hunter2@example.com/r.git"),
        reference: "main".into(),
    };
    assert!(!err.to_string().contains("hunter2"));
}

/// How many objects a mirror holds: none when nothing was fetched.
fn objects_in(mirror: &Path) -> usize {
    let Ok(repo) = git2::Repository::open_bare(mirror) else {
        return 0;
    };
    let mut count = 0;
    repo.odb()
        .unwrap()
        .foreach(|_| {
            count += 1;
            true
        })
        .unwrap();
    count
}

/// A known_hosts file holding `lines`, in the server's temp dir.
fn known_hosts(server: &SshServer, lines: &str) -> PathBuf {
    let path = server.dir().join("known_hosts");
    std::fs::write(&path, lines).unwrap();
    path
}

fn ssh_credentials(key: &Path, known_hosts: &Path) -> Credentials {
    Credentials {
        ssh_key: Some(key.to_owned()),
        known_hosts: Some(known_hosts.to_owned()),
        ..Credentials::default()
    }
}

/// Whether sshd was offered a client key (accepted or not), or started a
/// session: with `LogLevel VERBOSE` it logs `Accepted publickey`, `Failed
/// publickey`, `Postponed publickey`.
fn offered_a_key(server: &SshServer) -> bool {
    let log = server.log();
    log.contains("publickey") || log.contains("Starting session")
}

#[tokio::test]
async fn over_ssh_a_known_host_key_on_another_port_is_accepted_and_the_key_fetches() {
    let repo = Repo::new();
    let shas = history(&repo, 3);
    let server = SshServer::serve(&repo).await;
    // What OpenSSH writes for a server on a port other than 22.
    let file = known_hosts(&server, &server.known_hosts_line());
    assert!(std::fs::read_to_string(&file)
        .unwrap()
        .starts_with(&format!("[127.0.0.1]:{} ssh-ed25519 ", server.port)));
    let dir = tempfile::tempdir().unwrap();
    let mirrors = Mirrors::new(
        dir.path(),
        ssh_credentials(&server.client_key.private, &file),
    );

    let fetched = mirrors
        .fetch(&server.url, "main", Some(&shas[1]), TIMEOUT)
        .await
        .unwrap_or_else(|err| panic!("{err}\n{}", server.log()));
    assert_eq!(
        read(&fetched.mirror, &shas[1], "slipway.yml").as_deref(),
        Some("stack: s1\n")
    );
    assert!(
        server.log().contains("Accepted publickey"),
        "{}",
        server.log()
    );
    let tip = mirrors
        .fetch(&server.url, "main", None, TIMEOUT)
        .await
        .unwrap();
    assert_eq!(tip.sha, shas[2]);
}

#[tokio::test]
async fn over_ssh_a_hashed_known_hosts_entry_is_accepted() {
    let repo = Repo::new();
    let shas = history(&repo, 1);
    let server = SshServer::serve(&repo).await;
    let file = known_hosts(&server, &server.known_hosts_line());
    // Debian's ssh writes hashed names (`HashKnownHosts yes`); `ssh-keygen
    // -H` hashes an existing file the same way.
    let hashed = std::process::Command::new("ssh-keygen")
        .arg("-H")
        .arg("-f")
        .arg(&file)
        .output()
        .unwrap();
    assert!(hashed.status.success(), "{hashed:?}");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.starts_with("|1|") && !text.contains("127.0.0.1"),
        "{text}"
    );
    let dir = tempfile::tempdir().unwrap();
    let mirrors = Mirrors::new(
        dir.path(),
        ssh_credentials(&server.client_key.private, &file),
    );
    let fetched = mirrors
        .fetch(&server.url, "main", Some(&shas[0]), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(fetched.sha, shas[0]);
}

/// Fetches from an sshd whose host key the known_hosts file made of
/// `lines` does not vouch for: the fetch is refused as `Untrusted` before
/// any client key was offered, and nothing is fetched. Returns the server,
/// the file and the message.
async fn refused_host_key(
    lines: impl FnOnce(&SshServer) -> String,
) -> (SshServer, PathBuf, String) {
    let repo = Repo::new();
    let shas = history(&repo, 1);
    let server = SshServer::serve(&repo).await;
    let file = known_hosts(&server, &lines(&server));
    let dir = tempfile::tempdir().unwrap();
    let mirrors = Mirrors::new(
        dir.path(),
        ssh_credentials(&server.client_key.private, &file),
    );
    let err = mirrors
        .fetch(&server.url, "main", Some(&shas[0]), TIMEOUT)
        .await
        .expect_err("the host key is refused");
    assert!(matches!(err, GitError::Untrusted { .. }), "{err:?}");
    assert!(!offered_a_key(&server), "{}", server.log());
    assert_eq!(objects_in(&mirrors.path(&server.url)), 0);
    (server, file, err.to_string())
}

fn assert_says(message: &str, parts: &[&str]) {
    for part in parts {
        assert!(message.contains(part), "{part:?} not in: {message}");
    }
}

#[tokio::test]
async fn over_ssh_an_unknown_host_key_is_refused_saying_how_to_add_it_and_nothing_is_sent() {
    // The file knows the key, but for other servers: port 22, another port.
    let (server, file, message) = refused_host_key(|server| {
        let other_port = server.known_hosts_line().replace(
            &format!("]:{}", server.port),
            &format!("]:{}", server.port.wrapping_add(1)),
        );
        format!("127.0.0.1 {}\n{other_port}", server.host_key.public)
    })
    .await;
    assert_says(
        &message,
        &[
            &format!("[127.0.0.1]:{}", server.port),
            "is not in",
            &file.display().to_string(),
            &server.host_key.fingerprint(),
            &format!("ssh-keyscan -t ed25519 -p {} 127.0.0.1 >>", server.port),
        ],
    );
}

#[tokio::test]
async fn over_ssh_a_changed_host_key_is_refused_as_changed_and_nothing_is_sent() {
    // The file holds another key for this very server.
    let (server, file, message) = refused_host_key(|server| {
        let before = SshKey::generate(&server.dir().join("old_host_key"));
        format!(
            "# the server's key of before\n[127.0.0.1]:{} {}\n",
            server.port, before.public
        )
    })
    .await;
    let host = format!("[127.0.0.1]:{}", server.port);
    assert_says(
        &message,
        &[
            &host,
            "has changed",
            "line 2 of",
            &file.display().to_string(),
            &server.host_key.fingerprint(),
            &format!("ssh-keygen -R '{host}' -f {}", file.display()),
        ],
    );
}

#[tokio::test]
async fn over_ssh_a_key_the_server_does_not_know_is_unauthorized() {
    let repo = Repo::new();
    let shas = history(&repo, 1);
    let server = SshServer::serve(&repo).await;
    let file = known_hosts(&server, &server.known_hosts_line());
    let stranger = SshKey::generate(&server.dir().join("stranger"));
    let dir = tempfile::tempdir().unwrap();
    let mirrors = Mirrors::new(dir.path(), ssh_credentials(&stranger.private, &file));

    let err = mirrors
        .fetch(&server.url, "main", Some(&shas[0]), TIMEOUT)
        .await
        .expect_err("a key not in authorized_keys is refused");
    let message = err.to_string();
    assert!(matches!(err, GitError::Unauthorized { .. }), "{err:?}");
    assert_says(
        &message,
        &[
            &format!("refused the key {}", stranger.private.display()),
            &format!("for user {}", server.user),
            "--git-ssh-key-file",
        ],
    );
    assert!(
        server.log().contains("Failed publickey"),
        "{}",
        server.log()
    );
    assert_eq!(objects_in(&mirrors.path(&server.url)), 0);
}

const TOKEN: &str = "ghs_slipway-test-token";

fn https_credentials(token: Option<&str>, identity: &Identity) -> Credentials {
    Credentials {
        token: token.map(|token| Secret::new(token.to_owned())),
        ca_file: Some(identity.ca.clone()),
        ..Credentials::default()
    }
}

#[tokio::test]
async fn over_https_the_token_fetches_from_a_server_signed_by_the_git_ca_file() {
    let repo = Repo::new();
    let shas = history(&repo, 3);
    let server = GitHttp::serve(&repo, TOKEN).await;
    let dir = tempfile::tempdir().unwrap();
    let mirrors = Mirrors::new(dir.path(), https_credentials(Some(TOKEN), &server.identity));

    let fetched = mirrors
        .fetch(&server.https_url(), "main", Some(&shas[1]), TIMEOUT)
        .await
        .unwrap();
    assert!(fetched.how.contains("shallow"), "{}", fetched.how);
    assert_eq!(
        read(&fetched.mirror, &shas[1], "slipway.yml").as_deref(),
        Some("stack: s1\n")
    );
    let tip = mirrors
        .fetch(&server.https_url(), "main", None, TIMEOUT)
        .await
        .unwrap();
    assert_eq!(tip.sha, shas[2]);
    let seen = server.seen();
    assert!(
        seen.iter()
            .all(|s| s.https && s.host == format!("127.0.0.1:{}", server.https_port)),
        "{seen:#?}"
    );
    assert!(seen.iter().any(|s| s.authorization.is_some()), "{seen:#?}");
}

#[tokio::test]
async fn over_https_no_token_or_a_wrong_one_is_unauthorized() {
    let repo = Repo::new();
    let shas = history(&repo, 1);
    let server = GitHttp::serve(&repo, TOKEN).await;
    let dir = tempfile::tempdir().unwrap();

    let without = Mirrors::new(
        dir.path().join("without"),
        https_credentials(None, &server.identity),
    );
    let err = without
        .fetch(&server.https_url(), "main", Some(&shas[0]), TIMEOUT)
        .await
        .expect_err("no token");
    assert!(matches!(err, GitError::Unauthorized { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("give the runner a token with --git-token"),
        "{err}"
    );

    let wrong = "ghs_not-the-token";
    let mirrors = Mirrors::new(
        dir.path().join("wrong"),
        https_credentials(Some(wrong), &server.identity),
    );
    let err = mirrors
        .fetch(&server.https_url(), "main", Some(&shas[0]), TIMEOUT)
        .await
        .expect_err("a wrong token");
    let message = err.to_string();
    assert!(matches!(err, GitError::Unauthorized { .. }), "{err:?}");
    assert!(
        message.contains(&format!(
            "127.0.0.1:{} refused the --git-token",
            server.https_port
        )),
        "{message}"
    );
    assert!(!message.contains(wrong), "{message}");
    assert_eq!(objects_in(&mirrors.path(&server.https_url())), 0);
}

#[tokio::test]
async fn the_token_is_never_sent_over_plain_http() {
    let repo = Repo::new();
    let shas = history(&repo, 1);
    let server = GitHttp::serve(&repo, TOKEN).await;
    let dir = tempfile::tempdir().unwrap();
    let mirrors = Mirrors::new(dir.path(), https_credentials(Some(TOKEN), &server.identity));

    let err = mirrors
        .fetch(&server.http_url(), "main", Some(&shas[0]), TIMEOUT)
        .await
        .expect_err("the server wants a token, which does not go over http://");
    assert!(matches!(err, GitError::Unauthorized { .. }), "{err:?}");
    assert!(err.to_string().contains("sent only over https://"), "{err}");
    let seen = server.seen();
    assert!(
        seen.iter().any(|s| !s.https),
        "the server was asked: {seen:#?}"
    );
    assert!(seen.iter().all(|s| s.authorization.is_none()), "{seen:#?}");
}

#[tokio::test]
async fn the_token_is_never_sent_to_the_host_a_redirect_names() {
    let repo = Repo::new();
    let shas = history(&repo, 1);
    let server = GitHttp::serve(&repo, TOKEN).await;
    let dir = tempfile::tempdir().unwrap();
    let mirrors = Mirrors::new(dir.path(), https_credentials(Some(TOKEN), &server.identity));

    // 127.0.0.1 asks for the token, then redirects to localhost.
    let err = mirrors
        .fetch(&server.moved_url(), "main", Some(&shas[0]), TIMEOUT)
        .await
        .expect_err("localhost wants the token too, which goes to 127.0.0.1 only");
    assert!(matches!(err, GitError::Unauthorized { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains(&format!("https://localhost:{}/", server.https_port))
            && message.contains(&format!(
                "repository's host (127.0.0.1:{})",
                server.https_port
            )),
        "{message}"
    );
    let seen = server.seen();
    let (original, redirected): (Vec<_>, Vec<_>) =
        seen.iter().partition(|s| s.host.starts_with("127.0.0.1:"));
    assert!(
        original.iter().any(|s| s.authorization.is_some()),
        "the repository's host got the token: {seen:#?}"
    );
    assert!(
        !redirected.is_empty(),
        "the redirect was followed: {seen:#?}"
    );
    assert!(
        redirected
            .iter()
            .all(|s| s.host.starts_with("localhost:") && s.authorization.is_none()),
        "{seen:#?}"
    );
}

#[tokio::test]
async fn a_tls_certificate_of_an_unknown_ca_is_refused_naming_git_ca_file() {
    let repo = Repo::new();
    let shas = history(&repo, 1);
    let dir = tempfile::tempdir().unwrap();
    let own = Identity::generate(dir.path());
    let server = GitHttp::serve_with(&repo, TOKEN, own).await;
    // Trusting the kit's CA, not the one that signed this server's certificate.
    let mirrors = Mirrors::new(
        dir.path().join("mirrors"),
        https_credentials(Some(TOKEN), &Identity::shared()),
    );

    let err = mirrors
        .fetch(&server.https_url(), "main", Some(&shas[0]), TIMEOUT)
        .await
        .expect_err("an unknown CA");
    assert!(matches!(err, GitError::Untrusted { .. }), "{err:?}");
    assert!(err.to_string().contains("--git-ca-file"), "{err}");
    assert!(
        server.seen().is_empty(),
        "no request got past TLS: {:#?}",
        server.seen()
    );
}

#[tokio::test]
async fn a_shallow_mirror_reports_its_edge_and_deepens_to_a_history() {
    let repo = Repo::new();
    let shas = history(&repo, 6);
    let (_daemon, url) = serve(&repo, true).await;
    let dir = tempfile::tempdir().unwrap();
    let mirrors = Mirrors::new(dir.path(), Credentials::default());
    mirrors
        .fetch(&url, "main", Some(&shas[1]), TIMEOUT)
        .await
        .unwrap();
    mirrors
        .fetch(&url, "main", Some(&shas[5]), TIMEOUT)
        .await
        .unwrap();
    let known = vec![shas[1].clone()];
    let walked = mirrors
        .commits(&url, &shas[5], known.clone(), 100)
        .await
        .unwrap();
    assert_eq!(walked.len(), 1, "{walked:?}");
    assert_eq!(walked[0].sha, shas[5]);
    assert_eq!(
        walked[0].parents, None,
        "the mirror's edge: parents not known"
    );

    assert!(mirrors
        .deepen(&url, "main", &shas[5], 100, TIMEOUT)
        .await
        .unwrap());
    let walked = mirrors.commits(&url, &shas[5], known, 100).await.unwrap();
    let walked: Vec<(&str, Option<Vec<String>>)> = walked
        .iter()
        .map(|c| (c.subject.as_str(), c.parents.clone()))
        .collect();
    assert_eq!(
        walked,
        [
            ("c5", Some(vec![shas[4].clone()])),
            ("c4", Some(vec![shas[3].clone()])),
            ("c3", Some(vec![shas[2].clone()])),
            ("c2", Some(vec![shas[1].clone()])),
        ],
        "down to the known commit, every parent known"
    );
    assert!(
        !mirrors
            .deepen(&url, "main", &shas[5], 100, TIMEOUT)
            .await
            .unwrap(),
        "a mirror with the whole history is not shallow"
    );
}

#[tokio::test]
async fn a_file_of_the_commit_over_the_limit_is_refused_by_its_size_alone() {
    let repo = Repo::new();
    let big = "x".repeat(slipway_runner::spec::MAX_FILE_BYTES as usize + 1);
    let sha = repo.commit(&[("slipway.yml", "stack: s\n"), ("big.yml", &big)], "big");
    let (_daemon, url) = serve(&repo, true).await;
    let dir = tempfile::tempdir().unwrap();
    let mirrors = Mirrors::new(dir.path(), Credentials::default());
    let fetched = mirrors
        .fetch(&url, "main", Some(&sha), TIMEOUT)
        .await
        .unwrap();
    let files = CommitFiles::open(&fetched.mirror, &sha).unwrap();
    let err = files.read("big.yml").unwrap_err();
    assert!(
        err.to_string()
            .contains("more than the 4 MiB a file the spec reads may be"),
        "{err}"
    );
    assert_eq!(
        read(&fetched.mirror, &sha, "slipway.yml").as_deref(),
        Some("stack: s\n")
    );
}
