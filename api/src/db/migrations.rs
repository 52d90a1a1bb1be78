//! Append-only schema migrations. Never edit one that has landed: add a new one.
//!
//! Each migration has a SQLite and a PostgreSQL text; both run in one transaction
//! together with the row that records them in `slipway_migrations`.

use sea_orm::{
    ConnectionTrait, DatabaseBackend, DatabaseConnection, DbErr, Statement, TransactionTrait,
};

struct Migration {
    version: i64,
    name: &'static str,
    sqlite: &'static str,
    postgres: &'static str,
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "initial",
        sqlite: r#"
CREATE TABLE applications (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    repository TEXT NOT NULL,
    spec_path TEXT NOT NULL,
    deployment_count BIGINT NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL
);
CREATE TABLE environments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    application_id BIGINT NOT NULL REFERENCES applications (id),
    name TEXT NOT NULL,
    auto_deploy_ref TEXT,
    url TEXT,
    locked_by TEXT,
    locked_at TEXT,
    lock_reason TEXT,
    created_at TEXT NOT NULL,
    UNIQUE (application_id, name)
);
CREATE TABLE deployments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    application_id BIGINT NOT NULL REFERENCES applications (id),
    environment_id BIGINT NOT NULL REFERENCES environments (id),
    number BIGINT NOT NULL,
    ref_name TEXT NOT NULL,
    sha TEXT,
    task TEXT NOT NULL,
    payload TEXT,
    description TEXT,
    external_id TEXT,
    created_by TEXT NOT NULL,
    status TEXT NOT NULL,
    phase TEXT,
    message TEXT,
    runner TEXT,
    lease_expires_at TEXT,
    last_heartbeat_at TEXT,
    cancel_requested BOOLEAN NOT NULL DEFAULT FALSE,
    cancel_requested_by TEXT,
    log_count BIGINT NOT NULL DEFAULT 0,
    services TEXT,
    created_at TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT,
    UNIQUE (application_id, number),
    UNIQUE (application_id, external_id)
);
CREATE UNIQUE INDEX deployments_one_in_progress
    ON deployments (environment_id) WHERE status = 'IN_PROGRESS';
CREATE INDEX deployments_by_status ON deployments (status, environment_id, id);
CREATE TABLE deployment_logs (
    deployment_id BIGINT NOT NULL REFERENCES deployments (id),
    seq BIGINT NOT NULL,
    at TEXT NOT NULL,
    stream TEXT NOT NULL,
    text TEXT NOT NULL,
    PRIMARY KEY (deployment_id, seq)
);
CREATE TABLE runners (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    labels TEXT NOT NULL,
    version TEXT,
    last_seen_at TEXT NOT NULL,
    created_at TEXT NOT NULL
);
"#,
        postgres: r#"
