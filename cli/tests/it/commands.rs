//! The client commands against a running `up`: tokens and roles, locks,
//! `--output json`, and the API's errors.

use slipway_testkit::swarm::StackGuard;

use crate::harness::{command, unique_name, ExampleRepo, Out, Up};

#[test]
fn token_signs_with_the_data_dirs_secret_and_roles_are_enforced() {
    let up = Up::start(&[]);
    let viewer = Out::from(
        command()
            .args([
                "token",
                "--role",
                "viewer",
                "--subject",
                "ci",
                "--ttl",
                "1h",
            ])
            .arg("--data-dir")
            .arg(up.data_dir.path())
            .output()
            .unwrap(),
    )
    .ok();
    let viewer = viewer.stdout.trim().to_owned();
    assert_eq!(viewer.split('.').count(), 3, "a JWT: {viewer}");

    // A viewer reads, and may not create.
    let mut status = up.command();
    status.env("SLIPWAY_TOKEN", &viewer).arg("status");
    Out::from(status.output().unwrap()).ok();
    let mut create = up.command();
    create
        .env("SLIPWAY_TOKEN", &viewer)
        .args(["app", "create", "nope", "file:///nowhere"]);
    let refused = Out::from(create.output().unwrap()).failed();
    assert!(refused.stderr.contains("FORBIDDEN"), "{refused:#?}");
    assert!(refused.stderr.contains("viewer"), "{refused:#?}");

    // The same as JSON, for scripts.
    let mut create = up.command();
    create.env("SLIPWAY_TOKEN", &viewer).args([
        "--output",
        "json",
        "app",
        "create",
        "nope",
        "file:///nowhere",
    ]);
    let refused = Out::from(create.output().unwrap()).failed();
    let error: serde_json::Value = serde_json::from_str(refused.stderr.trim()).unwrap();
    assert_eq!(error["error"]["code"], "FORBIDDEN");

    // A token signed with another secret is refused.
    let foreign = Out::from(
        command()
            .args(["token", "--role", "admin", "--subject", "eve"])
            .args(["--jwt-secret", "not-the-secret-of-this-slipway"])
            .output()
            .unwrap(),
    )
    .ok();
    let mut status = up.command();
    status
        .env("SLIPWAY_TOKEN", foreign.stdout.trim())
        .arg("status");
    let refused = Out::from(status.output().unwrap()).failed();
    assert!(refused.stderr.contains("UNAUTHENTICATED"), "{refused:#?}");

    // `--output json` of `token`.
    let json = Out::from(
        command()
            .args([
                "-o",
                "json",
                "token",
                "--role",
                "deployer",
                "--subject",
                "bob",
            ])
            .arg("--data-dir")
            .arg(up.data_dir.path())
            .output()
            .unwrap(),
    )
    .ok()
    .json();
    assert_eq!(json["role"], "deployer");
    assert_eq!(json["subject"], "bob");
}

#[test]
fn token_without_a_secret_says_where_to_get_one() {
    let empty = tempfile::tempdir().unwrap();
    let out = Out::from(
        command()
            .args(["token", "--role", "admin", "--subject", "me"])
            .arg("--data-dir")
            .arg(empty.path())
            .output()
            .unwrap(),
    )
    .failed();
    assert!(out.stderr.contains("slipway up"), "{out:#?}");
    assert!(out.stdout.is_empty());
}

#[test]
fn client_commands_without_a_token_or_api_say_so() {
    let out = Out::from(command().arg("status").output().unwrap()).failed();
    assert!(out.stderr.contains("SLIPWAY_TOKEN"), "{out:#?}");
    let out = Out::from(
        command()
            .args(["status", "--api-url", "http://127.0.0.1:9", "--token", "x"])
            .output()
            .unwrap(),
    )
    .failed();
    assert!(out.stderr.contains("cannot reach the API"), "{out:#?}");
}

