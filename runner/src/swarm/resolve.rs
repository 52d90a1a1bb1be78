//! Before anything changes: each service's image tag resolved to the digest
//! its registry has for it now, and the registry credentials the service is
//! created or updated with — what `docker stack deploy --with-registry-auth
//! --resolve-image` does on the client side.
//!
//! - The digest comes from the engine's distribution endpoint
//!   (`GET /distribution/{image}/json`), asked with the runner's credentials
//!   for the image's registry. The image is pinned as the CLI pins it,
//!   `name:tag@sha256:...`, and the platforms the registry lists for it
//!   become the task's placement platforms; the image as written stays in
//!   the `com.docker.stack.image` label.
//! - `resolve_image: changed` asks only for new services and for those whose
//!   image (as written) differs from the label of the one deployed;
//!   `never` asks for none. A service whose image is unchanged then keeps the
//!   image and platforms it runs, so it is not updated for nothing.
//! - An image whose name names no registry (Docker Hub by default) that the
//!   registry cannot resolve but the engine has is a local one: it is
//!   deployed as written, with a warning. Any other image that cannot be
//!   resolved — no such tag, credentials refused, registry out of reach —
//!   fails the deployment before anything changed.
//!
//! The runner uses its credentials to resolve whatever `with_registry_auth`
//! says: that setting is about handing them to the swarm's nodes.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bollard::models::{DistributionInspect, Platform, TaskSpecPlacement};

use super::apply::Baseline;
use super::{engine_message, Engine};
use crate::plan::{Plan, ResolveImage, ServicePlan, STACK_IMAGE_LABEL};
use crate::registry::{Credential, ImageRef, RegistryAuth};

/// Longest the engine may take to answer for one image.
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(60);

/// What resolving said, for the deployment's log.
#[derive(Debug, Default)]
pub struct Resolution {
    /// One line per service: what it will run.
    pub lines: Vec<String>,
    pub warnings: Vec<String>,
}

/// An image that cannot be resolved, with the registry's answer.
#[derive(Debug, Clone)]
pub struct Unresolved {
    pub service: String,
    pub image: String,
    pub registry: String,
    pub answer: String,
    /// Which credentials were sent, or why none were.
    pub credentials: String,
}

impl std::fmt::Display for Unresolved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "service {}: image {} cannot be resolved to a digest: registry {} answered: {} ({})",
            self.service, self.image, self.registry, self.answer, self.credentials
        )
    }
}

/// Every image that could not be resolved.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct ResolveError(pub Vec<Unresolved>);

/// What to do with one service's image.
enum Action {
    /// Ask the registry for this reference: the image as written, or for a
    /// rollback the image pinned to the digest the restored release ran.
    Resolve(String),
    /// Keep what the deployed service runs (its image and platforms).
    Keep,
    /// Deploy the image as written.
    AsWritten,
}