CREATE TABLE applications (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    repository TEXT NOT NULL,
    spec_path TEXT NOT NULL,
    deployment_count BIGINT NOT NULL DEFAULT 0,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE environments (
    id BIGSERIAL PRIMARY KEY,
    application_id BIGINT NOT NULL REFERENCES applications (id),
    name TEXT NOT NULL,
    auto_deploy_ref TEXT,
    url TEXT,
    locked_by TEXT,
    locked_at TIMESTAMPTZ,
    lock_reason TEXT,
    created_at TIMESTAMPTZ NOT NULL,
    UNIQUE (application_id, name)
);
CREATE TABLE deployments (
    id BIGSERIAL PRIMARY KEY,
    application_id BIGINT NOT NULL REFERENCES applications (id),
    environment_id BIGINT NOT NULL REFERENCES environments (id),
    number BIGINT NOT NULL,
    ref_name TEXT NOT NULL,
    sha TEXT,
    task TEXT NOT NULL,
    payload TEXT,
    description TEXT,
    external_id TEXT,
    created_by TEXT NOT NULL,
    status TEXT NOT NULL,
    phase TEXT,
    message TEXT,
    runner TEXT,
    lease_expires_at TIMESTAMPTZ,
    last_heartbeat_at TIMESTAMPTZ,
    cancel_requested BOOLEAN NOT NULL DEFAULT FALSE,
    cancel_requested_by TEXT,
    log_count BIGINT NOT NULL DEFAULT 0,
    services TEXT,
    created_at TIMESTAMPTZ NOT NULL,
    started_at TIMESTAMPTZ,
    finished_at TIMESTAMPTZ,
    UNIQUE (application_id, number),
    UNIQUE (application_id, external_id)
);
CREATE UNIQUE INDEX deployments_one_in_progress
    ON deployments (environment_id) WHERE status = 'IN_PROGRESS';
CREATE INDEX deployments_by_status ON deployments (status, environment_id, id);
CREATE TABLE deployment_logs (
    deployment_id BIGINT NOT NULL REFERENCES deployments (id),
    seq BIGINT NOT NULL,
    at TIMESTAMPTZ NOT NULL,
    stream TEXT NOT NULL,
    text TEXT NOT NULL,
    PRIMARY KEY (deployment_id, seq)
);
CREATE TABLE runners (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    labels TEXT NOT NULL,
    version TEXT,
    last_seen_at TIMESTAMPTZ NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
"#,
    },
    Migration {
        version: 2,
        name: "runner instances, auto-deploys",
        sqlite: r#"
ALTER TABLE deployments ADD COLUMN runner_instance TEXT;
ALTER TABLE deployments ADD COLUMN auto_deploy BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE runners ADD COLUMN last_instance TEXT;
"#,
        postgres: r#"
ALTER TABLE deployments ADD COLUMN runner_instance TEXT;
ALTER TABLE deployments ADD COLUMN auto_deploy BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE runners ADD COLUMN last_instance TEXT;
"#,
    },
    Migration {
        version: 3,
        name: "releases: rollbacks and promotions, the auto-deploy pause, queue policies",
        sqlite: r#"
ALTER TABLE deployments ADD COLUMN restores BIGINT;
ALTER TABLE environments ADD COLUMN auto_deploy_paused_by TEXT;
ALTER TABLE environments ADD COLUMN auto_deploy_paused_at TEXT;
ALTER TABLE environments ADD COLUMN auto_deploy_pause_reason TEXT;
ALTER TABLE environments ADD COLUMN auto_deploy_paused_for BIGINT;
ALTER TABLE environments ADD COLUMN queue_policy TEXT NOT NULL DEFAULT 'FIFO';
ALTER TABLE environments ADD COLUMN max_queued BIGINT;
CREATE INDEX deployments_releases ON deployments (environment_id, status, id);
"#,
        postgres: r#"
ALTER TABLE deployments ADD COLUMN restores BIGINT;
ALTER TABLE environments ADD COLUMN auto_deploy_paused_by TEXT;
ALTER TABLE environments ADD COLUMN auto_deploy_paused_at TIMESTAMPTZ;
ALTER TABLE environments ADD COLUMN auto_deploy_pause_reason TEXT;
ALTER TABLE environments ADD COLUMN auto_deploy_paused_for BIGINT;
ALTER TABLE environments ADD COLUMN queue_policy TEXT NOT NULL DEFAULT 'FIFO';
ALTER TABLE environments ADD COLUMN max_queued BIGINT;
CREATE INDEX deployments_releases ON deployments (environment_id, status, id);
"#,
    },
    Migration {
        version: 4,
        name: "commits: the graph of the commits deployed",
        sqlite: r#"
CREATE TABLE commits (
    application_id BIGINT NOT NULL REFERENCES applications (id),
    sha TEXT NOT NULL,
    parents TEXT,
    subject TEXT,
    committed_at TEXT,
    PRIMARY KEY (application_id, sha)
);
"#,
        postgres: r#"
CREATE TABLE commits (
    application_id BIGINT NOT NULL REFERENCES applications (id),
    sha TEXT NOT NULL,
    parents TEXT,
    subject TEXT,
    committed_at TIMESTAMPTZ,
    PRIMARY KEY (application_id, sha)
);
"#,
    },
    Migration {
        version: 5,
        name: "web sessions and one-time sign-in codes",
        sqlite: r#"
CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    subject TEXT NOT NULL,
    role TEXT NOT NULL,
    csrf TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    ended_at TEXT
);
CREATE TABLE sign_in_codes (
    id TEXT PRIMARY KEY,
    subject TEXT NOT NULL,
    role TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    used_at TEXT
);
"#,
        postgres: r#"
CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    subject TEXT NOT NULL,
    role TEXT NOT NULL,
    csrf TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    ended_at TIMESTAMPTZ
);
CREATE TABLE sign_in_codes (
    id TEXT PRIMARY KEY,
    subject TEXT NOT NULL,
    role TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    used_at TIMESTAMPTZ
);
"#,
    },
    Migration {
        version: 6,
        name: "plans: what a deployment would change, asked of a runner",
        sqlite: r#"
CREATE TABLE plans (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    application_id BIGINT NOT NULL REFERENCES applications (id),
    environment_id BIGINT NOT NULL REFERENCES environments (id),
    ref_name TEXT NOT NULL,
    sha TEXT,
    status TEXT NOT NULL,
    runner TEXT,
    result TEXT,
    message TEXT,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    claimed_at TEXT,
    finished_at TEXT
);
CREATE INDEX plans_by_status ON plans (status, id);
"#,
        postgres: r#"
CREATE TABLE plans (
    id BIGSERIAL PRIMARY KEY,
    application_id BIGINT NOT NULL REFERENCES applications (id),
    environment_id BIGINT NOT NULL REFERENCES environments (id),
    ref_name TEXT NOT NULL,
    sha TEXT,
    status TEXT NOT NULL,
    runner TEXT,
    result TEXT,
    message TEXT,
    created_by TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    claimed_at TIMESTAMPTZ,
    finished_at TIMESTAMPTZ
);
CREATE INDEX plans_by_status ON plans (status, id);
"#,
    },
    Migration {
        version: 7,
        name: "how each service of a deployment converges",
        sqlite: r#"
ALTER TABLE deployments ADD COLUMN convergence TEXT;
"#,
        postgres: r#"
ALTER TABLE deployments ADD COLUMN convergence TEXT;
"#,
    },
    Migration {
        version: 8,
        name: "gates: approvals and freeze windows",
        sqlite: r#"
ALTER TABLE environments ADD COLUMN approval_required BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE environments ADD COLUMN approval_not_by_creator BOOLEAN NOT NULL DEFAULT FALSE;
CREATE TABLE freeze_windows (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    environment_id BIGINT NOT NULL REFERENCES environments (id),
    cron TEXT NOT NULL,
    duration_minutes BIGINT NOT NULL,
    time_zone TEXT NOT NULL,
    reason TEXT NOT NULL,
    mode TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX freeze_windows_by_environment ON freeze_windows (environment_id);
ALTER TABLE deployments ADD COLUMN gate TEXT;
ALTER TABLE deployments ADD COLUMN gate_since TEXT;
ALTER TABLE deployments ADD COLUMN gate_until TEXT;
ALTER TABLE deployments ADD COLUMN gate_waiting_for TEXT;
ALTER TABLE deployments ADD COLUMN review_verdict TEXT;
ALTER TABLE deployments ADD COLUMN reviewed_by TEXT;
ALTER TABLE deployments ADD COLUMN reviewed_at TEXT;
ALTER TABLE deployments ADD COLUMN review_comment TEXT;
ALTER TABLE deployments ADD COLUMN freeze_overridden_by TEXT;
ALTER TABLE deployments ADD COLUMN freeze_overridden_at TEXT;
ALTER TABLE deployments ADD COLUMN freeze_override_reason TEXT;
CREATE INDEX deployments_by_gate ON deployments (gate, gate_until);
"#,
        postgres: r#"
ALTER TABLE environments ADD COLUMN approval_required BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE environments ADD COLUMN approval_not_by_creator BOOLEAN NOT NULL DEFAULT FALSE;
CREATE TABLE freeze_windows (
    id BIGSERIAL PRIMARY KEY,
    environment_id BIGINT NOT NULL REFERENCES environments (id),
    cron TEXT NOT NULL,
    duration_minutes BIGINT NOT NULL,
    time_zone TEXT NOT NULL,
    reason TEXT NOT NULL,
    mode TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX freeze_windows_by_environment ON freeze_windows (environment_id);
ALTER TABLE deployments ADD COLUMN gate TEXT;
ALTER TABLE deployments ADD COLUMN gate_since TIMESTAMPTZ;
ALTER TABLE deployments ADD COLUMN gate_until TIMESTAMPTZ;
ALTER TABLE deployments ADD COLUMN gate_waiting_for TEXT;
ALTER TABLE deployments ADD COLUMN review_verdict TEXT;
ALTER TABLE deployments ADD COLUMN reviewed_by TEXT;
ALTER TABLE deployments ADD COLUMN reviewed_at TIMESTAMPTZ;
ALTER TABLE deployments ADD COLUMN review_comment TEXT;
ALTER TABLE deployments ADD COLUMN freeze_overridden_by TEXT;
ALTER TABLE deployments ADD COLUMN freeze_overridden_at TIMESTAMPTZ;
ALTER TABLE deployments ADD COLUMN freeze_override_reason TEXT;
CREATE INDEX deployments_by_gate ON deployments (gate, gate_until);
"#,
    },
    Migration {
        version: 9,
        name: "deployments that run one task of the spec alone",
        sqlite: r#"
ALTER TABLE deployments ADD COLUMN runs_task TEXT;
"#,
        postgres: r#"
ALTER TABLE deployments ADD COLUMN runs_task TEXT;
"#,
    },
    Migration {
        version: 10,
        name: "gates: required CI checks",
        sqlite: r#"
ALTER TABLE environments ADD COLUMN required_checks TEXT;
ALTER TABLE environments ADD COLUMN required_checks_all BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE environments ADD COLUMN required_checks_timeout_minutes BIGINT NOT NULL DEFAULT 60;
ALTER TABLE deployments ADD COLUMN checks_required TEXT;
ALTER TABLE deployments ADD COLUMN checks TEXT;
ALTER TABLE deployments ADD COLUMN checks_reported_at TEXT;
ALTER TABLE deployments ADD COLUMN checks_forced_by TEXT;
"#,
        postgres: r#"
ALTER TABLE environments ADD COLUMN required_checks TEXT;
ALTER TABLE environments ADD COLUMN required_checks_all BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE environments ADD COLUMN required_checks_timeout_minutes BIGINT NOT NULL DEFAULT 60;
ALTER TABLE deployments ADD COLUMN checks_required TEXT;
ALTER TABLE deployments ADD COLUMN checks TEXT;
ALTER TABLE deployments ADD COLUMN checks_reported_at TIMESTAMPTZ;
ALTER TABLE deployments ADD COLUMN checks_forced_by TEXT;
"#,
    },
    Migration {
        version: 11,
        name: "notifications: an outbox of deliveries, filled by triggers in the transaction of each change",
        sqlite: r#"
CREATE TABLE notifications (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    environment_id BIGINT NOT NULL REFERENCES environments (id),
    -- Set for one deployment's news only (a chat command's answer).
    deployment_id BIGINT REFERENCES deployments (id),
    kind TEXT NOT NULL,
    target TEXT NOT NULL,
    secret TEXT,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    disabled_at TEXT,
    disabled_reason TEXT,
    removed_at TEXT
);
CREATE INDEX notifications_by_environment ON notifications (environment_id);
CREATE TABLE notification_events (
    notification_id BIGINT NOT NULL REFERENCES notifications (id),
    event TEXT NOT NULL,
    PRIMARY KEY (notification_id, event)
);
CREATE TABLE deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    notification_id BIGINT NOT NULL REFERENCES notifications (id),
    deployment_id BIGINT NOT NULL REFERENCES deployments (id),
    event TEXT NOT NULL,
    occurred_at TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'PENDING',
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    locked_until TEXT,
    last_attempt_at TEXT,
    last_answer TEXT,
    body TEXT,
    delivered_at TEXT
);
CREATE INDEX deliveries_pending ON deliveries (state, next_attempt_at);
CREATE INDEX deliveries_by_notification ON deliveries (notification_id, deployment_id, id);
CREATE INDEX deliveries_by_deployment ON deliveries (deployment_id);
CREATE TRIGGER deployments_queued_deliveries AFTER INSERT ON deployments
BEGIN
    INSERT INTO deliveries (notification_id, deployment_id, event, occurred_at, next_attempt_at)
    SELECT n.id, NEW.id, e.event, NEW.created_at, NEW.created_at
    FROM notifications n JOIN notification_events e ON e.notification_id = n.id
    WHERE n.environment_id = NEW.environment_id AND n.disabled_at IS NULL
        AND n.removed_at IS NULL
        AND (n.deployment_id IS NULL OR n.deployment_id = NEW.id) AND e.event = 'QUEUED';
END;
CREATE TRIGGER deployments_status_deliveries AFTER UPDATE OF status ON deployments
WHEN NEW.status <> OLD.status
BEGIN
    INSERT INTO deliveries (notification_id, deployment_id, event, occurred_at, next_attempt_at)
    SELECT n.id, NEW.id, e.event, ev.at, ev.at
    FROM (SELECT CASE NEW.status
                WHEN 'IN_PROGRESS' THEN 'STARTED'
                WHEN 'SUCCEEDED' THEN 'SUCCEEDED'
                WHEN 'CANCELLED' THEN 'CANCELLED'
                WHEN 'FAILED' THEN
                    CASE WHEN NEW.phase = 'ROLLING_BACK' THEN 'ROLLED_BACK' ELSE 'FAILED' END
            END AS event,
            COALESCE(NEW.finished_at, NEW.started_at, NEW.created_at) AS at) ev
    JOIN notification_events e ON e.event = ev.event
    JOIN notifications n ON n.id = e.notification_id
    WHERE n.environment_id = NEW.environment_id AND n.disabled_at IS NULL
        AND n.removed_at IS NULL
        AND (n.deployment_id IS NULL OR n.deployment_id = NEW.id);
END;
"#,
        postgres: r#"
CREATE TABLE notifications (
    id BIGSERIAL PRIMARY KEY,
    environment_id BIGINT NOT NULL REFERENCES environments (id),
    -- Set for one deployment's news only (a chat command's answer).
    deployment_id BIGINT REFERENCES deployments (id),
    kind TEXT NOT NULL,
    target TEXT NOT NULL,
    secret TEXT,
    created_by TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    disabled_at TIMESTAMPTZ,
    disabled_reason TEXT,
    removed_at TIMESTAMPTZ
);
CREATE INDEX notifications_by_environment ON notifications (environment_id);
CREATE TABLE notification_events (
    notification_id BIGINT NOT NULL REFERENCES notifications (id),
    event TEXT NOT NULL,
    PRIMARY KEY (notification_id, event)
);
CREATE TABLE deliveries (
    id BIGSERIAL PRIMARY KEY,
    notification_id BIGINT NOT NULL REFERENCES notifications (id),
    deployment_id BIGINT NOT NULL REFERENCES deployments (id),
    event TEXT NOT NULL,
    occurred_at TIMESTAMPTZ NOT NULL,
    state TEXT NOT NULL DEFAULT 'PENDING',
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL,
    locked_until TIMESTAMPTZ,
    last_attempt_at TIMESTAMPTZ,
    last_answer TEXT,
    body TEXT,
    delivered_at TIMESTAMPTZ
);
CREATE INDEX deliveries_pending ON deliveries (state, next_attempt_at);
CREATE INDEX deliveries_by_notification ON deliveries (notification_id, deployment_id, id);
CREATE INDEX deliveries_by_deployment ON deliveries (deployment_id);
CREATE FUNCTION slipway_deployment_deliveries() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    ev TEXT;
    at TIMESTAMPTZ;
