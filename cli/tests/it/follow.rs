//! `--follow` for deployments that do not succeed, and as JSON lines.

use slipway_testkit::swarm::{inspect_service, StackGuard};

use crate::harness::{unique_name, ExampleRepo, Up};

#[test]
fn follow_exits_non_zero_when_the_deployment_fails() {
    let up = Up::start(&[]);
    let repo = ExampleRepo::new();
    let app = unique_name("broken");
    let _stack = StackGuard::new(format!("{app}-local"));
    up.run(&[
        "app",
        "create",
        &app,
        repo.path().to_str().unwrap(),
        "--spec-path",
        "examples/shop/slipway.yml",
    ])
    .ok();

    // A branch the repository does not have.
    let missing = up
        .run(&["deploy", &app, "local", "no-such-branch", "--follow"])
        .failed();
    assert_eq!(missing.status.code(), Some(1), "{missing:#?}");
    let last = missing.stdout.lines().last().unwrap_or_default().to_owned();
    assert!(last.contains("FAILED"), "{missing:#?}");
    assert!(
        last.contains("no-such-branch"),
        "the reason is shown: {missing:#?}"
    );

    // An environment the spec does not declare: the error names file and key.
    let undeclared = up
        .run(&["deploy", &app, "staging", "main", "--follow"])
        .failed();
    assert!(
        undeclared.stdout.contains("examples/shop/slipway.yml"),
        "{undeclared:#?}"
    );
    assert!(
        undeclared.stdout.contains("not declared"),
        "{undeclared:#?}"
    );
    assert!(inspect_service(&format!("{app}-staging_web")).is_none());

    // `logs --follow` of a finished failure says so by its exit code too.
    let id = up.run(&["-o", "json", "deployments", &app]).ok().json()[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    up.run(&["logs", &id, "--follow"]).failed();
}

#[test]
fn follow_as_json_lines_ends_with_the_final_deployment() {
    let up = Up::start(&[]);
    let repo = ExampleRepo::new();
    let app = unique_name("jsonl");
    let _stack = StackGuard::new(format!("{app}-local"));
    up.run(&[
        "app",
        "create",
        &app,
        repo.path().to_str().unwrap(),
        "--spec-path",
        "examples/shop/slipway.yml",
    ])
    .ok();
    let out = up
        .run(&[
            "--output", "json", "deploy", &app, "local", "nope", "--follow",
        ])
        .failed();
    let lines: Vec<serde_json::Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(
        lines.iter().any(|l| l["log"]["text"].is_string()),
        "log lines: {out:#?}"
    );
    let last = lines.last().unwrap();
    assert_eq!(last["deployment"]["status"], "FAILED", "{out:#?}");
    assert_eq!(last["deployment"]["ref"], "nope");
}

#[test]
fn follow_on_a_terminal_draws_a_progress_line() {
    let up = Up::start(&[]);
    let repo = ExampleRepo::new();
    let app = unique_name("tty");
    let _stack = StackGuard::new(format!("{app}-local"));
    up.run(&[
        "app",
        "create",
        &app,
        repo.path().to_str().unwrap(),
        "--spec-path",
        "examples/shop/slipway.yml",
    ])
    .ok();
    // `script` gives the command a pseudo-terminal as its stdout.
    let command_line = format!(
        "{} deploy {app} local nope --follow",
        crate::harness::SLIPWAY
    );
    let mut script = std::process::Command::new("script");
    script
        .args(["-qec", &command_line, "/dev/null"])
        .env("SLIPWAY_API_URL", &up.api_url)
        .env("SLIPWAY_TOKEN", &up.token)
        .stdin(std::process::Stdio::null());
    let out = crate::harness::Out::from(script.output().expect("`script` (util-linux) runs"));
    assert_eq!(out.status.code(), Some(1), "{out:#?}");
    assert!(
        out.stdout.contains("\r\x1b[2K"),
        "the status line is redrawn: {out:#?}"
    );
    assert!(out.stdout.contains("✘"), "{out:#?}");
    assert!(out.stdout.contains("FAILED"), "{out:#?}");
}
