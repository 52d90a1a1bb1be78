//! The deployment read model: a deployment with its application and
//! environment, as every reader (GraphQL, events, the domain modules' answers)
//! wants it. Depends only on the entities and the error type, so every other
//! module may use it.

use std::collections::HashMap;
use std::sync::Arc;

use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};

use crate::db::entities::deployment::{
    DeploymentPhase, DeploymentStatus, ServiceConvergence, StoredService,
};
use crate::db::entities::{application, deployment, environment};
use crate::error::{ApiError, ApiResult};

/// A deployment together with its application and environment. Built by
/// [`hydrate`], which loads the parents of a page at once.
#[derive(Clone, Debug)]
pub struct DeploymentView {
    pub deployment: deployment::Model,
    pub application: Arc<application::Model>,
    pub environment: Arc<environment::Model>,
}

/// An image a service of a release runs, pinned to its digest where known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceImage {
    pub name: String,
    pub image: String,
    pub digest: Option<String>,
    /// SHA-256 of the ServiceSpec the runner applied, hex.
    pub spec_hash: Option<String>,
}

impl From<StoredService> for ServiceImage {
    fn from(s: StoredService) -> Self {
        Self {
            name: s.name,
            image: s.image,
            digest: s.digest,
            spec_hash: s.spec_hash,
        }
    }
}

impl From<ServiceImage> for StoredService {
    fn from(s: ServiceImage) -> Self {
        Self {
            name: s.name,
            image: s.image,
            digest: s.digest,
            spec_hash: s.spec_hash,
        }
    }
}

impl DeploymentView {
    pub fn status(&self) -> DeploymentStatus {
        self.deployment.status
    }

    pub fn phase(&self) -> Option<DeploymentPhase> {
        self.deployment.phase
    }

    /// `application#number`, as people say it.
    pub fn name(&self) -> String {
        format!("{}#{}", self.application.name, self.deployment.number)
    }

    /// The images the deployment rolled out (none before it succeeded). A
    /// stored list that does not parse is an error, not an empty list.
    pub fn services(&self) -> ApiResult<Vec<ServiceImage>> {
        services(&self.deployment)
    }
}

/// How each service of deployment `d` converges, as its runner last said.
pub fn convergence(d: &deployment::Model) -> ApiResult<Vec<ServiceConvergence>> {
    let Some(json) = d.convergence.as_deref() else {
        return Ok(Vec::new());
    };
    serde_json::from_str(json).map_err(|err| {
        ApiError::internal(format!(
            "deployment {} has an unreadable convergence: {err}",
            d.id
        ))
    })
}

/// The images deployment `d` rolled out (none before it succeeded). A stored
/// list that does not parse is an error, not an empty list.
pub fn services(d: &deployment::Model) -> ApiResult<Vec<ServiceImage>> {
    let Some(json) = d.services.as_deref() else {
        return Ok(Vec::new());
    };
    let stored: Vec<StoredService> = serde_json::from_str(json).map_err(|err| {
        ApiError::internal(format!(
            "deployment {} has unreadable services: {err}",
            d.id
        ))
    })?;
    Ok(stored.into_iter().map(ServiceImage::from).collect())
}

/// Loads the applications and environments of `rows` (two queries in all).
pub async fn hydrate(
    db: &impl ConnectionTrait,
    rows: Vec<deployment::Model>,
) -> ApiResult<Vec<DeploymentView>> {
    let mut app_ids: Vec<i64> = rows.iter().map(|d| d.application_id).collect();
    let mut env_ids: Vec<i64> = rows.iter().map(|d| d.environment_id).collect();
    app_ids.sort_unstable();
    app_ids.dedup();
    env_ids.sort_unstable();
    env_ids.dedup();
    let apps: HashMap<i64, Arc<application::Model>> = application::Entity::find()
        .filter(application::Column::Id.is_in(app_ids))
        .all(db)
        .await?
        .into_iter()
        .map(|a| (a.id, Arc::new(a)))
        .collect();
    let envs: HashMap<i64, Arc<environment::Model>> = environment::Entity::find()
        .filter(environment::Column::Id.is_in(env_ids))
        .all(db)
        .await?
        .into_iter()
        .map(|e| (e.id, Arc::new(e)))
        .collect();
    rows.into_iter()
        .map(|deployment| {
            let application = apps.get(&deployment.application_id).cloned();
            let environment = envs.get(&deployment.environment_id).cloned();
            match (application, environment) {
                (Some(application), Some(environment)) => Ok(DeploymentView {
                    deployment,
                    application,
                    environment,
                }),
                _ => Err(ApiError::internal(format!(
                    "deployment {} has no application or environment",
                    deployment.id
                ))),
            }
        })
        .collect()
}

pub async fn hydrate_one(
    db: &impl ConnectionTrait,
    row: deployment::Model,
) -> ApiResult<DeploymentView> {
    Ok(hydrate(db, vec![row]).await?.remove(0))
}

/// The view of `row`, whose environment `environment` is already read (one
/// query, for the application).
pub async fn with_environment(
    db: &impl ConnectionTrait,
    row: deployment::Model,
    environment: environment::Model,
) -> ApiResult<DeploymentView> {
    let application = application::Entity::find_by_id(row.application_id)
        .one(db)
        .await?
        .ok_or_else(|| ApiError::internal(format!("deployment {} has no application", row.id)))?;
    Ok(DeploymentView {
        deployment: row,
        application: Arc::new(application),
        environment: Arc::new(environment),
    })
}

/// Reads one deployment; `NOT_FOUND` when there is none.
pub async fn get(db: &impl ConnectionTrait, id: i64) -> ApiResult<DeploymentView> {
    let row = find(db, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("deployment {id} does not exist")))?;
    hydrate_one(db, row).await
}

/// The deployment of `view` as the database has it now, with the same
/// application and environment (one query).
pub async fn reread(db: &impl ConnectionTrait, view: &DeploymentView) -> ApiResult<DeploymentView> {
    let id = view.deployment.id;
    let row = find(db, id)
        .await?
        .ok_or_else(|| ApiError::internal(format!("deployment {id} vanished")))?;
    Ok(DeploymentView {
        deployment: row,
        application: view.application.clone(),
        environment: view.environment.clone(),
    })
}

async fn find(db: &impl ConnectionTrait, id: i64) -> ApiResult<Option<deployment::Model>> {
    Ok(deployment::Entity::find_by_id(id).one(db).await?)
}