/// Resolves the images of `plan` as its `resolve_image` says, against what
/// `deployed` runs, and gives each service the credentials it is sent with.
/// Changes nothing on the swarm.
pub async fn resolve(
    engine: &Engine,
    plan: &mut Plan,
    deployed: &Baseline,
    auth: &RegistryAuth,
) -> Result<Resolution, ResolveError> {
    let mut resolution = Resolution::default();
    let mut unresolved = Vec::new();
    // Each image once, whatever the number of services that run it.
    let mut wanted: BTreeMap<String, (ImageRef, Option<Credential>)> = BTreeMap::new();
    let mut actions = Vec::new();
    for service in Plan::images_mut(&mut plan.services, &mut plan.tasks) {
        let written = service.written_image();
        let image = match ImageRef::parse(&written) {
            Ok(image) => image,
            Err(why) => {
                unresolved.push(Unresolved {
                    service: service.name.clone(),
                    image: written.clone(),
                    registry: "-".into(),
                    answer: why,
                    credentials: "nothing was asked".into(),
                });
                actions.push(Action::AsWritten);
                continue;
            }
        };
        let credential = auth.for_registry(&image.registry).cloned();
        service.credentials = if plan.with_registry_auth {
            credential.clone()
        } else {
            None
        };
        let running = deployed.services.get(&service.name).map(|b| &b.spec);
        let unchanged = running
            .and_then(|spec| spec.labels.as_ref())
            .and_then(|labels| labels.get(STACK_IMAGE_LABEL))
            .is_some_and(|label| *label == written);
        let restored = plan
            .restore
            .as_ref()
            .and_then(|r| r.of(&plan.stack, &service.name))
            .filter(|(was, _)| *was == written);
        let action = match (restored, plan.resolve_image, unchanged) {
            // Asked for pinned: the registry must still have that digest.
            (Some((_, digest)), _, _) => Action::Resolve(image.pinned(digest)),
            (None, ResolveImage::Always, _) | (None, ResolveImage::Changed, false) => {
                Action::Resolve(written.clone())
            }
            (None, ResolveImage::Changed | ResolveImage::Never, true) => Action::Keep,
            (None, ResolveImage::Never, false) => Action::AsWritten,
        };
        if let Action::Resolve(query) = &action {
            wanted.insert(query.clone(), (image, credential));
        }
        actions.push(action);
    }

    let answers = futures_util::future::join_all(wanted.iter().map(
        |(written, (_, credential))| async move {
            let started = Instant::now();
            let answer = tokio::time::timeout(
                RESOLVE_TIMEOUT,
                engine
                    .docker
                    .inspect_registry_image(written, credential.as_ref().map(Credential::docker)),
            )
            .await;
            let answer = match answer {
                Ok(Ok(inspect)) => Ok(inspect),
                Ok(Err(err)) => Err(engine_message(&err)),
                Err(_) => Err(format!("no answer within {} s", RESOLVE_TIMEOUT.as_secs())),
            };
            (written.clone(), (answer, started.elapsed()))
        },
    ))
    .await;
    let answers: BTreeMap<String, (Result<DistributionInspect, String>, Duration)> =
        answers.into_iter().collect();

    // A failed look-up of an image that names no registry: local, if the
    // engine has it.
    let mut local = BTreeMap::new();
    for (written, (answer, _)) in &answers {
        let (image, _) = &wanted[written];
        if answer.is_err() && !image.names_registry {
            let present = engine.docker.inspect_image(written).await.is_ok();
            local.insert(written.clone(), present);
        }
    }

    let mut warned = BTreeMap::new();
    for (service, action) in Plan::images_mut(&mut plan.services, &mut plan.tasks).zip(actions) {
        let written = service.written_image();
        match action {
            Action::AsWritten => {
                if plan.resolve_image == ResolveImage::Never {
                    resolution.lines.push(format!(
                        "{}: {written} (resolve_image: never)",
                        service.name
                    ));
                }
            }
            Action::Keep => {
                let running = &deployed.services[&service.name].spec;
                keep_running(service, running);
                resolution.lines.push(format!(
                    "{}: {} unchanged, keeps {} (resolve_image: {})",
                    service.name,
                    written,
                    service.image().unwrap_or_default(),
                    plan.resolve_image.name()
                ));
            }
            Action::Resolve(query) => {
                let (image, credential) = &wanted[&query];
                let (answer, took) = &answers[&query];
                let restoring = (query != written)
                    .then(|| plan.restore.as_ref().map(|r| r.release.as_str()))
                    .flatten();
                match answer {
                    Ok(inspect) => match &inspect.descriptor.digest {
                        Some(digest) => {
                            pin(service, &image.pinned(digest), &inspect.platforms);
                            resolution.lines.push(match restoring {
                                Some(release) => format!(
                                    "{}: {written} pinned to {digest}, the digest {release} ran \
                                     ({} ms)",
                                    service.name,
                                    took.as_millis()
                                ),
                                None => format!(
                                    "{}: {written} resolved to {digest} ({} ms)",
                                    service.name,
                                    took.as_millis()
                                ),
                            });
                        }
                        None => unresolved.push(Unresolved {
                            service: service.name.clone(),
                            image: written.clone(),
                            registry: image.registry.clone(),
                            answer: "no digest in the engine's answer".into(),
                            credentials: sent(auth, image, credential.as_ref()),
                        }),
                    },
                    Err(_) if local.get(&query) == Some(&true) => {
                        if warned.insert(written.clone(), ()).is_none() {
                            resolution.warnings.push(format!(
                                "{written} is not in a registry the engine can reach, but the \
                                 engine has it: deployed as written, unpinned (every node needs \
                                 its own copy)"
                            ));
                        }
                        resolution
                            .lines
                            .push(format!("{}: {written} (local image)", service.name));
                    }
                    Err(answer) => unresolved.push(Unresolved {
                        service: service.name.clone(),
                        image: query.clone(),
                        registry: image.registry.clone(),
                        answer: answer.trim().to_owned(),
                        credentials: sent(auth, image, credential.as_ref()),
                    }),
                }
            }
        }
    }
    if unresolved.is_empty() {
        plan.pin_tasks();
        Ok(resolution)
    } else {
        Err(ResolveError(unresolved))
    }
}

/// Which credentials were sent for `image`, or why none were.
fn sent(auth: &RegistryAuth, image: &ImageRef, credential: Option<&Credential>) -> String {
    match (credential, auth.source()) {
        (Some(credential), Some(file)) => format!(
            "asked with {} from {} for {}",
            credential.describe(),
            file.display(),
            image.registry
        ),
        (Some(credential), None) => format!("asked with {}", credential.describe()),
        (None, Some(file)) => format!(
            "asked without credentials: {} has none for {}",
            file.display(),
            image.registry
        ),
        (None, None) => "asked without credentials: the runner has no registry auth file \
                         (--registry-auth-file)"
            .into(),
    }
}

/// Pins the service's image, with the platforms the registry lists.
fn pin(service: &mut ServicePlan, image: &str, platforms: &[bollard::models::OciPlatform]) {
    let Some(task) = service.spec.task_template.as_mut() else {
        return;
    };
    if let Some(container) = task.container_spec.as_mut() {
        container.image = Some(image.to_owned());
    }
    if platforms.is_empty() {
        return;
    }
    // As the CLI does: swarm nodes report `armv7l` and the like where
    // manifests say `arm`, so that architecture is left out.
    let platforms = platforms
        .iter()
        .map(|p| Platform {
            architecture: p
                .architecture
                .clone()
                .filter(|a| !a.eq_ignore_ascii_case("arm")),
            os: p.os.clone(),
        })
        .collect();
    task.placement
        .get_or_insert_with(TaskSpecPlacement::default)
        .platforms = Some(platforms);
}

/// Keeps the image and platforms the deployed service runs.
fn keep_running(service: &mut ServicePlan, running: &bollard::models::ServiceSpec) {
    let running = running.task_template.as_ref();
    let image = running
        .and_then(|t| t.container_spec.as_ref())
        .and_then(|c| c.image.clone());
    let platforms = running
        .and_then(|t| t.placement.as_ref())
        .and_then(|p| p.platforms.clone());
    let Some(task) = service.spec.task_template.as_mut() else {
        return;
    };
    if let (Some(container), Some(image)) = (task.container_spec.as_mut(), image) {
        container.image = Some(image);
    }
    if let Some(platforms) = platforms {
        task.placement
            .get_or_insert_with(TaskSpecPlacement::default)
            .platforms = Some(platforms);
    }
}
