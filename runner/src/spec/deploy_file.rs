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
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

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
}

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
        Some(Text(t)) => {
            let nanos = super::units::parse_duration(t)
                .map_err(|m| source.error(PathError::new(&env_key.key("timeout"), m)))?;
            if nanos <= 0 {
                return Err(source.error(PathError::new(
                    &env_key.key("timeout"),
                    "must be longer than zero",
                )));
            }
            Duration::from_nanos(nanos as u64)
        }
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
        warnings,
    })
}

/// What `docker stack deploy` accepts as a namespace, and what is safe in
/// `<stack>_<name>` object names.
fn valid_stack_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}
