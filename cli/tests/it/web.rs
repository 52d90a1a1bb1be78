//! The web UI as a person uses it, in a real browser: `slipway up`, the
//! sign-in link it prints, and a click-through in Debian's Chromium driven
//! by Playwright (`tests/browser/click-through.mjs`, installed with `npm ci`
//! from its lock file when missing). The screenshots of every screen are
//! kept in `target/tmp/screenshots`.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use slipway_testkit::free_port;
use slipway_testkit::swarm::StackGuard;

use crate::harness::{unique_name, ExampleRepo, Up};

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// `npm ci` unless the locked Playwright and axe-core are installed already.
fn install(dir: &Path) {
    let lock: Value =
        serde_json::from_slice(&std::fs::read(dir.join("package-lock.json")).unwrap()).unwrap();
    let installed = ["playwright-core", "axe-core"].iter().all(|name| {
        let locked = &lock["packages"][format!("node_modules/{name}")]["version"];
        std::fs::read(dir.join(format!("node_modules/{name}/package.json")))
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
            .is_some_and(|package| package["version"] == *locked)
    });
    if installed {
        return;
    }
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(dir)
        .status()
        .expect("npm runs (scripts/test-env.sh installs Node and npm)");
    assert!(status.success(), "npm ci in {} failed", dir.display());
}

#[test]
fn a_person_signs_in_with_the_printed_link_deploys_locks_and_rolls_back_in_chromium() {
    assert!(
        Path::new("/usr/bin/chromium").exists(),
        "this test drives /usr/bin/chromium (scripts/test-env.sh installs it)"
    );
    let dir = browser_dir();
    install(&dir);

    let port = free_port();
    let secrets = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secrets.path(), format!("SHOP_PORT={port}\n")).unwrap();
    let up = Up::start(&["--secrets-file", secrets.path().to_str().unwrap()]);
    let link = up
        .banner
        .split_whitespace()
        .find(|word| word.contains("/login?code="))
        .unwrap_or_else(|| panic!("up prints a sign-in link:\n{}", up.banner))
        .to_owned();

    let repo = ExampleRepo::new();
    let app = unique_name("web");
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
    up.run(&["deploy", &app, "local", "main", "--follow"]).ok();
    let viewer = up
        .run(&[
            "token",
            "--role",
            "viewer",
            "--subject",
            "vic",
            "--data-dir",
            up.data_dir.path().to_str().unwrap(),
        ])
        .ok()
        .stdout
        .trim()
        .to_owned();

    let screenshots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&screenshots).unwrap();
    let output = Command::new("node")
        .arg("click-through.mjs")
        .current_dir(&dir)
        .env("SLIPWAY_URL", &up.api_url)
        .env("SIGN_IN_LINK", &link)
        .env("APP", &app)
        .env("ENV", "local")
        .env("VIEWER_TOKEN", &viewer)
        .env("SCREENSHOTS", &screenshots)
        .output()
        .expect("node runs (scripts/test-env.sh installs Node and npm)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "the click-through failed:\n{stdout}\n{stderr}"
    );
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("ok ")).count(),
        13,
        "every step ran: {stdout}"
    );
    for screen in [
        "overview",
        "environment",
        "deploy",
        "plan",
        "deployment",
        "locked",
        "rolled-back",
        "runners",
        "setup",
        "sign-in",
        "viewer",
    ] {
        assert!(
            screenshots.join(format!("{screen}.png")).exists(),
            "a screenshot of {screen}"
        );
    }

    // What the browser did, as the API has it: the rollback is the newest
    // release, and auto-deploy is paused with the reason given.
    let releases = up
        .run(&["-o", "json", "releases", &app, "local"])
        .ok()
        .json();
    let newest = &releases[0];
    assert_eq!(newest["task"], "rollback", "{releases:#}");
    assert_eq!(newest["createdBy"], "admin", "{releases:#}");
    let status = up.run(&["status", &app]).ok().stdout;
    assert!(
        status.contains("the new checkout breaks payments"),
        "{status}"
    );
}
