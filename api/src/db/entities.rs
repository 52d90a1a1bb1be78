//! sea-orm entities, one module per table. Only the API knows the SQL schema.

pub mod application {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "applications")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        #[sea_orm(unique)]
        pub name: String,
        pub repository: String,
        pub spec_path: String,
        /// The last per-application deployment number handed out (`web#42`).
        pub deployment_count: i64,
        pub created_at: ChronoDateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod environment {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "environments")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub application_id: i64,
        pub name: String,
        /// Branch whose pushes deploy here automatically.
        pub auto_deploy_ref: Option<String>,
        pub url: Option<String>,
        /// Who locked the environment; `None` when it is unlocked.
        pub locked_by: Option<String>,
        pub locked_at: Option<ChronoDateTimeUtc>,
        pub lock_reason: Option<String>,
        /// Who paused auto-deploys (a rollback does); `None` when they run.
        pub auto_deploy_paused_by: Option<String>,
        pub auto_deploy_paused_at: Option<ChronoDateTimeUtc>,
        pub auto_deploy_pause_reason: Option<String>,
        /// The rollback deployment that paused them.
        pub auto_deploy_paused_for: Option<i64>,
        pub queue_policy: QueuePolicy,
        /// The most deployments that may wait in the queue (`Fifo` only).
        pub max_queued: Option<i64>,
        pub created_at: ChronoDateTimeUtc,
        /// Its deployments wait (gate `Approval`) until a person approves them.
        pub approval_required: bool,
        /// ... and that person is not the one who created the deployment.
        pub approval_not_by_creator: bool,
        /// JSON list of the CI checks its deployments wait for (gate
        /// `Checks`), by name; `None` when none is named.
        pub required_checks: Option<String>,
        /// ... and every other check the forge reports must pass too.
        pub required_checks_all: bool,
        /// How long a deployment waits for its checks before it fails.
        pub required_checks_timeout_minutes: i64,
        /// JSON list of the labels a runner must have to deploy here;
        /// `None` when any runner may.
        pub runner_labels: Option<String>,
        /// JSON list of [`crate::nodes::ObservedService`]: its services as a
        /// runner last saw them on the swarm, task by task.
        pub observed: Option<String>,
        pub observed_at: Option<ChronoDateTimeUtc>,
        /// The runner that saw them.
        pub observed_by: Option<String>,
    }

    /// What a new deployment does to the ones queued before it.
    #[derive(Copy, Clone, Debug, Default, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
    #[sea_orm(rs_type = "String", db_type = "Text")]
    pub enum QueuePolicy {
        /// They run first, in order.
        #[default]
        #[sea_orm(string_value = "FIFO")]
        Fifo,
        /// It supersedes them: they end CANCELLED, naming it.
        #[sea_orm(string_value = "LATEST")]
        Latest,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod deployment {
    use sea_orm::entity::prelude::*;
    use serde::{Deserialize, Serialize};

    /// Where a deployment is in its life. Stored as the text of each value in
    /// a `TEXT` column; a row with any other text fails to load (an error, not
    /// a guess).
    #[derive(Copy, Clone, Debug, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
    #[sea_orm(rs_type = "String", db_type = "Text")]
    pub enum DeploymentStatus {
        #[sea_orm(string_value = "QUEUED")]
        Queued,
        #[sea_orm(string_value = "IN_PROGRESS")]
        InProgress,
        #[sea_orm(string_value = "SUCCEEDED")]
        Succeeded,
        #[sea_orm(string_value = "FAILED")]
        Failed,
        #[sea_orm(string_value = "CANCELLED")]
        Cancelled,
    }

    impl DeploymentStatus {
        pub fn as_str(self) -> &'static str {
            match self {
                Self::Queued => "QUEUED",
                Self::InProgress => "IN_PROGRESS",
                Self::Succeeded => "SUCCEEDED",
                Self::Failed => "FAILED",
                Self::Cancelled => "CANCELLED",
            }
        }

        pub fn is_final(self) -> bool {
            matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
        }
    }

    /// What an IN_PROGRESS deployment is doing; stored like the status.
    #[derive(Copy, Clone, Debug, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
    #[sea_orm(rs_type = "String", db_type = "Text")]
    pub enum DeploymentPhase {
        #[sea_orm(string_value = "CLONING")]
        Cloning,
        #[sea_orm(string_value = "PLANNING")]
        Planning,
        #[sea_orm(string_value = "UPDATING")]
        Updating,
        #[sea_orm(string_value = "VERIFYING")]
        Verifying,
        #[sea_orm(string_value = "ROLLING_BACK")]
        RollingBack,
    }

    /// One entry of the `services` column, a JSON list: an image a service of
    /// the release runs. The stored shape, kept apart from what the API shows.
    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    pub struct StoredService {
        pub name: String,
        pub image: String,
        pub digest: Option<String>,
        /// SHA-256 of the ServiceSpec the runner applied, hex.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub spec_hash: Option<String>,
    }

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "deployments")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub application_id: i64,
        pub environment_id: i64,
        /// Per-application sequence number, dense from 1.
        pub number: i64,
        pub ref_name: String,
        /// The commit the ref resolved to; set by whoever knows it first
        /// (a GitHub hook carries it, otherwise the runner reports it).
        pub sha: Option<String>,
        pub task: String,
        /// JSON text passed through from the creator to the runner.
        pub payload: Option<String>,
        pub description: Option<String>,
        /// Idempotency key of the creator (`github:<id>`, a delivery id).
        pub external_id: Option<String>,
        /// Made by a hook for a push or a pipeline rather than asked for: the
        /// runner skips it when it would take the environment backwards.
        pub auto_deploy: bool,
        pub created_by: String,
        pub status: DeploymentStatus,
        pub phase: Option<DeploymentPhase>,
        pub message: Option<String>,
        /// Name of the runner holding (or that last held) the deployment.
        pub runner: Option<String>,
        /// Which process of that runner holds it, as the process named itself
        /// when it claimed; `None` for runners that do not say.
        pub runner_instance: Option<String>,
        pub lease_expires_at: Option<ChronoDateTimeUtc>,
        pub last_heartbeat_at: Option<ChronoDateTimeUtc>,
        pub cancel_requested: bool,
        pub cancel_requested_by: Option<String>,
        /// Number of log lines stored; the next line gets `log_count + 1`.
        pub log_count: i64,
        /// JSON list of [`StoredService`], recorded when the deployment succeeded.
        pub services: Option<String>,
        /// The release it deploys exactly (its commit and image digests): of
        /// its own environment for a rollback (task `rollback`), of another
        /// for a promotion.
        pub restores: Option<i64>,
        pub created_at: ChronoDateTimeUtc,
        pub started_at: Option<ChronoDateTimeUtc>,
        pub finished_at: Option<ChronoDateTimeUtc>,
        /// JSON list of [`ServiceConvergence`]: how each service of the stack
        /// converges, as the runner last said.
        pub convergence: Option<String>,
        /// What a QUEUED deployment waits for before a runner may claim it;
        /// `None` when nothing holds it (see `crate::gates`).
        pub gate: Option<GateKind>,
        pub gate_since: Option<ChronoDateTimeUtc>,
        /// When a `Freeze` gate opens by itself (the window's end).
        pub gate_until: Option<ChronoDateTimeUtc>,
        /// What the gate waits for, in words.
        pub gate_waiting_for: Option<String>,
        /// The approval or rejection, once a person gave one.
        pub review_verdict: Option<ReviewVerdict>,
        pub reviewed_by: Option<String>,
        pub reviewed_at: Option<ChronoDateTimeUtc>,
        pub review_comment: Option<String>,
        /// The admin who let it through a freeze window, and why.
        pub freeze_overridden_by: Option<String>,
        pub freeze_overridden_at: Option<ChronoDateTimeUtc>,
        pub freeze_override_reason: Option<String>,
        /// The task of the spec it runs alone (`createDeployment(task:
        /// "migrate")`), rolling nothing out; `None` for a rollout (tasks
        /// `deploy` and `rollback`). Such a deployment is never a release.
        pub runs_task: Option<String>,
        /// [`StoredRequiredChecks`] JSON: the checks it waits for, as its
        /// environment required them when it was created (and `force` left them).
        pub checks_required: Option<String>,
        /// JSON list of [`StoredCheck`]: the provider's last report.
        pub checks: Option<String>,
        pub checks_reported_at: Option<ChronoDateTimeUtc>,
        /// The creator who forced it past the checks not named as required.
        pub checks_forced_by: Option<String>,
    }

    /// What holds a QUEUED deployment back; stored like the status.
    #[derive(Copy, Clone, Debug, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
    #[sea_orm(rs_type = "String", db_type = "Text")]
    pub enum GateKind {
        /// A person with the deployer role must approve it.
        #[sea_orm(string_value = "APPROVAL")]
        Approval,
        /// It was created inside a freeze window and waits for its end.
        #[sea_orm(string_value = "FREEZE")]
        Freeze,
        /// It waits for CI checks to pass on its commit, as the provider reports them.
        #[sea_orm(string_value = "CHECKS")]
        Checks,
    }

    /// The checks a deployment waits for: the `checks_required` column.
    #[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct StoredRequiredChecks {
        /// Checks that must pass, by name.
        pub names: Vec<String>,
        /// Every check the forge reports must pass (and at least one must be reported).
        pub all: bool,
        pub timeout_minutes: i64,
    }

    /// One check as the provider saw it on the forge: an entry of the `checks` column.
    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    pub struct StoredCheck {
        pub name: String,
        pub state: CheckState,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub url: Option<String>,
    }

    #[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "SCREAMING_SNAKE_CASE")]
    pub enum CheckState {
        /// Not finished, or not started.
        Pending,
        Success,
        Failure,
    }

    /// What a person said of a deployment waiting for approval.
    #[derive(Copy, Clone, Debug, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
    #[sea_orm(rs_type = "String", db_type = "Text")]
    pub enum ReviewVerdict {
        #[sea_orm(string_value = "APPROVED")]
        Approved,
        #[sea_orm(string_value = "REJECTED")]
        Rejected,
    }

    /// How one service of a deployment converges, as its runner says: one
    /// entry of the `convergence` column.
    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    pub struct ServiceConvergence {
        pub service: String,
        pub state: ConvergenceState,
        /// What the runner sees: `1/3 running`, the failing task's error.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub detail: Option<String>,
    }

    #[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "SCREAMING_SNAKE_CASE")]
    pub enum ConvergenceState {
        /// Its tasks are on their way to running the new spec.
        Converging,
        /// Every task runs the new spec and stayed up.
        Converged,
        /// It failed to converge.
        Failed,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod freeze_window {
    use sea_orm::entity::prelude::*;

    /// A recurring time in which an environment takes no new deployments:
    /// each occurrence of `cron` in `time_zone` starts one that lasts
    /// `duration_minutes`.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "freeze_windows")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub environment_id: i64,
        /// Five fields (minute hour day-of-month month day-of-week).
        pub cron: String,
        pub duration_minutes: i64,
        /// An IANA zone (`Europe/Berlin`); the cron is read in its local time.
        pub time_zone: String,
        pub reason: String,
        pub mode: FreezeMode,
        pub created_by: String,
        pub created_at: ChronoDateTimeUtc,
    }

    /// What a deployment created inside the window does.
    #[derive(Copy, Clone, Debug, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
    #[sea_orm(rs_type = "String", db_type = "Text")]
    pub enum FreezeMode {
        /// It waits (QUEUED, gate `Freeze`) until the window ends.
        #[sea_orm(string_value = "WAIT")]
        Wait,
        /// It is refused (`CONFLICT`).
        #[sea_orm(string_value = "REFUSE")]
        Refuse,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod log_line {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "deployment_logs")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub deployment_id: i64,
        #[sea_orm(primary_key, auto_increment = false)]
        pub seq: i64,
        pub at: ChronoDateTimeUtc,
        pub stream: String,
        pub text: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod runner {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "runners")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        #[sea_orm(unique)]
        pub name: String,
        /// JSON list of strings.
        pub labels: String,
        pub version: Option<String>,
        /// The instance (process) of the runner last heard from, if it said.
        pub last_instance: Option<String>,
        pub last_seen_at: ChronoDateTimeUtc,
        pub created_at: ChronoDateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod api_replica {
    use sea_orm::entity::prelude::*;

    /// One API process, as it last said it was alive (see [`crate::replicas`]).
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "api_replicas")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub instance: String,
        pub started_at: ChronoDateTimeUtc,
        pub last_seen_at: ChronoDateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod commit {
    use sea_orm::entity::prelude::*;

    /// A commit of an application's repository, as a runner reported it.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "commits")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub application_id: i64,
        #[sea_orm(primary_key, auto_increment = false)]
        pub sha: String,
        /// The parents' shas, space-separated (empty for a root commit);
        /// `None` when they are not known (the edge of a shallow mirror).
        pub parents: Option<String>,
        /// The first line of the message.
        pub subject: Option<String>,
        pub committed_at: Option<ChronoDateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod session {
    use sea_orm::entity::prelude::*;

    /// A browser's sign-in. The cookie holds a secret; the row is keyed by
    /// its SHA-256, so the table alone signs nobody in.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "sessions")]
    pub struct Model {
        /// SHA-256 (hex) of the cookie's secret.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub subject: String,
        pub role: String,
        /// The token every form of this session carries.
        pub csrf: String,
        pub created_at: ChronoDateTimeUtc,
        pub expires_at: ChronoDateTimeUtc,
        /// When it was signed out; `None` while it lasts.
        pub ended_at: Option<ChronoDateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod sign_in_code {
    use sea_orm::entity::prelude::*;

    /// A one-time sign-in link's code, keyed by its SHA-256 like a session.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "sign_in_codes")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub subject: String,
        pub role: String,
        pub created_by: String,
        pub created_at: ChronoDateTimeUtc,
        pub expires_at: ChronoDateTimeUtc,
        pub used_at: Option<ChronoDateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod plan {
    use sea_orm::entity::prelude::*;

    /// Where a plan is: asked for, taken by a runner, answered, or not.
    #[derive(Copy, Clone, Debug, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
    #[sea_orm(rs_type = "String", db_type = "Text")]
    pub enum PlanStatus {
        #[sea_orm(string_value = "QUEUED")]
        Queued,
        #[sea_orm(string_value = "RUNNING")]
        Running,
        #[sea_orm(string_value = "DONE")]
        Done,
        #[sea_orm(string_value = "FAILED")]
        Failed,
    }

    impl PlanStatus {
        pub fn as_str(self) -> &'static str {
            match self {
                Self::Queued => "QUEUED",
                Self::Running => "RUNNING",
                Self::Done => "DONE",
                Self::Failed => "FAILED",
            }
        }

        pub fn is_final(self) -> bool {
            matches!(self, Self::Done | Self::Failed)
        }
    }

    /// What deploying a ref to an environment would change, as a runner
    /// planned it against what runs. Never a deployment, never a release.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "plans")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub application_id: i64,
        pub environment_id: i64,
        pub ref_name: String,
        /// The commit the runner planned (the ref resolved when it fetched).
        pub sha: Option<String>,
        pub status: PlanStatus,
        /// The runner that claimed it.
        pub runner: Option<String>,
        /// JSON: the stack and each service's action, as `plan --diff` prints it.
        pub result: Option<String>,
        /// Why it failed (a spec error names the file and the field).
        pub message: Option<String>,
        pub created_by: String,
        pub created_at: ChronoDateTimeUtc,
        /// When a runner claimed it: a claim never finished expires.
        pub claimed_at: Option<ChronoDateTimeUtc>,
        pub finished_at: Option<ChronoDateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod notification {
    use sea_orm::entity::prelude::*;

    /// Where an environment's deployments are told about: a Slack incoming
    /// webhook or a signed webhook. `target` and `secret` are write-only:
    /// the API never answers them.
    #[derive(Clone, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "notifications")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub environment_id: i64,
        /// Set when only this deployment's news goes to it (the answer to a
        /// chat command); such notifications are not listed.
        pub deployment_id: Option<i64>,
        pub kind: NotificationKind,
        /// The URL messages are posted to (a Slack webhook URL is its secret).
        pub target: String,
        /// A webhook's signing key (`whsec_` and base64), or a Sentry
        /// notification's own auth token.
        pub secret: Option<String>,
        pub created_by: String,
        pub created_at: ChronoDateTimeUtc,
        /// Set when the receiver said it is gone (`410`): nothing more is sent.
        pub disabled_at: Option<ChronoDateTimeUtc>,
        pub disabled_reason: Option<String>,
        /// Set by `removeNotification`; the row stays for its deliveries.
        pub removed_at: Option<ChronoDateTimeUtc>,
    }

    impl std::fmt::Debug for Model {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Notification")
                .field("id", &self.id)
                .field("environment_id", &self.environment_id)
                .field("kind", &self.kind)
                .field("target", &crate::notifications::shown_target(&self.target))
                .field("disabled_at", &self.disabled_at)
                .field("removed_at", &self.removed_at)
                .finish_non_exhaustive()
        }
    }

    #[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
    #[sea_orm(rs_type = "String", db_type = "Text")]
    pub enum NotificationKind {
        /// A Slack incoming webhook: messages with blocks.
        #[sea_orm(string_value = "SLACK")]
        Slack,
        /// JSON signed per the Standard Webhooks specification.
        #[sea_orm(string_value = "WEBHOOK")]
        Webhook,
        /// A Sentry project: releases and deploys through Sentry's API.
        #[sea_orm(string_value = "SENTRY")]
        Sentry,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod notification_event {
    use sea_orm::entity::prelude::*;

    /// One event a notification is sent for. The database's triggers read
    /// these rows, so the event names are part of the schema.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "notification_events")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub notification_id: i64,
        #[sea_orm(primary_key, auto_increment = false)]
        pub event: DeploymentEvent,
    }

    /// What happened to a deployment, as notifications tell it.
    #[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
    #[sea_orm(rs_type = "String", db_type = "Text")]
    pub enum DeploymentEvent {
        /// Created (it may wait at a gate).
        #[sea_orm(string_value = "QUEUED")]
        Queued,
        /// A runner claimed it.
        #[sea_orm(string_value = "STARTED")]
        Started,
        #[sea_orm(string_value = "SUCCEEDED")]
        Succeeded,
        /// It failed and the stack was left as it was (or never touched).
        #[sea_orm(string_value = "FAILED")]
        Failed,
        #[sea_orm(string_value = "CANCELLED")]
        Cancelled,
        /// It failed after changing the stack, and the runner took the
        /// stack back to what ran before.
        #[sea_orm(string_value = "ROLLED_BACK")]
        RolledBack,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod delivery {
    use sea_orm::entity::prelude::*;

    use super::notification_event::DeploymentEvent;

    /// One message to one notification's target about one event of a
    /// deployment: the outbox. Rows are written by the database's triggers
    /// in the transaction of the deployment's change, and sent by
    /// `notifications::outbox`.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "deliveries")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub notification_id: i64,
        pub deployment_id: i64,
        pub event: DeploymentEvent,
        pub occurred_at: ChronoDateTimeUtc,
        pub state: DeliveryState,
        pub attempts: i64,
        pub next_attempt_at: ChronoDateTimeUtc,
        /// While a sender works on it, no other takes it.
        pub locked_until: Option<ChronoDateTimeUtc>,
        pub last_attempt_at: Option<ChronoDateTimeUtc>,
        /// The receiver's status and the start of its body, or why the
        /// request failed.
        pub last_answer: Option<String>,
        /// What is sent, made at the first attempt and sent alike at each.
        pub body: Option<String>,
        pub delivered_at: Option<ChronoDateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
    #[sea_orm(rs_type = "String", db_type = "Text")]
    pub enum DeliveryState {
        /// Not sent yet, or to be tried again at `next_attempt_at`.
        #[sea_orm(string_value = "PENDING")]
        Pending,
        /// The receiver answered 2xx.
        #[sea_orm(string_value = "DELIVERED")]
        Delivered,
        /// Every attempt of the schedule failed.
        #[sea_orm(string_value = "FAILED")]
        Failed,
        /// Not sent: the notification was removed or its receiver is gone.
        #[sea_orm(string_value = "DISCARDED")]
        Discarded,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod audit_entry {
    use sea_orm::entity::prelude::*;

    /// One action someone took, as the audit log keeps it: names rather
    /// than references, so an entry outlives what it names.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "audit_log")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub at: ChronoDateTimeUtc,
        /// The token's or session's subject, or `(anonymous)`.
        pub actor: String,
        pub role: Option<String>,
        /// `GRAPHQL`, `WEB` or `CHAT`.
        pub via: String,
        /// The mutation's name (`cancelDeployment`), the same for the UI.
        pub action: String,
        pub application: Option<String>,
        pub environment: Option<String>,
        /// What it acted on beyond the environment (`deployment 12`).
        pub object: Option<String>,
        /// The arguments as JSON, secrets left out.
        pub arguments: Option<String>,
        /// The peer's address.
        pub ip: Option<String>,
        /// `X-Forwarded-For` as sent: a proxy's word, not checked.
        pub forwarded_for: Option<String>,
        pub user_agent: Option<String>,
        /// `OK` or the error's code (`FORBIDDEN`).
        pub result: String,
        pub error: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
