//! Networks: the ones services use, as `docker stack deploy` creates them
//! (`<stack>_<name>`, overlay unless told, the namespace label), plus
//! `<stack>_default` when a service names no network. Declared networks no
//! service uses are not created, as with the CLI.

use std::collections::{BTreeMap, BTreeSet};

use bollard::models::NetworkAttachmentConfig;

use crate::plan::NetworkPlan;

use super::super::compose::{Compose, NetworkDef, Service};
use super::super::scalar::{Bool, Text};
use super::super::yaml::{KeyPath, PathError};
use super::{ConvertError, Scope};

/// The network every service without `networks:` joins.
pub const DEFAULT_NETWORK: &str = "default";
/// Driver of stack networks that do not name one: swarm services need an
/// overlay.
pub const DEFAULT_DRIVER: &str = "overlay";

/// The networks a service is attached to, by Compose name.
pub fn service_networks(service: &Service) -> Vec<String> {
    if service.networks.is_empty() {
        vec![DEFAULT_NETWORK.to_owned()]
    } else {
        service.networks.keys().cloned().collect()
    }
}

/// The swarm name of a Compose network.
pub fn target(scope: &Scope<'_>, def: Option<&NetworkDef>, name: &str) -> String {
    let def_name = def.and_then(|d| d.name.as_ref().map(|Text(n)| n.clone()));
    let external = def.and_then(|d| d.external.clone()).unwrap_or_default();
    match (def_name, external.name) {
        (Some(n), _) | (None, Some(n)) => n,
        (None, None) if external.external => name.to_owned(),
        (None, None) => scope.scoped(name),
    }
}

pub fn plan(
    scope: &Scope<'_>,
    model: &Compose,
    warnings: &mut Vec<String>,
) -> Result<Vec<NetworkPlan>, ConvertError> {
    let used: BTreeSet<String> = model.services.values().flat_map(service_networks).collect();
    let mut out = Vec::new();
    for name in used {
        let path = KeyPath::default().key("networks").key(&name);
        let def = match model.networks.get(&name) {
            Some(def) => def.as_ref(),
            None if name == DEFAULT_NETWORK => None,
            None => {
                // Reported at the first service that uses it.
                let (svc, _) = model
                    .services
                    .iter()
                    .find(|(_, s)| s.networks.contains_key(&name))
                    .expect("a used network is used by a service");
                return Err(PathError::new(
                    &KeyPath::default()
                        .key("services")
                        .key(svc)
                        .key("networks")
                        .key(&name),
                    format!("network {name:?} is not declared under the top-level networks"),
                )
                .into());
            }
        };
        let external = def.and_then(|d| d.external.clone()).unwrap_or_default();
        if let Some(def) = def {
            if def.ipam.is_some() {
                warnings.push(format!(
                    "{path}: ipam is not applied by Slipway; the engine chooses the subnet"
                ));
            }
            if external.external && (def.driver.is_some() || !def.labels.is_empty()) {
                return Err(PathError::new(
                    &path,
                    "an external network cannot set driver or labels",
                )
                .into());
            }
        }
        let labels = if external.external {
            Default::default()
        } else {
            let empty = BTreeMap::new();
            sorted(scope.object_labels(def.map(|d| &d.labels).unwrap_or(&empty)))
        };
        out.push(NetworkPlan {
            name: target(scope, def, &name),
            external: external.external,
            driver: def
                .and_then(|d| d.driver.as_ref().map(|Text(t)| t.clone()))
                .unwrap_or_else(|| DEFAULT_DRIVER.to_owned()),
            attachable: def
                .and_then(|d| d.attachable)
                .map(|Bool(b)| b)
                .unwrap_or(false),
            internal: def
                .and_then(|d| d.internal)
                .map(|Bool(b)| b)
                .unwrap_or(false),
            labels,
            options: def
                .map(|d| {
                    d.driver_opts
                        .iter()
                        .map(|(k, Text(v))| (k.clone(), v.clone()))
                        .collect()
                })
                .unwrap_or_default(),
        });
    }
    Ok(out)
}

fn sorted(m: std::collections::HashMap<String, String>) -> BTreeMap<String, String> {
    m.into_iter().collect()
}

/// A service's network attachments, sorted by target; each carries the
/// service name as an alias after the declared ones (as the CLI does for
/// user-defined networks).
pub fn attachments(
    scope: &Scope<'_>,
    model: &Compose,
    name: &str,
    service: &Service,
) -> Vec<NetworkAttachmentConfig> {
    let mut out: Vec<NetworkAttachmentConfig> = service_networks(service)
        .into_iter()
        .map(|net| {
            let def = model.networks.get(&net).and_then(|d| d.as_ref());
            let target = target(scope, def, &net);
            let declared = service.networks.get(&net).and_then(|n| n.as_ref());
            let mut aliases: Vec<String> = declared
                .map(|n| n.aliases.iter().map(|Text(a)| a.clone()).collect())
                .unwrap_or_default();
            if !matches!(target.as_str(), "host" | "bridge" | "none" | "default")
                && !target.starts_with("container:")
            {
                aliases.push(name.to_owned());
            }
            let driver_opts = declared.filter(|n| !n.driver_opts.is_empty()).map(|n| {
                n.driver_opts
                    .iter()
                    .map(|(k, Text(v))| (k.clone(), v.clone()))
                    .collect()
            });
            NetworkAttachmentConfig {
                target: Some(target),
                aliases: (!aliases.is_empty()).then_some(aliases),
                driver_opts,
            }
        })
        .collect();
    out.sort_by(|a, b| a.target.cmp(&b.target));
    out
}
