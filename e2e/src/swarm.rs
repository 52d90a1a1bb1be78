//! The swarm as `docker` shows it, and a guard that removes a test's stack.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::wait;

/// A stack name no other test uses: `e2e<micros><test>`.
pub fn stack_name(test: &str) -> String {
    let n = chrono::Utc::now().timestamp_micros() % 10_000_000;
    let test: String = test
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(12)
        .collect();
    format!("e2e{n}{test}")
}

/// Removes the stack when dropped, even when the test failed.
pub struct StackGuard(pub String);

impl Drop for StackGuard {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["stack", "rm", &self.0])
            .output();
    }
}

/// Fails loudly when the engine is not a swarm manager.
pub fn require_swarm() {
    let out = Command::new("docker")
        .args(["info", "--format", "{{.Swarm.ControlAvailable}}"])
        .output();
    let ok = matches!(&out, Ok(o) if String::from_utf8_lossy(&o.stdout).trim() == "true");
    assert!(
        ok,
        "these tests need a Docker engine that is a swarm manager, with the images of \
         scripts/test-env.sh; run scripts/test.sh (or scripts/test-env.sh) first: {out:?}"
    );
}

/// `docker service inspect NAME`, or `None` when there is no such service.
pub fn inspect_service(name: &str) -> Option<Value> {
    let out = Command::new("docker")
        .args(["service", "inspect", name])
        .output()
        .expect("docker runs");
    if !out.status.success() {
        return None;
    }
    let list: Value = serde_json::from_slice(&out.stdout).expect("JSON from docker");
    Some(list[0].clone())
}

/// `(image, current state)` of every task of a service, running or not.
pub fn tasks(name: &str) -> Vec<(String, String, String)> {
    let out = Command::new("docker")
        .args([
            "service",
            "ps",
            name,
            "--no-trunc",
            "--format",
            "{{.Image}}\t{{.DesiredState}}\t{{.CurrentState}}",
        ])
        .output()
        .expect("docker runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let mut parts = line.split('\t');
            Some((
                parts.next()?.to_owned(),
                parts.next()?.to_owned(),
                parts.next()?.to_owned(),
            ))
        })
        .collect()
}

/// Images of the tasks that are running and meant to run.
pub fn running_images(name: &str) -> Vec<String> {
    tasks(name)
        .into_iter()
        .filter(|(_, desired, current)| desired == "Running" && current.starts_with("Running"))
        .map(|(image, _, _)| image)
        .collect()
}

/// The `KEY=value` environment of a service's containers.
pub fn service_env(name: &str) -> Vec<String> {
    let service = inspect_service(name).unwrap_or_else(|| panic!("no service {name}"));
    service["Spec"]["TaskTemplate"]["ContainerSpec"]["Env"]
        .as_array()
        .map(|env| {
            env.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until `name` runs `replicas` tasks of `image` and nothing else.
pub async fn wait_running(name: &str, image: &str, replicas: usize, within: Duration) {
    wait::until(
        &format!("{name} to run {replicas} × {image}"),
        within,
        || async {
            let images = running_images(name);
            if images.len() == replicas && images.iter().all(|i| i == image) {
                Ok(())
            } else {
                Err(format!("{images:?}"))
            }
        },
    )
    .await
}