BEGIN
    IF TG_OP = 'INSERT' THEN
        ev := 'QUEUED';
        at := NEW.created_at;
    ELSIF NEW.status IS DISTINCT FROM OLD.status THEN
        ev := CASE NEW.status
            WHEN 'IN_PROGRESS' THEN 'STARTED'
            WHEN 'SUCCEEDED' THEN 'SUCCEEDED'
            WHEN 'CANCELLED' THEN 'CANCELLED'
            WHEN 'FAILED' THEN
                CASE WHEN NEW.phase = 'ROLLING_BACK' THEN 'ROLLED_BACK' ELSE 'FAILED' END
        END;
        at := COALESCE(NEW.finished_at, NEW.started_at, NEW.created_at);
    END IF;
    IF ev IS NOT NULL THEN
        INSERT INTO deliveries (notification_id, deployment_id, event, occurred_at, next_attempt_at)
        SELECT n.id, NEW.id, e.event, at, at
        FROM notifications n JOIN notification_events e ON e.notification_id = n.id
        WHERE n.environment_id = NEW.environment_id AND n.disabled_at IS NULL
            AND n.removed_at IS NULL
        AND (n.deployment_id IS NULL OR n.deployment_id = NEW.id) AND e.event = ev;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER deployments_deliveries AFTER INSERT OR UPDATE OF status ON deployments
    FOR EACH ROW EXECUTE FUNCTION slipway_deployment_deliveries();
