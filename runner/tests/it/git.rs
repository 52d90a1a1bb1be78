//! Fetching commits into mirrors, against real repositories: `file://` and a
//! `git daemon` on 127.0.0.1.

use std::time::Duration;

use slipway_runner::git::{CommitFiles, Credentials, GitError, Mirrors};
use slipway_runner::spec::Files;
use slipway_testkit::free_port;
use slipway_testkit::git::{GitDaemon, Repo};

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