#[test]
fn environments_lock_and_unlock_with_json_answers() {
    let up = Up::start(&[]);
    let repo = ExampleRepo::new();
    let app = unique_name("locks");
    // The cancel below may come after the runner has begun.
    let _stack = StackGuard::new(format!("{app}-local"));
    let created = up
        .run(&[
            "-o",
            "json",
            "app",
            "create",
            &app,
            repo.path().to_str().unwrap(),
            "--spec-path",
            "examples/shop/slipway.yml",
        ])
        .ok()
        .json();
    assert_eq!(created["name"], app.as_str());
    assert_eq!(created["specPath"], "examples/shop/slipway.yml");

    let env = up
        .run(&[
            "-o",
            "json",
            "env",
            "create",
            &app,
            "local",
            "--auto-deploy-ref",
            "main",
            "--url",
            "http://localhost:8080",
        ])
        .ok()
        .json();
    assert_eq!(env["autoDeployRef"], "main");
    assert_eq!(env["url"], "http://localhost:8080");

    let locked = up
        .run(&[
            "-o",
            "json",
            "env",
            "lock",
            &app,
            "local",
            "--reason",
            "release freeze",
        ])
        .ok()
        .json();
    assert_eq!(locked["lock"]["reason"], "release freeze");
    assert_eq!(locked["lock"]["lockedBy"], "admin");

    // A locked environment refuses deployments, with who and why.
    let refused = up.run(&["deploy", &app, "local", "main"]).failed();
    assert!(refused.stderr.contains("CONFLICT"), "{refused:#?}");
    assert!(refused.stderr.contains("release freeze"), "{refused:#?}");
    let status = up.run(&["status", &app]).ok();
    assert!(
        status.stdout.contains("locked by admin: release freeze"),
        "{status:#?}"
    );
    let status = up.run(&["-o", "json", "status", &app]).ok().json();
    assert_eq!(
        status["applications"][0]["environments"][0]["lock"]["reason"],
        "release freeze"
    );

    let unlocked = up
        .run(&["-o", "json", "env", "unlock", &app, "local"])
        .ok()
        .json();
    assert!(unlocked["lock"].is_null());

    // Queued, then cancelled before it ran: `cancel` and `deployments`.
    let deployed = up
        .run(&["-o", "json", "deploy", &app, "local", "main"])
        .ok()
        .json();
    let id = deployed["id"].as_str().unwrap().to_owned();
    assert_eq!(deployed["name"], format!("{app}#1"));
    let cancelled = up.run(&["-o", "json", "cancel", &id]).ok().json();
    assert!(
        cancelled["status"] == "CANCELLED" || cancelled["cancelRequested"] == true,
        "{cancelled}"
    );
    let history = up.run(&["deployments", &app, "local"]).ok();
    assert!(history.stdout.contains(&format!("{app}#1")), "{history:#?}");

    let unknown = up.run(&["status", "no-such-app"]).failed();
    assert!(unknown.stderr.contains("NOT_FOUND"), "{unknown:#?}");
}