"#,
    },
    Migration {
        version: 12,
        name: "the audit log: every action, by whom, from where, and how it ended; names, not references, so it outlives what it names",
        sqlite: r#"
CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    role TEXT,
    via TEXT NOT NULL,
    action TEXT NOT NULL,
    application TEXT,
    environment TEXT,
    object TEXT,
    arguments TEXT,
    ip TEXT,
    forwarded_for TEXT,
    user_agent TEXT,
    result TEXT NOT NULL,
    error TEXT
);
CREATE INDEX audit_log_application ON audit_log (application, id);
CREATE INDEX audit_log_actor ON audit_log (actor, id);
"#,
        postgres: r#"
CREATE TABLE audit_log (
    id BIGSERIAL PRIMARY KEY,
    at TIMESTAMPTZ NOT NULL,
    actor TEXT NOT NULL,
    role TEXT,
    via TEXT NOT NULL,
    action TEXT NOT NULL,
    application TEXT,
    environment TEXT,
    object TEXT,
    arguments TEXT,
    ip TEXT,
    forwarded_for TEXT,
    user_agent TEXT,
    result TEXT NOT NULL,
    error TEXT
);
CREATE INDEX audit_log_application ON audit_log (application, id);
CREATE INDEX audit_log_actor ON audit_log (actor, id);
"#,
    },
    Migration {
        version: 13,
        name: "runner pools: the labels a runner needs to deploy an environment; each API replica's last sign of life",
        sqlite: r#"
ALTER TABLE environments ADD COLUMN runner_labels TEXT;
CREATE TABLE api_replicas (
    instance TEXT PRIMARY KEY,
    started_at TEXT NOT NULL,
    last_seen_at TEXT NOT NULL
);
"#,
        postgres: r#"
ALTER TABLE environments ADD COLUMN runner_labels TEXT;
CREATE TABLE api_replicas (
    instance TEXT PRIMARY KEY,
    started_at TIMESTAMPTZ NOT NULL,
    last_seen_at TIMESTAMPTZ NOT NULL
);
"#,
    },
    Migration {
        version: 14,
        name: "what runs where: each environment's services, task by task and node by node, as a runner last saw them",
        sqlite: r#"
ALTER TABLE environments ADD COLUMN observed TEXT;
ALTER TABLE environments ADD COLUMN observed_at TEXT;
ALTER TABLE environments ADD COLUMN observed_by TEXT;
"#,
        postgres: r#"
ALTER TABLE environments ADD COLUMN observed TEXT;
ALTER TABLE environments ADD COLUMN observed_at TIMESTAMPTZ;
ALTER TABLE environments ADD COLUMN observed_by TEXT;
"#,
    },
    Migration {
        version: 15,
        name: "the event log on PostgreSQL: every change of a deployment, environment, plan and log, numbered and notified in its own transaction, for every API replica",
        // SQLite has one API process, whose event stream is in memory.
        sqlite: "SELECT 1;",
        postgres: r#"
CREATE TABLE events (
    id BIGSERIAL PRIMARY KEY,
    at TIMESTAMPTZ NOT NULL DEFAULT now(),
    kind TEXT NOT NULL,
    application_id BIGINT NOT NULL,
    environment_id BIGINT NOT NULL,
    deployment_id BIGINT,
    plan_id BIGINT,
    status TEXT,
    first_seq BIGINT,
    last_seq BIGINT,
    -- A deployment as this change left it.
    snapshot JSONB
);
CREATE INDEX events_by_at ON events (at);
-- Every event up to `through` was pruned: a replay from before it misses some.
CREATE TABLE events_pruned (through BIGINT NOT NULL);
INSERT INTO events_pruned (through) VALUES (0);

CREATE FUNCTION slipway_notify_event(event BIGINT) RETURNS VOID
LANGUAGE sql AS $$ SELECT pg_notify('slipway_events', event::text) $$;

-- Heartbeats and log counts are not changes anyone follows.
CREATE FUNCTION slipway_deployment_event() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    event BIGINT;
BEGIN
    IF TG_OP = 'UPDATE' AND
        (to_jsonb(OLD) - ARRAY['last_heartbeat_at', 'lease_expires_at', 'log_count'])
        = (to_jsonb(NEW) - ARRAY['last_heartbeat_at', 'lease_expires_at', 'log_count'])
    THEN
        RETURN NULL;
    END IF;
    INSERT INTO events (kind, application_id, environment_id, deployment_id, status, snapshot)
    VALUES ('deployment', NEW.application_id, NEW.environment_id, NEW.id, NEW.status, to_jsonb(NEW))
    RETURNING id INTO event;
    PERFORM slipway_notify_event(event);
    RETURN NULL;
END
$$;
CREATE TRIGGER deployments_events AFTER INSERT OR UPDATE ON deployments
    FOR EACH ROW EXECUTE FUNCTION slipway_deployment_event();

-- What a runner saw of the swarm changes only when the services did.
CREATE FUNCTION slipway_environment_event() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    event BIGINT;
BEGIN
    IF (to_jsonb(OLD) - ARRAY['observed_at', 'observed_by'])
        = (to_jsonb(NEW) - ARRAY['observed_at', 'observed_by'])
    THEN
        RETURN NULL;
    END IF;
    INSERT INTO events (kind, application_id, environment_id)
    VALUES ('environment', NEW.application_id, NEW.id)
    RETURNING id INTO event;
    PERFORM slipway_notify_event(event);
    RETURN NULL;
END
$$;
CREATE TRIGGER environments_events AFTER UPDATE ON environments
    FOR EACH ROW EXECUTE FUNCTION slipway_environment_event();

CREATE FUNCTION slipway_plan_event() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    event BIGINT;
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.status = NEW.status THEN
        RETURN NULL;
    END IF;
    INSERT INTO events (kind, application_id, environment_id, plan_id, status)
    VALUES ('plan', NEW.application_id, NEW.environment_id, NEW.id, NEW.status)
    RETURNING id INTO event;
    PERFORM slipway_notify_event(event);
    RETURN NULL;
END
$$;
CREATE TRIGGER plans_events AFTER INSERT OR UPDATE OF status ON plans
    FOR EACH ROW EXECUTE FUNCTION slipway_plan_event();

-- One event per deployment per batch of lines.
CREATE FUNCTION slipway_log_event() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    event BIGINT;
BEGIN
    FOR event IN
        INSERT INTO events (kind, application_id, environment_id, deployment_id, first_seq, last_seq)
        SELECT 'logs', d.application_id, d.environment_id, l.deployment_id, l.first, l.last
        FROM (SELECT deployment_id, min(seq) AS first, max(seq) AS last
              FROM stored GROUP BY deployment_id) l
        JOIN deployments d ON d.id = l.deployment_id
        RETURNING id
    LOOP
        PERFORM slipway_notify_event(event);
    END LOOP;
    RETURN NULL;
END
$$;
CREATE TRIGGER deployment_logs_events AFTER INSERT ON deployment_logs
    REFERENCING NEW TABLE AS stored
    FOR EACH STATEMENT EXECUTE FUNCTION slipway_log_event();
"#,
    },
];

