//! `slipway up` itself: the engine check, the data directory, the banner,
//! and a graceful stop.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt as _;

use crate::harness::{command, Up};

#[test]
fn up_without_an_engine_says_how_to_fix_it() {
    let data = tempfile::tempdir().unwrap();
    let out = crate::harness::Out::from(
        command()
            .args([
                "up",
                "--listen",
                "127.0.0.1:0",
                "--hooks-listen",
                "127.0.0.1:0",
            ])
            .arg("--data-dir")
            .arg(data.path())
            .args(["--docker-host", "unix:///nonexistent/docker.sock"])
            .output()
            .unwrap(),
    )
    .failed();
    assert!(
        out.stderr.contains("unix:///nonexistent/docker.sock"),
        "{out:#?}"
    );
    assert!(out.stderr.contains("cannot be reached"), "{out:#?}");
    assert!(out.stderr.contains("docker swarm init"), "{out:#?}");
    assert!(
        out.stderr.contains("Start Docker"),
        "dockerd is installed: {out:#?}"
    );
    assert!(out.stdout.is_empty(), "nothing is served: {out:#?}");
    // The engine is checked before anything else is made.
    assert!(!data.path().join("jwt-secret").exists());
}

#[test]
fn up_where_docker_is_not_installed_says_which_command_sets_it_up() {
    let data = tempfile::tempdir().unwrap();
    let out = crate::harness::Out::from(
        command()
            .args([
                "up",
                "--listen",
                "127.0.0.1:0",
                "--hooks-listen",
                "127.0.0.1:0",
            ])
            .arg("--data-dir")
            .arg(data.path())
            .args(["--docker-host", "unix:///nonexistent/docker.sock"])
            // A machine where no `dockerd` is installed.
            .env("PATH", data.path())
            .output()
            .unwrap(),
    )
    .failed();
    assert!(out.stderr.contains("Docker is not installed"), "{out:#?}");
    assert!(out.stderr.contains("scripts/start.sh"), "{out:#?}");
    assert!(out.stderr.contains("apt-get install docker.io"), "{out:#?}");
    assert!(out.stdout.is_empty(), "nothing is served: {out:#?}");
}

#[test]
fn up_with_a_registry_auth_file_that_is_not_a_docker_config_names_it_but_not_its_content() {
    slipway_testkit::swarm::require_swarm();
    let dir = tempfile::tempdir().unwrap();
    let auth = dir.path().join("registry-auth.json");
    std::fs::write(&auth, r#"{"auths": "hunter2-secret"}"#).unwrap();
    let data = dir.path().join("data");
    let out = crate::harness::Out::from(
        command()
            .args([
                "up",
                "--listen",
                "127.0.0.1:0",
                "--hooks-listen",
                "127.0.0.1:0",
            ])
            .arg("--data-dir")
            .arg(&data)
            .arg("--registry-auth-file")
            .arg(&auth)
            .output()
            .unwrap(),
    )
    .failed();
    assert!(
        out.stderr.contains(&auth.display().to_string())
            && out.stderr.contains("not a Docker config.json"),
        "{out:#?}"
    );
    assert!(!out.stderr.contains("hunter2"), "{out:#?}");
    assert!(out.stdout.is_empty(), "nothing is served: {out:#?}");
    assert!(!data.exists(), "nothing was made");
}

/// An engine that answers like one outside a swarm (the real engine of the
/// test machine is a manager and cannot be made to stop being one).
fn fake_engine_outside_a_swarm() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            let _ = reader.read_line(&mut request_line);
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                    break;
                }
            }
            let body = if request_line.contains("/version") {
                r#"{"Version":"20.10.24","ApiVersion":"1.41","MinAPIVersion":"1.12","Os":"linux","Arch":"amd64"}"#
            } else if request_line.contains("/info") {
                r#"{"ID":"fake","Swarm":{"NodeID":"","LocalNodeState":"inactive","ControlAvailable":false}}"#
            } else {
                r#"{"message":"page not found"}"#
            };
            let status = if body.contains("not found") {
                "404 Not Found"
            } else {
                "200 OK"
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

#[test]
fn up_on_an_engine_that_is_not_a_swarm_manager_says_docker_swarm_init() {
    let port = fake_engine_outside_a_swarm();
    let data = tempfile::tempdir().unwrap();
    let out = crate::harness::Out::from(
        command()
            .args([
                "up",
                "--listen",
                "127.0.0.1:0",
                "--hooks-listen",
                "127.0.0.1:0",
            ])
            .arg("--data-dir")
            .arg(data.path())
            .args(["--docker-host", &format!("tcp://127.0.0.1:{port}")])
            .output()
            .unwrap(),
    )
    .failed();
    assert!(out.stderr.contains("not a swarm manager"), "{out:#?}");
    assert!(out.stderr.contains("inactive"), "{out:#?}");
    assert!(out.stderr.contains("docker swarm init"), "{out:#?}");
}

#[test]
fn up_keeps_its_secret_prints_urls_and_stops_gracefully() {
    let mut up = Up::start(&[]);
    for part in [
        "/graphql",
        "ws://",
        "/hooks/github",
        "/hooks/gitlab",
        "/hooks/generic",
    ] {
        assert!(up.banner.contains(part), "{part} in {}", up.banner);
    }
    assert!(
        up.banner.contains("JWT secret created now"),
        "{}",
        up.banner
    );
    let secret_path = up.data_dir.path().join("jwt-secret");
    let secret = std::fs::read_to_string(&secret_path).unwrap();
    assert!(secret.len() >= 32);
    let mode = std::fs::metadata(&secret_path)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o777,
        0o600,
        "the secret is readable by its owner only"
    );
    assert!(!up.banner.contains(&secret), "the secret is never printed");
    assert!(up.data_dir.path().join("slipway.db").exists());

    // The admin token works; the API answers.
    up.run(&["status"]).ok();

    let (status, stderr) = up.stop();
    assert!(
        status.is_some_and(|s| s.success()),
        "SIGTERM stops up with success: {status:?}\n{stderr}"
    );
    assert!(stderr.contains("slipway: stopped"), "{stderr}");

    // A second start keeps the secret, so earlier tokens stay valid.
    let old_token = up.token.clone();
    let data_dir = std::mem::replace(&mut up.data_dir, tempfile::tempdir().unwrap());
    let again = Up::start_in(data_dir, &[]);
    assert!(
        again.banner.contains("kept from an earlier start"),
        "{}",
        again.banner
    );
    assert_eq!(std::fs::read_to_string(&secret_path).unwrap(), secret);
    let out = crate::harness::Out::from(
        command()
            .env("SLIPWAY_API_URL", &again.api_url)
            .env("SLIPWAY_TOKEN", &old_token)
            .arg("status")
            .output()
            .unwrap(),
    );
    out.ok();
}
