//! `slipway.yml`: which stack, which Compose files, which variables, per
//! environment. A deployment to an environment the file does not declare is
//! refused, so a typo in an environment name cannot create a new stack.
//!
//! ```yaml
//! stack: shop                       # default: <application>-<environment>
//! compose: docker-compose.yml       # one file or a list, merged in order
//! environments:
//!   production:
//!     compose: [docker-compose.yml, docker-compose.prod.yml]
//!     variables: { REPLICAS: "3" }
//!     url: https://shop.example.com
//!     timeout: 15m                  # default 10m
//!     rollback: true                # stack (= true, the default), service, false
//!     watch: [services/api/**, libs/**]   # pushes that touch none of these deploy nothing
//!   staging:
//!     stack: shop-staging
//!     resolve_image: changed        # always (default), changed, never
//! variables:
//!   TAG: ${SLIPWAY_SHA}
//! with_registry_auth: true          # default true; per environment too
//! tasks:                            # one-off jobs, run as swarm jobs
//!   migrate:
//!     service: web                  # image, environment, networks, secrets of this service
//!     command: [./manage, migrate]
//!     before: deploy                # before the rollout; a failure changes no service
//!     timeout: 10m                  # default 10m
//!   smoke:
//!     image: curlimages/curl        # or an image of its own, on every network of the stack
//!     command: curl -fsS http://web/healthz
//!     after: deploy                 # after convergence; a failure rolls the stack back
//! ```
//!
//! A task with neither `before` nor `after` runs only when a deployment asks
//! for it by name (`createDeployment(task: "migrate")`).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde_norway::Value;

use super::interpolate::Interpolator;
use super::scalar::{Bool, OneOrMany, RollbackSetting, Text};
use super::yaml::{self, KeyPath, PathError, Source};
use super::{normalize_path, Context, Files, SpecError};
use crate::plan::{ResolveImage, Rollback};

/// How long a rollout may take when the spec does not say.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);
/// The Compose file read when the spec names none.
pub const DEFAULT_COMPOSE: &str = "docker-compose.yml";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    stack: Option<Text>,
    compose: Option<OneOrMany>,
    #[serde(default)]
    environments: BTreeMap<String, Option<RawEnvironment>>,
    #[serde(default)]
    variables: BTreeMap<String, Text>,
    resolve_image: Option<Text>,
    with_registry_auth: Option<Bool>,
    #[serde(default)]
    tasks: BTreeMap<String, RawTask>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTask {
    service: Option<Text>,
    image: Option<Text>,
    command: Option<Value>,
    #[serde(default)]
    environment: BTreeMap<String, Option<Text>>,
    before: Option<Text>,
    after: Option<Text>,
    timeout: Option<Text>,
}

/// A task of `slipway.yml`, interpolated.
#[derive(Clone, Debug)]
pub struct TaskSpec {
    pub name: String,
    pub base: TaskBase,
    /// As Compose writes `command`: a list, or a string split like a shell.
    pub command: Option<Value>,
    /// Added to (and overriding) the environment of the base.
    pub environment: BTreeMap<String, Option<Text>>,
    pub when: TaskWhen,
    pub timeout: Duration,
    /// `tasks.<name>`, to place errors found later.
    pub key: KeyPath,
}

/// What a task's job is made from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TaskBase {
    /// A service of the Compose files, by its Compose name.
    Service(String),
    /// An image of its own.
    Image(String),
}

pub use crate::plan::TaskWhen;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawEnvironment {
    stack: Option<Text>,
    compose: Option<OneOrMany>,
    #[serde(default)]
    variables: BTreeMap<String, Text>,
    url: Option<Text>,
    timeout: Option<Text>,
    rollback: Option<RollbackSetting>,
    resolve_image: Option<Text>,
    with_registry_auth: Option<Bool>,
    watch: Option<OneOrMany>,
}

/// `slipway.yml` resolved for one environment.
#[derive(Clone, Debug)]
pub struct DeploySpec {
    /// The file, to place errors that refer back to it.
    pub source: Source,
    /// The swarm stack namespace.
    pub stack: String,
    /// Compose files, repository-relative, in merge order.
    pub compose: Vec<String>,
    /// Where `compose` was set, for "no such file" errors.
    pub compose_key: KeyPath,
    /// Everything interpolation sees: the runner's secrets, the spec's
    /// variables, then the `SLIPWAY_*` values (later ones win).
    pub variables: BTreeMap<String, String>,
    pub url: Option<String>,
    pub timeout: Duration,
    pub rollback: Rollback,
    /// When image tags are resolved to digests.
    pub resolve_image: ResolveImage,
    /// Whether services are sent the registry credentials of their image.
    pub with_registry_auth: bool,
    /// Paths whose changes auto-deploy the environment (globs); every path
    /// when empty.
    pub watch: Vec<String>,
    /// One-off jobs (`tasks:`), by name.
    pub tasks: Vec<TaskSpec>,
    /// Unset variables and the like.
    pub warnings: Vec<String>,
}

