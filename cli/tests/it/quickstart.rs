//! The README's Quickstart, step by step: `slipway up`, the example created
//! and deployed with `slipway deploy --follow`, running on the swarm.

use std::time::{Duration, Instant};

use slipway_testkit::free_port;
use slipway_testkit::swarm::{inspect_service, running_images, StackGuard};

use crate::harness::{http_get, unique_name, ExampleRepo, Up};

#[test]
fn the_example_deploys_with_follow_and_runs_on_the_swarm() {
    // The example publishes on SHOP_PORT, which the runner's secrets file may set.
    let port = free_port();
    let secrets = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secrets.path(), format!("SHOP_PORT={port}\n")).unwrap();
    let up = Up::start(&["--secrets-file", secrets.path().to_str().unwrap()]);
    assert!(up.banner.contains("/graphql"), "{}", up.banner);
    assert!(up.banner.contains("/hooks/github"), "{}", up.banner);

    let repo = ExampleRepo::new();
    let app = unique_name("shop");
    let _stack = StackGuard::new(format!("{app}-local"));
    let created = up
        .run(&[
            "app",
            "create",
            &app,
            repo.path().to_str().unwrap(),
            "--spec-path",
            "examples/shop/slipway.yml",
        ])
        .ok();
    assert!(
        created
            .stdout
            .contains(&format!("file://{}", repo.path().display())),
        "a local path becomes a file:// URL: {created:#?}"
    );

    let deployed = up.run(&["deploy", &app, "local", "main", "--follow"]).ok();
    // Not a terminal: plain lines, phases and the runner's log.
    assert!(deployed.stdout.contains("UPDATING"), "{deployed:#?}");
    assert!(deployed.stdout.contains("web: converged"), "{deployed:#?}");
    assert!(
        deployed
            .stdout
            .lines()
            .last()
            .unwrap()
            .contains("SUCCEEDED"),
        "{deployed:#?}"
    );

    // On the swarm: the stack is named after the application and the
    // environment.
    let service = inspect_service(&format!("{app}-local_web")).expect("the service exists");
    assert_eq!(
        service["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"],
        "slipway-test/busybox:latest"
    );
    assert_eq!(
        service["Spec"]["Labels"]["com.docker.stack.namespace"],
        format!("{app}-local")
    );
    let env = service["Spec"]["TaskTemplate"]["ContainerSpec"]["Env"].to_string();
    assert!(
        env.contains(&format!("SHOP_RELEASE={}", &repo.head()[..7])),
        "{env}"
    );
    let tasks = running_images(&format!("{app}-local_web"));
    assert_eq!(tasks.len(), 1, "one running task: {tasks:?}");

    // And it serves the page on the port the secrets file chose.
    let deadline = Instant::now() + Duration::from_secs(20);
    let page = loop {
        match http_get(port) {
            Ok(page) if page.contains("Welcome to the shop") => break page,
            other if Instant::now() > deadline => panic!("the shop does not answer: {other:?}"),
            _ => std::thread::sleep(Duration::from_millis(250)),
        }
    };
    assert!(page.starts_with("HTTP/1."), "{page}");

    // `status` shows what runs where.
    let status = up.run(&["status", &app]).ok();
    let mut lines = status.stdout.lines();
    let header = lines.next().unwrap();
    for column in [
        "APPLICATION",
        "ENVIRONMENT",
        "RELEASE",
        "SHA",
        "IN PROGRESS",
        "LOCK",
    ] {
        assert!(header.contains(column), "{status:#?}");
    }
    let row = lines.next().expect("one environment");
    assert!(row.starts_with(&app), "{status:#?}");
    assert!(row.contains("local"), "{status:#?}");
    assert!(row.contains(&format!("{app}#1")), "{status:#?}");
    assert!(row.contains(&repo.head()[..7]), "{status:#?}");

    // `status --nodes` shows every task on its node, as the runner saw the
    // swarm right after the deployment.
    let host = std::process::Command::new("docker")
        .args(["info", "--format", "{{.Name}}"])
        .output()
        .unwrap();
    let host = String::from_utf8_lossy(&host.stdout).trim().to_owned();
    let deadline = Instant::now() + Duration::from_secs(20);
    let nodes = loop {
        let nodes = up.run(&["status", "--nodes", &app]).ok();
        if nodes.stdout.contains("every node runs the release") {
            break nodes;
        }
        assert!(Instant::now() < deadline, "{nodes:#?}");
        std::thread::sleep(Duration::from_millis(250));
    };
    let task = nodes
        .stdout
        .lines()
        .find(|l| l.contains(&format!("{app}-local_web")))
        .unwrap_or_else(|| panic!("{nodes:#?}"));
    assert!(
        task.contains("1/1") && task.contains(&host) && task.contains("running"),
        "{nodes:#?}"
    );

    // `deployments` lists it, `logs` replays its log.
    let history = up.run(&["deployments", &app]).ok();
    assert!(history.stdout.contains("SUCCEEDED"), "{history:#?}");
    let id = up.run(&["-o", "json", "deployments", &app]).ok().json()[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let logs = up.run(&["logs", &id]).ok();
    assert!(logs.stdout.contains("converged"), "{logs:#?}");
    let followed = up.run(&["logs", &id, "--follow"]).ok();
    assert!(followed.stdout.contains("converged"), "{followed:#?}");
}
