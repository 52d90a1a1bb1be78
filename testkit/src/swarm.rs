//! The local Docker engine in swarm mode as `docker` shows it, and a guard
//! that removes what a test put on it. Tests that need the swarm fail loudly
//! when it is missing.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::wait;

/// Connects to the local engine, failing loudly when it is missing or not a
/// swarm manager.
#[cfg(feature = "runner")]
pub async fn engine() -> slipway_runner::swarm::Engine {
    let engine = slipway_runner::swarm::Engine::connect(None)
        .await
        .unwrap_or_else(|err| {
            panic!(
                "these tests need a Docker engine in swarm mode ({err}); run scripts/test.sh, \
                 which starts one"
            )
        });
    engine
        .check_manager()
        .await
        .unwrap_or_else(|err| panic!("{err}; run scripts/test.sh"));
    engine
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

/// A stack name no other test uses: `t<micros><test>`.
pub fn stack_name(test: &str) -> String {
    let n = chrono::Utc::now().timestamp_micros() % 10_000_000;
    let test: String = test
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(12)
        .collect();
    format!("t{n}{test}")
}

/// Removes a stack (and networks made for it) when dropped, so a failed test
/// leaves nothing behind.
pub struct StackGuard {
    stack: String,
    networks: Vec<String>,
}

impl StackGuard {
    pub fn new(stack: impl Into<String>) -> StackGuard {
        StackGuard {
            stack: stack.into(),
            networks: Vec::new(),
        }
    }

    /// Also removes `networks` once the stack has let go of them.
    pub fn with_networks(mut self, networks: impl IntoIterator<Item = String>) -> StackGuard {
        self.networks.extend(networks);
        self
    }
}

impl Drop for StackGuard {
    fn drop(&mut self) {
        let _ = docker_quietly(&["stack", "rm", &self.stack]);
        // Services of other stacks never use these; they go once the stack's
        // tasks have let go of them.
        for network in &self.networks {
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline && !docker_quietly(&["network", "rm", network]) {
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }
}

/// Runs `docker args` with its output discarded; whether it succeeded.
fn docker_quietly(args: &[&str]) -> bool {
    Command::new("docker")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// `docker service inspect NAME`, or `None` when there is no such service.
pub fn inspect_service(name: &str) -> Option<Value> {
    let out = Command::new("docker")
        .args(["service", "inspect", name])
        .output()
        .expect("the docker CLI runs");
    if !out.status.success() {
        return None;
    }
    let list: Value = serde_json::from_slice(&out.stdout).expect("JSON from docker");
    Some(list[0].clone())
}

/// `(image, desired state, current state)` of every task of a service,
/// running or not.
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
        .expect("the docker CLI runs");
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