/// The `SLIPWAY_*` variables every file can use.
pub fn builtin_variables(ctx: &Context) -> BTreeMap<String, String> {
    let short: String = ctx.sha.chars().take(7).collect();
    [
        ("SLIPWAY_SHA", ctx.sha.clone()),
        ("SLIPWAY_SHORT_SHA", short),
        ("SLIPWAY_REF", ctx.ref_name.clone()),
        ("SLIPWAY_ENVIRONMENT", ctx.environment.clone()),
        ("SLIPWAY_APPLICATION", ctx.application.clone()),
        ("SLIPWAY_DEPLOYMENT", ctx.deployment.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// Reads `slipway.yml` at `path` and resolves it for `ctx.environment`.
pub fn read(files: &dyn Files, path: &str, ctx: &Context) -> Result<DeploySpec, SpecError> {
    let bytes = files
        .read(path)
        .map_err(|e| SpecError::file(path, format!("cannot read the deploy spec: {e}")))?
        .ok_or_else(|| SpecError::file(path, "no deploy spec at this path in the repository"))?;
    let (source, value) = yaml::parse(path, &bytes)?;
    let raw: RawSpec = yaml::typed(value).map_err(|e| source.error(e))?;

    let env_key = KeyPath::default().key("environments").key(&ctx.environment);
    let Some(env) = raw.environments.get(&ctx.environment) else {
        let declared: Vec<&str> = raw.environments.keys().map(String::as_str).collect();
        let message = if declared.is_empty() {
            format!(
                "environment {:?} is not declared: the spec declares no environments",
                ctx.environment
            )
        } else {
            format!(
                "environment {:?} is not declared (declared: {})",
                ctx.environment,
                declared.join(", ")
            )
        };
        return Err(source.error(PathError::new(
            &KeyPath::default().key("environments"),
            message,
        )));
    };
    let env = env.as_ref();
    let empty = RawEnvironment::default();
    let env = env.unwrap_or(&empty);

    // Variables: top-level ones see the built-ins and secrets; an
    // environment's also see the top-level ones, and override them.
    let builtins = builtin_variables(ctx);
    let mut visible: BTreeMap<String, String> = ctx.secrets.clone();
    visible.extend(builtins.clone());
    let mut warnings = Vec::new();
    let mut resolved = BTreeMap::new();
    for (scope, vars) in [
        (KeyPath::default().key("variables"), &raw.variables),
        (env_key.key("variables"), &env.variables),
    ] {
        let mut interp = Interpolator::new(&visible);
        let mut here = BTreeMap::new();
        for (name, Text(value)) in vars {
            let v = interp
                .string(value, &scope.key(name))
                .map_err(|e| source.error(e))?;
            here.insert(name.clone(), v);
        }
        warnings.append(&mut interp.warnings);
        for (k, v) in here {
            visible.insert(k.clone(), v.clone());
            resolved.insert(k, v);
        }
        visible.extend(builtins.clone());
    }
    let mut variables = ctx.secrets.clone();
    variables.extend(resolved);
    variables.extend(builtins);

    let (stack, stack_key) = match (&env.stack, &raw.stack) {
        (Some(Text(s)), _) => (s.clone(), env_key.key("stack")),
        (None, Some(Text(s))) => (s.clone(), KeyPath::default().key("stack")),
        // One stack per environment unless the spec says otherwise: two
        // environments never write the same services.
        (None, None) => (
            format!("{}-{}", ctx.application, ctx.environment),
            KeyPath::default(),
        ),
    };
    if !valid_stack_name(&stack) {
        return Err(source.error(PathError::new(
            &stack_key,
            format!(
                "{stack:?} is not a valid stack name (letters, digits, '_', '-' and '.', starting with a letter or digit)"
            ),
        )));
    }

    let (compose, compose_key) = match (&env.compose, &raw.compose) {
        (Some(OneOrMany(c)), _) => (c.clone(), env_key.key("compose")),
        (None, Some(OneOrMany(c))) => (c.clone(), KeyPath::default().key("compose")),
        (None, None) => (vec![DEFAULT_COMPOSE.to_owned()], KeyPath::default()),
    };
    if compose.is_empty() {
        return Err(source.error(PathError::new(&compose_key, "names no Compose file")));
    }
    let compose = compose.iter().map(|c| normalize_path(c)).collect();

    let timeout = match &env.timeout {
        None => DEFAULT_TIMEOUT,
        Some(Text(t)) => duration(t, &env_key.key("timeout")).map_err(|e| source.error(e))?,
    };

    let url = match &env.url {
        Some(Text(u)) => {
            let mut interp = Interpolator::new(&variables);
            let url = interp
                .string(u, &env_key.key("url"))
                .map_err(|e| source.error(e))?;
            warnings.append(&mut interp.warnings);
            Some(url)
        }
        None => None,
    };

    // An environment's setting wins over the top-level one.
    let resolve_image = match (&env.resolve_image, &raw.resolve_image) {
        (Some(Text(mode)), _) => Some((mode, env_key.key("resolve_image"))),
        (None, Some(Text(mode))) => Some((mode, KeyPath::default().key("resolve_image"))),
        (None, None) => None,
    };
    let resolve_image = match resolve_image {
        None => ResolveImage::default(),
        Some((mode, key)) => ResolveImage::parse(mode).ok_or_else(|| {
            source.error(PathError::new(
                &key,
                format!(
                    "unknown mode {mode:?} (one of {})",
                    ResolveImage::NAMES.join(", ")
                ),
            ))
        })?,
    };
    let with_registry_auth = env
        .with_registry_auth
        .or(raw.with_registry_auth)
        .map(|Bool(b)| b)
        .unwrap_or(true);

    let mut tasks = Vec::new();
    for (name, raw) in raw.tasks {
        let task = task(&name, raw, &variables, &mut warnings).map_err(|e| source.error(e))?;
        tasks.push(task);
    }

    Ok(DeploySpec {
        source,
        stack,
        compose,
        compose_key,
        variables,
        url,
        timeout,
        rollback: env.rollback.map(|r| r.0).unwrap_or_default(),
        resolve_image,
        with_registry_auth,
        watch: env.watch.clone().map(|w| w.0).unwrap_or_default(),
        tasks,
        warnings,
    })
}

/// `10m`, `90s`: a duration longer than zero.
fn duration(text: &str, key: &KeyPath) -> Result<Duration, PathError> {
    let nanos = super::units::parse_duration(text).map_err(|m| PathError::new(key, m))?;
    if nanos <= 0 {
        return Err(PathError::new(key, "must be longer than zero"));
    }
    Ok(Duration::from_nanos(nanos as u64))
}

/// One task of `tasks:`, checked and interpolated with the spec's variables.
fn task(
    name: &str,
    raw: RawTask,
    variables: &BTreeMap<String, String>,
    warnings: &mut Vec<String>,
) -> Result<TaskSpec, PathError> {
    let key = KeyPath::default().key("tasks").key(name);
    if !valid_task_name(name) {
        return Err(PathError::new(
            &key,
            format!(
                "{name:?} is not a valid task name (lowercase letters, digits, '-' and '_', \
                 starting with a letter or digit, at most 63)"
            ),
        ));
    }
    let mut interp = Interpolator::new(variables);
    let base =
        match (raw.service, raw.image) {
            (Some(Text(service)), None) => TaskBase::Service(service),
            (None, Some(Text(image))) => TaskBase::Image(interp.string(&image, &key.key("image"))?),
            (Some(_), Some(_)) => {
                return Err(PathError::new(
                    &key,
                    "names both `service` and `image`: a task runs the image of a service, or an \
                 image of its own",
                ))
            }
            (None, None) => return Err(PathError::new(
                &key,
                "names neither `service` (run with a service's image, environment, networks and \
                 secrets) nor `image`",
            )),
        };
    let mut command = raw.command;
    if let Some(command) = &mut command {
        interp.value(command, &key.key("command"))?;
    }
    let mut environment = BTreeMap::new();
    for (var, value) in raw.environment {
        let value = match value {
            Some(Text(v)) => Some(Text(interp.string(&v, &key.key("environment").key(&var))?)),
            None => None,
        };
        environment.insert(var, value);
    }
    warnings.append(&mut interp.warnings);
    let when = match (raw.before, raw.after) {
        (None, None) => TaskWhen::Alone,
        (Some(Text(on)), None) if on == "deploy" => TaskWhen::Before,
        (None, Some(Text(on))) if on == "deploy" => TaskWhen::After,
        (Some(_), Some(_)) => {
            return Err(PathError::new(
                &key,
                "has both `before` and `after`: a task runs once, before or after the rollout",
            ))
        }
        (Some(Text(on)), None) | (None, Some(Text(on))) => {
            return Err(PathError::new(
                &key,
                format!("runs before or after `deploy` (the rollout), not {on:?}"),
            ));
        }
    };
    let timeout = match &raw.timeout {
        None => DEFAULT_TIMEOUT,
        Some(Text(t)) => duration(t, &key.key("timeout"))?,
    };
    Ok(TaskSpec {
        name: name.to_owned(),
        base,
        command,
        environment,
        when,
        timeout,
        key,
    })
}

/// What a deployment may name as its task (the API checks the same): it
/// ends a swarm service name, `<stack>_<task>`.
fn valid_task_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 63
        && matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-'))
}

/// What `docker stack deploy` accepts as a namespace, and what is safe in
/// `<stack>_<name>` object names.
fn valid_stack_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}
