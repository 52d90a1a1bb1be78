//! Runner pools: two more `slipway-runner` processes, each registered with
//! the label of its pool. An environment that names a pool's label is
//! deployed by that pool's runner only; one whose pool has no runner
//! connected waits, saying so.

use std::time::Duration;

use serde_json::json;
use slipway_e2e::system::{compose, System, FAST};
use slipway_testkit::process::Process;
use slipway_testkit::swarm::{self, StackGuard};
use slipway_testkit::wait;

const WITHIN: Duration = Duration::from_secs(120);
const IMAGE: &str = "slipway-test/busybox:latest";

async fn wait_listening(runner: &Process) {
    wait::until(
        &format!("{} to listen for deployments", runner.name),
        Duration::from_secs(30),
        || async {
            runner
                .output()
                .contains("listening for deployments")
                .then_some(())
                .ok_or_else(|| "not yet".to_owned())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployments_go_only_to_the_runners_of_their_pool() {
    let blue_stack = swarm::stack_name("poolblue");
    let green_stack = swarm::stack_name("poolgreen");
    let _guards = (
        StackGuard::new(blue_stack.clone()),
        StackGuard::new(green_stack.clone()),
    );
    let system = System::start().await;
    let blue = system.start_runner_with_labels("runner-blue", &["pool=blue"]);
    let green = system.start_runner_with_labels("runner-green", &["pool=green", "region=eu"]);
    wait_listening(&blue).await;
    wait_listening(&green).await;
    let spec = format!(
        "stack: unused\ncompose: docker-compose.yml\nenvironments:\n  blue:\n    stack: {blue_stack}\n    timeout: 2m\n  green:\n    stack: {green_stack}\n    timeout: 2m\n  red:\n    stack: unused-red\n"
    );
    let sha = system.git.commit(
        "main",
        &[
            ("slipway.yml", &spec),
            ("docker-compose.yml", &compose(IMAGE, 1, "pools", FAST)),
        ],
        "three pools",
    );
    for (env, label) in [
        ("blue", "pool=blue"),
        ("green", "pool=green"),
        ("red", "pool=red"),
    ] {
        system
            .api
            .gql(
                "mutation($i: CreateEnvironmentInput!) { createEnvironment(input: $i) { name } }",
                json!({"i": {"application": "shop", "name": env, "runnerLabels": [label]}}),
            )
            .await;
    }
    let deploy = |env: &'static str| {
        let api = system.api.clone();
        let sha = sha.clone();
        async move {
            let data = api
                .gql(
                    "mutation($i: CreateDeploymentInput!) { createDeployment(input: $i) { id } }",
                    json!({"i": {"application": "shop", "environment": env, "ref": sha}}),
                )
                .await;
            data["createDeployment"]["id"].as_str().unwrap().to_owned()
        }
    };
    let red = deploy("red").await;
    let on_blue = deploy("blue").await;
    let on_green = deploy("green").await;
    for (id, runner, stack) in [
        (&on_blue, "runner-blue", &blue_stack),
        (&on_green, "runner-green", &green_stack),
    ] {
        let d = system.api.wait_final(id, WITHIN).await;
        assert_eq!(d["status"], "SUCCEEDED", "{d}");
        assert_eq!(
            d["runner"], runner,
            "only its pool's runner deploys it: {d}"
        );
        swarm::wait_running(&format!("{stack}_web"), IMAGE, 1, WITHIN).await;
    }
    // Nobody of pool red: it waits, and says why.
    let waiting = wait::until("the red deployment to say why it waits", WITHIN, || async {
        let d = system.api.deployment(&red).await;
        let message = d["message"].as_str().unwrap_or_default().to_owned();
        (d["status"] == "QUEUED" && message.contains("pool=red"))
            .then_some(message.clone())
            .ok_or(format!("{} {message}", d["status"]))
    })
    .await;
    assert!(waiting.contains("no runner"), "{waiting}");
    // The unlabelled runner took none of them either.
    for id in [&red, &on_blue, &on_green] {
        assert!(
            system.runner_lines(id).is_empty(),
            "the first runner has no pool label: {id}"
        );
    }
    drop((blue, green));
}