#[test]
fn approvals_show_in_status_and_approve_and_reject_answer_them() {
    let up = Up::start(&[]);
    let repo = ExampleRepo::new();
    let app = unique_name("gates");
    // The approved deployment below runs.
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
    up.run(&["env", "create", &app, "local"]).ok();
    let set = up
        .run(&["-o", "json", "env", "approval", &app, "local", "--required"])
        .ok()
        .json();
    assert_eq!(
        set["approvalPolicy"],
        serde_json::json!({"required": true, "notByCreator": false})
    );

    let waiting = up
        .run(&["-o", "json", "deploy", &app, "local", "main"])
        .ok()
        .json();
    assert_eq!(waiting["status"], "QUEUED");
    assert_eq!(waiting["gate"]["kind"], "APPROVAL");
    let id = waiting["id"].as_str().unwrap().to_owned();
    let status = up.run(&["status", &app]).ok();
    assert!(
        status
            .stdout
            .contains(&format!("{app}#1 ({id}) at APPROVAL")),
        "{status:#?}"
    );
    assert!(
        status.stdout.contains(&format!(
            "{app}#1 ({id}) waits for an approval by a deployer: `slipway approve {id}`"
        )),
        "{status:#?}"
    );

    // `--follow` says what it waits for, then how it ended.
    let mut follow = up
        .command()
        .args(["logs", &id, "--follow"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(follow.stdout.take().unwrap()));
    let first = lines.next().unwrap().unwrap();
    assert_eq!(
        first,
        format!("==> {app}#1 QUEUED: waiting for an approval by a deployer")
    );

    // A rejection needs a comment and ends the deployment with it.
    let refused = up.run(&["reject", &id]).failed();
    assert!(refused.stderr.contains("--comment"), "{refused:#?}");
    let rejected = up.run(&["reject", &id, "--comment", "not today"]).ok();
    let rest: Vec<String> = lines.map(Result::unwrap).collect();
    assert!(
        rest.iter()
            .any(|l| l.contains("rejected by admin: not today")),
        "{rest:?}"
    );
    assert!(
        !follow.wait().unwrap().success(),
        "a rejected deployment did not succeed"
    );
    assert_eq!(
        rejected.stdout.trim(),
        format!("{app}#1 CANCELLED: rejected by admin: not today")
    );

    let second = up
        .run(&["-o", "json", "deploy", &app, "local", "main"])
        .ok()
        .json();
    let id = second["id"].as_str().unwrap().to_owned();
    let approved = up.run(&["approve", &id, "--comment", "looks good"]).ok();
    assert!(
        approved
            .stdout
            .contains(&format!("{app}#2 approved; it goes in its turn")),
        "{approved:#?}"
    );
    let again = up.run(&["approve", &id]).failed();
    assert!(again.stderr.contains("CONFLICT"), "{again:#?}");
}

#[test]
fn freeze_windows_are_added_listed_overridden_and_removed() {
    let up = Up::start(&[]);
    let repo = ExampleRepo::new();
    let app = unique_name("freeze");
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
    up.run(&["env", "create", &app, "local"]).ok();

    // A window in force from every minute on, for an hour: always.
    let added = up
        .run(&[
            "env",
            "freeze",
            &app,
            "local",
            "--cron",
            "* * * * *",
            "--duration",
            "1h",
            "--time-zone",
            "Europe/Berlin",
            "--reason",
            "all hands",
        ])
        .ok();
    assert!(
        added.stdout.contains(
            "from `* * * * *` (Europe/Berlin) for 1h, new deployments wait for its end: all hands; in force now, until"
        ),
        "{added:#?}"
    );
    let windows = up
        .run(&["-o", "json", "env", "freezes", &app, "local"])
        .ok()
        .json();
    let wait_id = windows[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(windows[0]["mode"], "WAIT", "{windows}");
    let listed = up.run(&["env", "freezes", &app, "local"]).ok();
    assert!(
        listed.stdout.contains("ID") && listed.stdout.contains("all hands (admin)"),
        "{listed:#?}"
    );

    let held = up
        .run(&["-o", "json", "deploy", &app, "local", "main"])
        .ok()
        .json();
    assert_eq!(held["gate"]["kind"], "FREEZE", "{held}");
    let id = held["id"].as_str().unwrap().to_owned();
    let refused = up.run(&["override-freeze", &id]).failed();
    assert!(refused.stderr.contains("--reason"), "{refused:#?}");
    let through = up
        .run(&["override-freeze", &id, "--reason", "the fix for the outage"])
        .ok();
    assert!(
        through.stdout.contains(&format!(
            "{app}#1 is through the freeze; it goes in its turn"
        )),
        "{through:#?}"
    );
    up.run(&["cancel", &id]).ok();

    // A refusing window turns a deployment away, unless an admin says why.
    up.run(&["env", "unfreeze", &wait_id]).ok();
    up.run(&[
        "env",
        "freeze",
        &app,
        "local",
        "--cron",
        "* * * * *",
        "--duration",
        "90m",
        "--reason",
        "audit",
        "--refuse",
    ])
    .ok();
    let turned_away = up.run(&["deploy", &app, "local", "main"]).failed();
    assert!(
        turned_away.stderr.contains("CONFLICT") && turned_away.stderr.contains("audit"),
        "{turned_away:#?}"
    );
    let past = up
        .run(&[
            "-o",
            "json",
            "deploy",
            &app,
            "local",
            "main",
            "--override-freeze",
            "security fix",
        ])
        .ok()
        .json();
    assert!(past["gate"].is_null(), "{past}");
    up.run(&["cancel", past["id"].as_str().unwrap()]).ok();
    let windows = up
        .run(&["-o", "json", "env", "freezes", &app, "local"])
        .ok()
        .json();
    assert_eq!(windows.as_array().unwrap().len(), 1, "{windows}");
    assert_eq!(windows[0]["mode"], "REFUSE");
    assert_eq!(windows[0]["durationMinutes"], 90);
}

#[test]
fn required_checks_show_in_status_and_force_is_recorded() {
    let up = Up::start(&[]);
    let repo = ExampleRepo::new();
    let app = unique_name("checks");
    up.run(&[
        "app",
        "create",
        &app,
        repo.path().to_str().unwrap(),
        "--spec-path",
        "examples/shop/slipway.yml",
    ])
    .ok();
    up.run(&["env", "create", &app, "local"]).ok();
    let set = up
        .run(&[
            "-o",
            "json",
            "env",
            "checks",
            &app,
            "local",
            "ci/build",
            "test",
            "--all",
            "--timeout",
            "30",
        ])
        .ok()
        .json();
    assert_eq!(
        set["requiredChecks"],
        serde_json::json!({"names": ["ci/build", "test"], "all": true, "timeoutMinutes": 30})
    );
    let said = up
        .run(&["env", "checks", &app, "local", "test", "--all"])
        .ok();
    assert!(
        said.stdout
            .contains("waits for `test` and every other check to pass on each deployment's commit (for at most 30 minutes)"),
        "{said:#?}"
    );

    let sha = "1a2b3c4d5e6f1a2b3c4d5e6f1a2b3c4d5e6f1a2b";
    let waiting = up
        .run(&["-o", "json", "deploy", &app, "local", "main", "--sha", sha])
        .ok()
        .json();
    assert_eq!(waiting["gate"]["kind"], "CHECKS");
    let id = waiting["id"].as_str().unwrap().to_owned();
    let forced = up
        .run(&[
            "-o", "json", "deploy", &app, "local", "main", "--sha", sha, "--force",
        ])
        .ok()
        .json();
    assert_eq!(
        forced["gate"]["waitingFor"], "test to pass on 1a2b3c4",
        "forced past every check but the named one"
    );
    let forced_id = forced["id"].as_str().unwrap().to_owned();

    let status = up.run(&["status", &app]).ok();
    assert!(
        status.stdout.contains(&format!("{app}#1 ({id}) at CHECKS")),
        "{status:#?}"
    );
    assert!(
        status.stdout.contains(&format!(
            "{app}#1 ({id}) waits for test and every other check to pass on 1a2b3c4; none reported yet; no check reported yet"
        )),
        "{status:#?}"
    );
    assert!(
        status.stdout.contains(&format!(
            "{app}#2 ({forced_id}) waits for test to pass on 1a2b3c4"
        )),
        "{status:#?}"
    );

    // Nothing required any more: new deployments wait for no check.
    let cleared = up.run(&["env", "checks", &app, "local"]).ok();
    assert!(
        cleared
            .stdout
            .contains("takes deployments without waiting for checks"),
        "{cleared:#?}"
    );
    for id in [&id, &forced_id] {
        up.run(&["cancel", id]).ok();
    }
}

#[test]
fn runner_pools_are_set_listed_and_waited_for() {
    let up = Up::start(&[]);
    let repo = ExampleRepo::new();
    let app = unique_name("pools");
    up.run(&[
        "app",
        "create",
        &app,
        repo.path().to_str().unwrap(),
        "--spec-path",
        "examples/shop/slipway.yml",
    ])
    .ok();
    let created = up
        .run(&[
            "-o",
            "json",
            "env",
            "create",
            &app,
            "local",
            "--runner-label",
            "swarm=elsewhere",
        ])
        .ok()
        .json();
    assert_eq!(created["name"], "local", "{created}");

    // `slipway up`'s own runner, labelled `local`, is there.
    let runners = up.run(&["-o", "json", "runners"]).ok().json();
    let own = &runners.as_array().unwrap()[0];
    assert_eq!(own["labels"], serde_json::json!(["local"]), "{runners}");
    assert_eq!(own["health"], "CONNECTED", "{runners}");
    let table = up.run(&["runners"]).ok();
    assert!(
        table.stdout.contains("HEALTH") && table.stdout.contains("connected"),
        "{table:#?}"
    );

    // It may not deploy `local` now: the deployment waits, and says why.
    let queued = up
        .run(&["-o", "json", "deploy", &app, "local", "main"])
        .ok()
        .json();
    let id = queued["id"].as_str().unwrap().to_owned();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let listed = up.run(&["deployments", &app]).ok();
        if listed
            .stdout
            .contains("waiting: no runner with swarm=elsewhere is connected")
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{listed:#?}");
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    up.run(&["cancel", &id]).ok();

    let set = up
        .run(&["env", "runners", &app, "local", "swarm=a", "gpu"])
        .ok();
    assert!(
        set.stdout
            .contains("only runners with swarm=a and gpu may deploy environment local"),
        "{set:#?}"
    );
    let cleared = up.run(&["env", "runners", &app, "local"]).ok();
    assert!(
        cleared
            .stdout
            .contains("any runner may deploy environment local"),
        "{cleared:#?}"
    );
    let refused = up.run(&["env", "runners", &app, "local", "a b"]).failed();
    assert!(refused.stderr.contains("label"), "{refused:#?}");
}
