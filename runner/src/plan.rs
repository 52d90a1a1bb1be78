//! What a deployment creates on the swarm: the result of reading the spec and
//! its Compose files, before anything touches an engine. `slipway-runner plan`
//! prints it as JSON; `swarm::apply` makes it real.

use std::collections::BTreeMap;
use std::time::Duration;

use bollard::models::ServiceSpec;
use serde::Serialize;

use crate::registry::Credential;

/// Labels every object of a stack carries, as `docker stack deploy` sets them.
pub const STACK_NAMESPACE_LABEL: &str = "com.docker.stack.namespace";
/// The image as written in Compose, before any digest was resolved.
pub const STACK_IMAGE_LABEL: &str = "com.docker.stack.image";
pub const APPLICATION_LABEL: &str = "io.slipway.application";
pub const ENVIRONMENT_LABEL: &str = "io.slipway.environment";
pub const DEPLOYMENT_LABEL: &str = "io.slipway.deployment";
/// On the swarm job of a task (`tasks:`): the task's name.
pub const TASK_LABEL: &str = "io.slipway.task";

#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    /// The swarm stack namespace.
    pub stack: String,
    pub services: Vec<ServicePlan>,
    pub networks: Vec<NetworkPlan>,
    pub configs: Vec<DataPlan>,
    pub secrets: Vec<DataPlan>,
    /// Keys swarm ignores (`build`, ...) and other things worth telling.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// How long the rollout may take before the deployment fails.
    #[serde(skip)]
    pub timeout: Duration,
    /// What a failed rollout rolls back (`rollback:`).
    #[serde(skip)]
    pub rollback: Rollback,
    /// The environment's URL from the spec, for the deployment status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// When tags are resolved to digests (`resolve_image:`).
    #[serde(skip)]
    pub resolve_image: ResolveImage,
    /// Whether services are created and updated with the credentials of
    /// their image's registry, so every node can pull (`with_registry_auth:`).
    #[serde(skip)]
    pub with_registry_auth: bool,
    /// For a rollback: the images the restored release ran, pinned to its
    /// digests instead of what the tags point at now.
    #[serde(skip)]
    pub restore: Option<Restore>,
    /// Paths whose changes auto-deploy the environment (`watch:`).
    #[serde(skip)]
    pub watch: Vec<String>,
    /// One-off jobs (`tasks:`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tasks: Vec<TaskPlan>,
}

impl Plan {
    /// The task of the spec named `name`, or an error that lists those it has.
    pub fn task(&self, name: &str) -> Result<&TaskPlan, String> {
        self.tasks.iter().find(|t| t.name == name).ok_or_else(|| {
            let names: Vec<&str> = self.tasks.iter().map(|t| t.name.as_str()).collect();
            if names.is_empty() {
                format!("the spec has no task {name:?}: it declares no `tasks:`")
            } else {
                format!(
                    "the spec has no task {name:?} (its tasks: {})",
                    names.join(", ")
                )
            }
        })
    }

    /// Keeps what running task `name` alone needs: the task, and the service
    /// whose image it runs, if it borrows one.
    pub fn only_task(&mut self, name: &str) -> Result<(), String> {
        let service = self.task(name)?.service.clone();
        self.tasks.retain(|t| t.name == name);
        self.services
            .retain(|s| service.as_deref() == Some(s.name.as_str()));
        Ok(())
    }

    /// The services and the tasks with an image of their own: what
    /// `swarm::resolve` pins to digests.
    pub fn images_mut<'a>(
        services: &'a mut [ServicePlan],
        tasks: &'a mut [TaskPlan],
    ) -> impl Iterator<Item = &'a mut ServicePlan> {
        services.iter_mut().chain(
            tasks
                .iter_mut()
                .filter(|t| t.service.is_none())
                .map(|t| &mut t.job),
        )
    }

    /// Gives each task that runs a service's image that service's image as
    /// resolved, and its registry credentials.
    pub fn pin_tasks(&mut self) {
        for task in &mut self.tasks {
            let Some(service) = task
                .service
                .as_ref()
                .and_then(|name| self.services.iter().find(|s| &s.name == name))
            else {
                continue;
            };
            let image = service.image().map(str::to_owned);
            if let Some(container) = task
                .job
                .spec
                .task_template
                .as_mut()
                .and_then(|t| t.container_spec.as_mut())
            {
                container.image = image;
            }
            task.job.credentials = service.credentials.clone();
        }
    }
}

