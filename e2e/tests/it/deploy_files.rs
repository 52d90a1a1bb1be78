//! `deploy/`: the files that run Slipway on a swarm stay valid — for the
//! runner that deploys Slipway's own upgrades (`slipway-runner plan`) and for
//! `docker stack deploy` (`docker stack config`).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use slipway_e2e::bins;

const IMAGE_REPOSITORY: &str = "registry.example.com/slipway";
const PUBLIC_URL: &str = "https://slipway.example.com";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_owned()
}

fn git(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git runs")
}

/// `slipway-runner plan` of `deploy/slipway.yml` in `repo` at `reference`,
/// with the runner secrets file the deployment would have.
fn plan(repo: &Path, reference: &str, secrets: &Path) -> Value {
    let out = Command::new(bins::path("slipway-runner"))
        .args(["plan", "--repo"])
        .arg(repo)
        .args(["--ref", reference, "--environment", "production"])
        .args([
            "--application",
            "slipway",
            "--spec-path",
            "deploy/slipway.yml",
        ])
        .arg("--secrets-file")
        .arg(secrets)
        .output()
        .expect("slipway-runner plan runs");
    assert!(
        out.status.success(),
        "slipway-runner plan of deploy/slipway.yml in {} at {reference}: {}",
        repo.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("a JSON plan")
}

fn service<'a>(plan: &'a Value, name: &str) -> &'a Value {
    plan["services"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == name))
        .map(|s| &s["spec"])
        .unwrap_or_else(|| panic!("no service {name} in {plan:#}"))
}

/// What the plan of Slipway's own stack must hold.
fn check(plan: &Value, sha: &str) {
    assert_eq!(plan["stack"], "slipway");
    let mut names: Vec<&str> = plan["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "slipway_api",
            "slipway_postgres",
            "slipway_provider",
            "slipway_runner"
        ]
    );
    assert!(plan.get("warnings").is_none(), "{}", plan["warnings"]);
    let image = format!("{IMAGE_REPOSITORY}:{sha}");
    for name in ["slipway_api", "slipway_provider", "slipway_runner"] {
        let container = &service(plan, name)["TaskTemplate"]["ContainerSpec"];
        assert_eq!(container["Image"], image.as_str(), "{name}");
    }

    // The runner: on a manager, with the Docker socket, never two at once.
    let runner = service(plan, "slipway_runner");
    assert_eq!(
        runner["TaskTemplate"]["Placement"]["Constraints"],
        serde_json::json!(["node.role == manager"])
    );
    let mounts = runner["TaskTemplate"]["ContainerSpec"]["Mounts"].to_string();
    assert!(
        mounts.contains(
            r#""Source":"/var/run/docker.sock","Target":"/var/run/docker.sock","Type":"bind""#
        ),
        "{mounts}"
    );
    assert_eq!(runner["UpdateConfig"]["Order"], "stop-first");
    let env = runner["TaskTemplate"]["ContainerSpec"]["Env"].to_string();
    assert!(env.contains("SLIPWAY_API_URL=http://api:8700"), "{env}");

    // Credentials are swarm secrets, never values in the stack.
    let secrets: Vec<&str> = plan["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            assert_eq!(s["external"], true, "{s}");
            s["name"].as_str().unwrap()
        })
        .collect();
    for secret in [
        "slipway_jwt_secret",
        "slipway_db_password",
        "slipway_runner_token",
        "slipway_provider_token",
    ] {
        assert!(secrets.contains(&secret), "{secret} in {secrets:?}");
    }
    let api = service(plan, "slipway_api")["TaskTemplate"]["ContainerSpec"].to_string();
    assert!(
        api.contains("SLIPWAY_JWT_SECRET_FILE=/run/secrets/slipway_jwt_secret"),
        "{api}"
    );
    assert!(api.contains("/run/secrets/slipway_db_password"), "{api}");
    assert!(
        api.contains(&format!("SLIPWAY_PUBLIC_URL={PUBLIC_URL}")),
        "{api}"
    );
    let postgres = service(plan, "slipway_postgres")["TaskTemplate"]["ContainerSpec"].to_string();
    assert!(
        postgres.contains("POSTGRES_PASSWORD_FILE=/run/secrets/slipway_db_password"),
        "{postgres}"
    );
}

#[test]
fn slipway_deploys_its_own_stack_from_deploy_slipway_yml() {
    let secrets = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        secrets.path(),
        format!("SLIPWAY_IMAGE_REPOSITORY={IMAGE_REPOSITORY}\nSLIPWAY_PUBLIC_URL={PUBLIC_URL}\n"),
    )
    .unwrap();

    // The working tree's deploy/, committed in a scratch repository: what
    // is being edited is checked, committed or not.
    let scratch = tempfile::tempdir().unwrap();
    let target = scratch.path().join("deploy");
    std::fs::create_dir_all(&target).unwrap();
    for entry in std::fs::read_dir(workspace().join("deploy")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), target.join(entry.file_name())).unwrap();
    }
    for args in [
        &["init", "-q", "-b", "main"][..],
        &["add", "-A"],
        &[
            "-c",
            "user.email=e2e@slipway.invalid",
            "-c",
            "user.name=e2e",
            "commit",
            "-q",
            "-m",
            "deploy/",
        ],
    ] {
        let out = git(scratch.path(), args);
        assert!(out.status.success(), "git {args:?}: {out:?}");
    }
    let sha = String::from_utf8(git(scratch.path(), &["rev-parse", "HEAD"]).stdout).unwrap();
    check(&plan(scratch.path(), "HEAD", secrets.path()), sha.trim());

    // This repository at HEAD, as the runner would fetch it (in CI, a fresh
    // clone: HEAD has deploy/). Skipped only before deploy/ was first committed.
    let root = workspace();
    if git(&root, &["cat-file", "-e", "HEAD:deploy/slipway.yml"])
        .status
        .success()
    {
        let head = String::from_utf8(git(&root, &["rev-parse", "HEAD"]).stdout).unwrap();
        check(&plan(&root, "HEAD", secrets.path()), head.trim());
    } else {
        eprintln!("HEAD has no deploy/slipway.yml yet: checked the working tree's only");
    }
}

#[test]
fn docker_stack_deploy_accepts_deploy_stack_yml() {
    let out = Command::new("docker")
        .args(["stack", "config", "-c"])
        .arg(workspace().join("deploy/stack.yml"))
        .env("SLIPWAY_IMAGE", format!("{IMAGE_REPOSITORY}:1"))
        .env("SLIPWAY_PUBLIC_URL", PUBLIC_URL)
        .output()
        .expect("the docker CLI runs");
    assert!(
        out.status.success(),
        "docker stack config -c deploy/stack.yml: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config = String::from_utf8_lossy(&out.stdout);
    assert!(config.contains("node.role == manager"), "{config}");

    // Without the image, it says what to set instead of deploying nothing.
    let out = Command::new("docker")
        .args(["stack", "config", "-c"])
        .arg(workspace().join("deploy/stack.yml"))
        .env_remove("SLIPWAY_IMAGE")
        .env("SLIPWAY_PUBLIC_URL", PUBLIC_URL)
        .output()
        .expect("the docker CLI runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("SLIPWAY_IMAGE"));
}