/// The lock that API processes migrating at once take in turn (PostgreSQL).
const LOCK: &str = "SELECT pg_advisory_xact_lock(7357009)";

/// Applies every migration the database does not have yet, in order, and
/// returns how many were applied.
pub(crate) async fn run(db: &DatabaseConnection) -> Result<usize, DbErr> {
    let backend = db.get_database_backend();
    let txn = db.begin().await?;
    if backend == DatabaseBackend::Postgres {
        // Two API replicas starting at once on a new database: creating the
        // same table twice at once fails (on `pg_type`), even with `IF NOT
        // EXISTS`.
        txn.execute_unprepared(LOCK).await?;
    }
    txn.execute_unprepared(
        "CREATE TABLE IF NOT EXISTS slipway_migrations (
            version BIGINT PRIMARY KEY,
            name TEXT NOT NULL,
            applied_at TEXT NOT NULL
        )",
    )
    .await?;
    txn.commit().await?;
    let mut applied = 0;
    for migration in MIGRATIONS {
        let txn = db.begin().await?;
        if backend == DatabaseBackend::Postgres {
            // Two API processes starting at once must not both migrate.
            txn.execute_unprepared(LOCK).await?;
        }
        let done = txn
            .query_one(Statement::from_sql_and_values(
                backend,
                match backend {
                    DatabaseBackend::Postgres => {
                        "SELECT version FROM slipway_migrations WHERE version = $1"
                    }
                    _ => "SELECT version FROM slipway_migrations WHERE version = ?",
                },
                [migration.version.into()],
            ))
            .await?
            .is_some();
        if done {
            continue;
        }
        let sql = match backend {
            DatabaseBackend::Postgres => migration.postgres,
            _ => migration.sqlite,
        };
        txn.execute_unprepared(sql).await?;
        txn.execute(Statement::from_sql_and_values(
            backend,
            match backend {
                DatabaseBackend::Postgres => {
                    "INSERT INTO slipway_migrations (version, name, applied_at) VALUES ($1, $2, $3)"
                }
                _ => "INSERT INTO slipway_migrations (version, name, applied_at) VALUES (?, ?, ?)",
            },
            [
                migration.version.into(),
                migration.name.into(),
                chrono::Utc::now().to_rfc3339().into(),
            ],
        ))
        .await?;
        txn.commit().await?;
        tracing::info!(
            version = migration.version,
            name = migration.name,
            "applied migration"
        );
        applied += 1;
    }
    Ok(applied)
}