/// A task of the spec: a swarm job, `<stack>_<task>`, one task, no restart.
#[derive(Clone, Debug, Serialize)]
pub struct TaskPlan {
    /// As the spec names it (`migrate`).
    pub name: String,
    pub when: TaskWhen,
    /// How long it may run before it fails.
    #[serde(serialize_with = "serialize_secs")]
    pub timeout: Duration,
    /// The swarm service whose image, environment, networks, configs and
    /// secrets it has (`service:`), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    pub job: ServicePlan,
}

/// When a task runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskWhen {
    /// Before the rollout (`before: deploy`): a failure stops it before any
    /// service changed.
    Before,
    /// After every service converged (`after: deploy`): a failure rolls the
    /// stack back.
    After,
    /// Only when a deployment names it.
    Alone,
}

fn serialize_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_secs())
}

/// What a failed rollout rolls back (`rollback:` in `slipway.yml`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Rollback {
    /// Every service the deployment changed: the stack is one unit (`true`,
    /// the default, or `stack`).
    #[default]
    Stack,
    /// Only the service that failed; the others keep the new spec.
    Service,
    /// Nothing: what swarm's own `failure_action` does is all (`false`).
    Off,
}

/// The release a rollback restores, or a promotion deploys: per service
/// (its full name in that release's stack), the image as written and the
/// digest that release ran.
#[derive(Clone, Debug, Default)]
pub struct Restore {
    /// The release's deployment (`web#41`).
    pub release: String,
    pub digests: BTreeMap<String, (String, String)>,
}

impl Restore {
    /// What the release ran for service `name` (`<stack>_<service>`) of a
    /// plan for `stack`: the same service, or for a release of another
    /// environment (another stack) the one service of the same Compose name.
    pub fn of(&self, stack: &str, name: &str) -> Option<&(String, String)> {
        if let Some(found) = self.digests.get(name) {
            return Some(found);
        }
        let short = name.strip_prefix(&format!("{stack}_"))?;
        let suffix = format!("_{short}");
        let mut matches = self
            .digests
            .iter()
            .filter(|(other, _)| other.ends_with(&suffix));
        match (matches.next(), matches.next()) {
            (Some((_, found)), None) => Some(found),
            _ => None,
        }
    }
}

/// When an image's tag is resolved to a digest, as `docker stack deploy
/// --resolve-image` has it (`resolve_image:` in `slipway.yml`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ResolveImage {
    /// Every deployment asks the registry: a tag that moved rolls out.
    #[default]
    Always,
    /// Only for a new service, or one whose image (as written) changed; an
    /// unchanged one keeps the digest it runs.
    Changed,
    /// Never: an unchanged image keeps what it runs, a new or changed one is
    /// deployed as written.
    Never,
}

impl ResolveImage {
    pub const NAMES: [&'static str; 3] = ["always", "changed", "never"];

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "always" => Some(Self::Always),
            "changed" => Some(Self::Changed),
            "never" => Some(Self::Never),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Always => "always",
            Self::Changed => "changed",
            Self::Never => "never",
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct ServicePlan {
    /// The swarm service name, `<stack>_<service>`.
    pub name: String,
    /// Exactly what the Engine API receives, with its own field names.
    #[serde(serialize_with = "serialize_engine_json")]
    pub spec: ServiceSpec,
    /// The registry credentials the service is created or updated with
    /// (set by `swarm::resolve`): every node that runs a task pulls with them.
    #[serde(skip)]
    pub credentials: Option<Credential>,
}

impl ServicePlan {
    /// The image as written in Compose, before any digest was resolved.
    pub fn written_image(&self) -> String {
        self.spec
            .labels
            .as_ref()
            .and_then(|l| l.get(STACK_IMAGE_LABEL))
            .cloned()
            .or_else(|| self.image().map(str::to_owned))
            .unwrap_or_default()
    }

    /// The image its tasks run: pinned to a digest once resolved.
    pub fn image(&self) -> Option<&str> {
        self.spec
            .task_template
            .as_ref()
            .and_then(|t| t.container_spec.as_ref())
            .and_then(|c| c.image.as_deref())
    }
}

/// A `ServiceSpec` as the engine itself writes it (`docker service inspect`
/// shows `Spec` this way).
///
/// bollard names the container health check `HealthCheck`, after the API's
/// swagger file, while the engine reads and writes `Healthcheck` (Go's JSON
/// decoding ignores case, so both are accepted on create and update). The
/// plan prints the engine's spelling so that it compares with `inspect`.
pub fn engine_json(spec: &ServiceSpec) -> serde_json::Value {
    let mut value = serde_json::to_value(spec).expect("a ServiceSpec serializes");
    if let Some(container) = value
        .pointer_mut("/TaskTemplate/ContainerSpec")
        .and_then(|c| c.as_object_mut())
    {
        if let Some(health) = container.remove("HealthCheck") {
            container.insert("Healthcheck".into(), health);
        }
    }
    value
}

fn serialize_engine_json<S: serde::Serializer>(
    spec: &ServiceSpec,
    s: S,
) -> Result<S::Ok, S::Error> {
    engine_json(spec).serialize(s)
}

#[derive(Clone, Debug, Serialize)]
pub struct NetworkPlan {
    /// The swarm network name, `<stack>_<network>` or the external name.
    pub name: String,
    /// Created elsewhere; the deployment only checks it exists.
    pub external: bool,
    pub driver: String,
    pub attachable: bool,
    pub internal: bool,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
}

/// A config or secret version, named by a hash of its content:
/// `<stack>_<name>_<hash>`. Neither `Debug` nor `Serialize` shows the content.
#[derive(Clone, Serialize)]
pub struct DataPlan {
    pub name: String,
    /// The name the Compose file gives it.
    pub compose_name: String,
    /// Created elsewhere (`external: true`); only referenced.
    pub external: bool,
    /// The content; for secrets this is never printed (see `Serialize`).
    #[serde(skip)]
    pub data: Vec<u8>,
    pub labels: BTreeMap<String, String>,
}

impl std::fmt::Debug for DataPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataPlan")
            .field("name", &self.name)
            .field("compose_name", &self.compose_name)
            .field("external", &self.external)
            .field("data", &format_args!("<{} bytes>", self.data.len()))
            .field("labels", &self.labels)
            .finish()
    }
}

/// SHA-256 (hex) of a ServiceSpec as canonical JSON (object keys sorted, no
/// space): two releases whose service has the same hash ran the same spec.
pub fn spec_hash(spec: &ServiceSpec) -> String {
    use sha2::Digest as _;
    let value = serde_json::to_value(spec).unwrap_or(serde_json::Value::Null);
    let mut text = String::new();
    canonical(&value, &mut text);
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

fn canonical(value: &serde_json::Value, out: &mut String) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                canonical(&map[key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use bollard::models::ServiceSpec;

    use super::spec_hash;

    fn spec(labels: &[(&str, &str)]) -> ServiceSpec {
        ServiceSpec {
            name: Some("shop_web".into()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<HashMap<_, _>>(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn a_spec_hash_is_the_same_for_the_same_spec_whatever_the_order_of_its_maps() {
        let many: Vec<(String, String)> = (0..50)
            .map(|i| (format!("k{i}"), format!("v{i}")))
            .collect();
        let forward: Vec<(&str, &str)> =
            many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let backward: Vec<(&str, &str)> = forward.iter().rev().copied().collect();
        let hash = spec_hash(&spec(&forward));
        assert_eq!(hash.len(), 64);
        assert_eq!(hash, spec_hash(&spec(&backward)));
        let mut changed = forward.clone();
        changed[7].1 = "other";
        assert_ne!(hash, spec_hash(&spec(&changed)));
    }
}
