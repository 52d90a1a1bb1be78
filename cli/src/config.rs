//! The `slipway` command line. Every flag can also be set from a `SLIPWAY_*`
//! environment variable; `Debug` never shows a secret.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use slipway_api::auth::{parse_ttl, Role};
use slipway_secret::Secret;

#[derive(Parser, Debug)]
#[command(
    name = "slipway",
    version,
    about = "Slipway: deployments to Docker Swarm. `slipway up` runs it all on one machine; \
             the other commands talk to its API."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// How answers are printed: tables and sentences for people, or JSON for scripts.
    #[arg(
        long,
        short,
        global = true,
        env = "SLIPWAY_OUTPUT",
        default_value = "text"
    )]
    pub output: Output,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run Slipway on this machine: API, runner and hook provider in one process.
    ///
    /// The API serves on embedded SQLite in the data directory, the runner
    /// deploys to the local Docker engine (which must be a swarm manager) and
    /// the provider takes hooks. Prints the URLs and an admin token; stops on
    /// Ctrl-C or SIGTERM.
    Up(Box<UpConfig>),
    /// Applications.
    #[command(subcommand)]
    App(AppCommand),
    /// Environments of an application.
    #[command(subcommand)]
    Env(EnvCommand),
    /// Deploy a branch, tag or commit to an environment.
    Deploy(DeployArgs),
    /// What runs where: per environment the release, the lock, what is in progress
    /// and a paused auto-deploy; `--against ENV` compares the others with ENV;
    /// `--nodes` shows every task on every node and the drift from the release.
    Status(StatusArgs),
    /// The deployment history of an application, newest first.
    Deployments(DeploymentsArgs),
    /// What was done, by whom, from where, and how it ended: the audit log,
    /// newest first (admins).
    Audit(AuditArgs),
    /// The runners: their labels, version, instance, whether each is
    /// connected or lost, and what each holds.
    Runners(ApiArgs),
    /// What ran in an environment, newest first: per release the images it
    /// changed, who deployed it, when, and for how long it served.
    Releases(ReleasesArgs),
    /// Queue a deployment that restores an earlier release of an environment
    /// exactly (its commit and image digests); pauses auto-deploys there.
    Rollback(RollbackArgs),
    /// Let pushes and pipelines deploy an environment again after a rollback
    /// paused them.
    Resume(EnvArgs),
    /// The log of a deployment.
    Logs(LogsArgs),
    /// Cancel a deployment: a queued one at once; one in progress is stopped and rolled back.
    Cancel(CancelArgs),
    /// Approve a deployment that waits for an approval; it then goes in its turn.
    Approve(ApproveArgs),
    /// Reject a deployment that waits for an approval: it ends CANCELLED with the comment.
    Reject(RejectArgs),
    /// Let a deployment through the freeze window it waits for (needs an
    /// admin token); the reason is kept with it.
    OverrideFreeze(OverrideFreezeArgs),
    /// Print a signed API token, with the secret `slipway up` uses.
    Token(TokenConfig),
}

#[derive(Args, Clone)]
pub struct UpConfig {
    /// Where Slipway keeps its database, JWT secret, repository mirrors and
    /// provider journal. Created when missing.
    #[arg(long, env = "SLIPWAY_DATA_DIR", default_value = ".slipway")]
    pub data_dir: PathBuf,
    /// Address the API (GraphQL, GraphiQL) listens on.
    #[arg(long, env = "SLIPWAY_LISTEN", default_value = "127.0.0.1:8700")]
    pub listen: SocketAddr,
    /// Address the hook endpoints (`/hooks/github`, `/hooks/gitlab`, `/hooks/generic`) listen on.
    #[arg(
        long,
        env = "SLIPWAY_PROVIDER_LISTEN",
        default_value = "127.0.0.1:8701"
    )]
    pub hooks_listen: SocketAddr,
    /// Where people open deployments (e.g. https://slipway.example.com): deployments
    /// and GitHub statuses link to `<url>/deployments/<id>`. Default: no links.
    #[arg(long, env = "SLIPWAY_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Docker engine to deploy to (`unix:///var/run/docker.sock`, `tcp://host:2375`);
    /// default `DOCKER_HOST` or the local socket. It must be a swarm manager.
    #[arg(long, env = "SLIPWAY_DOCKER_HOST")]
    pub docker_host: Option<String>,
    /// How long the printed admin token is valid (e.g. 12h, 30d).
    #[arg(long, env = "SLIPWAY_ADMIN_TOKEN_TTL", default_value = "30d", value_parser = parse_ttl)]
    pub admin_token_ttl: chrono::Duration,
    /// How long a runner's claim holds without a heartbeat (e.g. 30s, 2m).
    #[arg(long, env = "SLIPWAY_LEASE", default_value = "30s", value_parser = parse_ttl)]
    pub lease: chrono::Duration,
    /// A `KEY=value` file: values for Compose interpolation and swarm secrets,
    /// masked in every log line.
    #[arg(long, env = "SLIPWAY_SECRETS_FILE")]
    pub secrets_file: Option<PathBuf>,
    #[command(flatten)]
    pub git: slipway_runner::config::GitConfig,
    #[command(flatten)]
    pub registry: slipway_runner::config::RegistryConfig,
    #[command(flatten)]
    pub hooks: slipway_provider::config::Hooks,
}

impl std::fmt::Debug for UpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpConfig")
            .field("data_dir", &self.data_dir)
            .field("listen", &self.listen)
            .field("hooks_listen", &self.hooks_listen)
            .field("public_url", &self.public_url)
            .field("docker_host", &self.docker_host)
            .field("admin_token_ttl", &self.admin_token_ttl)
            .field("lease", &self.lease)
            .field("secrets_file", &self.secrets_file)
            .field("git", &self.git)
            .field("registry", &self.registry)
            .field("hooks", &self.hooks)
            .finish()
    }
}

/// Where the API is and who is asking: the flags of every client command.
#[derive(Args, Clone, Debug)]
pub struct ApiArgs {
    /// The API's root URL.
    #[arg(long, env = "SLIPWAY_API_URL", default_value = "http://127.0.0.1:8700")]
    pub api_url: String,
    /// An API token (`slipway up` prints an admin one; `slipway token` signs others).
    #[arg(long, env = "SLIPWAY_TOKEN", hide_env_values = true)]
    pub token: Option<Secret>,
    /// File holding the API token (trailing newlines are not part of it).
    #[arg(long, env = "SLIPWAY_TOKEN_FILE", conflicts_with = "token")]
    pub token_file: Option<PathBuf>,
}

impl ApiArgs {
    /// The token, or a sentence saying how to give one.
    pub fn token(&self) -> Result<String, String> {
        let token = slipway_secret::read("token", self.token.as_ref(), self.token_file.as_deref())
            .map_err(|err| err.to_string())?
            .ok_or_else(|| {
                "no API token: set SLIPWAY_TOKEN or --token (`slipway up` prints an \
                     admin token; `slipway token --role deployer --subject NAME` signs others)"
                    .to_owned()
            })?;
        Ok(token.expose().to_owned())
    }
}

#[derive(Subcommand, Debug)]
pub enum AppCommand {
    /// Create an application (needs an admin token).
    Create(AppCreateArgs),
}

#[derive(Args, Debug)]
pub struct AppCreateArgs {
    /// The application's name: lowercase letters, digits, `-`, `_`, `.`; the default stack name.
    pub name: String,
    /// Where the runner clones from: a URL (`https://`, `ssh://`, `git://`,
    /// `file://`), `git@host:owner/name.git`, or a local path (made a `file://` URL).
    pub repository: String,
    /// Path of the deploy spec in the repository (default `slipway.yml`).
    #[arg(long)]
    pub spec_path: Option<String>,
    #[command(flatten)]
    pub api: ApiArgs,
}

#[derive(Subcommand, Debug)]
pub enum EnvCommand {
    /// Create an environment (needs an admin token).
    Create(EnvCreateArgs),
    /// Refuse new deployments to an environment until it is unlocked.
    Lock(EnvLockArgs),
    /// Accept deployments to an environment again.
    Unlock(EnvArgs),
    /// Whether new deployments to an environment wait for a deployer's
    /// approval (`slipway approve`); without `--required`, they do not.
    Approval(EnvApprovalArgs),
    /// Add a freeze window (needs an admin token): from each time `--cron`
    /// names, for `--duration`, new deployments wait for its end (or, with
    /// `--refuse`, are refused). Rollbacks pass.
    Freeze(EnvFreezeArgs),
    /// The freeze windows of an environment, and whether each is in force.
    Freezes(EnvArgs),
    /// Remove a freeze window, by its id (needs an admin token).
    Unfreeze(EnvUnfreezeArgs),
    /// Tell a Slack incoming webhook, a signed webhook or a Sentry project
    /// about an environment's deployments (needs an admin token).
    Notify(EnvNotifyArgs),
    /// Where an environment's deployments are told, and how the last
    /// message to each went.
    Notifications(EnvArgs),
    /// Stop telling a notification, by its id (needs an admin token).
    Unnotify(EnvUnnotifyArgs),
    /// Which CI checks new deployments to an environment wait for (gate
    /// CHECKS, read by the provider from GitHub or GitLab): each NAME, and
    /// with `--all` every check on the commit; with neither, none.
    Checks(EnvChecksArgs),
    /// Which runners may deploy an environment (needs an admin token):
    /// those started with every LABEL (`--label swarm=prod-eu`); with none,
    /// any runner.
    Runners(EnvRunnersArgs),
}

#[derive(Args, Debug)]
pub struct EnvRunnersArgs {
    /// The application's name.
    pub application: String,
    /// The environment's name.
    pub environment: String,
    /// Labels a runner must have (`swarm=prod-eu`).
    #[arg(value_name = "LABEL")]
    pub labels: Vec<String>,
    #[command(flatten)]
    pub api: ApiArgs,
}

#[derive(Args, Debug)]
pub struct EnvChecksArgs {
    /// The application's name.
    pub application: String,
    /// The environment's name.
    pub environment: String,
    /// Checks that must pass: status contexts or check run names
    /// (`ci/build`, `test`); on GitLab, `pipeline`.
    #[arg(value_name = "NAME")]
    pub names: Vec<String>,
    /// Every check the forge reports on the commit must pass too (and at
    /// least one must be reported); `deploy --force` skips those not named.
    #[arg(long)]
    pub all: bool,
    /// Minutes a deployment waits for its checks before it fails (60 unless
    /// set; kept when left out).
    #[arg(long, value_name = "MINUTES")]
    pub timeout: Option<i64>,
    #[command(flatten)]
    pub api: ApiArgs,
}

#[derive(Args, Debug)]
pub struct EnvFreezeArgs {
    /// The application's name.
    pub application: String,
    /// The environment's name.
    pub environment: String,
    /// When each occurrence starts: five fields, read in `--time-zone`
    /// (`0 16 * * FRI` is Fridays at 16:00).
    #[arg(long)]
    pub cron: String,
    /// How long each occurrence lasts (`90m`, `64h`, `2d`).
    #[arg(long, value_parser = parse_ttl)]
    pub duration: chrono::Duration,
    /// The IANA time zone the cron is read in (`Europe/Berlin`).
    #[arg(long, default_value = "UTC")]
    pub time_zone: String,
    /// Why; shown to whoever deploys in the window.
    #[arg(long)]
    pub reason: String,
    /// Refuse new deployments in the window instead of holding them.
    #[arg(long)]
    pub refuse: bool,
    #[command(flatten)]
    pub api: ApiArgs,
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["slack", "webhook", "sentry"])))]
pub struct EnvNotifyArgs {
    /// The application's name.
    pub application: String,
    /// The environment's name.
    pub environment: String,
    /// A Slack incoming webhook's URL.
    #[arg(long, value_name = "URL")]
    pub slack: Option<String>,
    /// A receiver's URL: JSON signed per the Standard Webhooks specification.
    #[arg(long, value_name = "URL")]
    pub webhook: Option<String>,
    /// A Sentry project's page (https://sentry.io/organizations/ORG/projects/PROJECT/).
    #[arg(long, value_name = "URL")]
    pub sentry: Option<String>,
    /// What to tell, comma-separated (queued, started, succeeded, failed,
    /// rolled-back, cancelled); by default all but queued (Sentry: started,
    /// succeeded).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub events: Vec<NotifyEvent>,
    /// File holding the webhook's signing secret (`whsec_…`; one is made and
    /// printed once without it) or the Sentry token.
    #[arg(long)]
    pub secret_file: Option<PathBuf>,
    #[command(flatten)]
    pub api: ApiArgs,
}

/// An event a notification is sent for.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotifyEvent {
    Queued,
    Started,
    Succeeded,
    Failed,
    RolledBack,
    Cancelled,
}

#[derive(Args, Debug)]
pub struct EnvUnnotifyArgs {
    /// The notification's id (as `slipway env notifications` prints it).
    pub id: String,
    #[command(flatten)]
    pub api: ApiArgs,
}

#[derive(Args, Debug)]
pub struct EnvUnfreezeArgs {
    /// The freeze window's id (as `slipway env freezes` prints it).
    pub id: String,
    #[command(flatten)]
    pub api: ApiArgs,
}

#[derive(Args, Debug)]
pub struct OverrideFreezeArgs {
    /// The deployment's id.
    pub id: String,
    /// Why it may go now; kept with the deployment (required).
    #[arg(long)]
    pub reason: String,
    #[command(flatten)]
    pub api: ApiArgs,
}

#[derive(Args, Debug)]
pub struct EnvApprovalArgs {
    /// The application's name.
    pub application: String,
    /// The environment's name.
    pub environment: String,
    /// New deployments wait for an approval.
    #[arg(long)]
    pub required: bool,
    /// ... which their creator may not give.
    #[arg(long, requires = "required")]
    pub not_by_creator: bool,
    #[command(flatten)]
    pub api: ApiArgs,
}

#[derive(Args, Debug)]
pub struct EnvArgs {
    /// The application's name.
    pub application: String,
    /// The environment's name (`production`, `staging`, ...).
    pub environment: String,
    #[command(flatten)]
    pub api: ApiArgs,
}

#[derive(Args, Debug)]
pub struct EnvCreateArgs {
    /// The application's name.
    pub application: String,
    /// The environment's name (`production`, `staging`, ...).
    pub environment: String,
    /// Branch whose pushes deploy here automatically.
    #[arg(long)]
    pub auto_deploy_ref: Option<String>,
    /// Where the environment is reachable.
    #[arg(long)]
    pub url: Option<String>,
    /// A label a runner must have to deploy it (`swarm=prod-eu`; repeat for
    /// more); any runner may without one.
    #[arg(long = "runner-label", value_name = "LABEL")]
    pub runner_labels: Vec<String>,
    #[command(flatten)]
    pub api: ApiArgs,
}

#[derive(Args, Debug)]
pub struct EnvLockArgs {
    /// The application's name.
    pub application: String,
    /// The environment's name (`production`, `staging`, ...).
    pub environment: String,
    /// Why: shown to whoever tries to deploy.
    #[arg(long)]
    pub reason: String,
    #[command(flatten)]
    pub api: ApiArgs,
}

#[derive(Args, Debug)]
pub struct DeployArgs {
    /// The application's name.
    pub application: String,
    /// The environment's name (`production`, `staging`, ...).
    pub environment: String,
    /// Branch, tag or commit to deploy.
    #[arg(value_name = "REF")]
    pub reference: String,
    /// The commit `REF` is at, when you know it.
    #[arg(long)]
    pub sha: Option<String>,
    /// Run this task of the spec alone (`migrate`), through the same queue
    /// and lock, rolling nothing out; without it the stack rolls out.
    #[arg(long)]
    pub task: Option<String>,
    /// A note shown with the deployment.
    #[arg(long)]
    pub description: Option<String>,
    /// Go past the freeze windows in force now, `--refuse` ones too, for
    /// this reason (needs an admin token); kept with the deployment.
    #[arg(long, value_name = "REASON")]
    pub override_freeze: Option<String>,
    /// Go past the checks the environment does not name as required (with
    /// `env checks --all`); recorded as forced by you.
    #[arg(long)]
    pub force: bool,
    /// Follow the deployment until it ends; exit non-zero unless it succeeds.
    #[arg(long, short)]
    pub follow: bool,
    #[command(flatten)]
    pub api: ApiArgs,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Only this application.
    pub application: Option<String>,
    /// Compare every other environment of the application with this one:
    /// which services run other images, and whether the commit differs.
    #[arg(long, value_name = "ENV", requires = "application")]
    pub against: Option<String>,
    /// What runs where instead: per environment every task of its stack,
    /// on which node, at which digest, and how that drifted from the
    /// release, as a runner last saw the swarm.
    #[arg(long, conflicts_with = "against")]
    pub nodes: bool,
    #[command(flatten)]
    pub api: ApiArgs,
}

#[derive(Args, Debug)]
pub struct DeploymentsArgs {
    /// The application's name.
    pub application: String,
    /// Only this environment.
    pub environment: Option<String>,
    /// How many, newest first.
    #[arg(long, default_value_t = 20)]
    pub limit: i64,
    #[command(flatten)]
    pub api: ApiArgs,
}

#[derive(Args, Debug)]
pub struct AuditArgs {
    /// Only what was done to this application.
    #[arg(long)]
    pub application: Option<String>,
    /// Only what this subject did.
    #[arg(long)]
    pub actor: Option<String>,
    /// How many, newest first.
    #[arg(long, default_value_t = 50)]
    pub limit: i64,
    #[command(flatten)]
    pub api: ApiArgs,
}

#[derive(Args, Debug)]
pub struct ReleasesArgs {
    /// The application's name.
    pub application: String,
    /// The environment's name (`production`, `staging`, ...).
    pub environment: String,
    /// How many, newest first (at most 100).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(i64).range(1..=100))]
    pub limit: i64,
    #[command(flatten)]
    pub api: ApiArgs,
}

#[derive(Args, Debug)]
pub struct RollbackArgs {
    /// The application's name.
    pub application: String,
    /// The environment's name (`production`, `staging`, ...).
    pub environment: String,
    /// The release to restore, by number (`41` or `web#41`, as `slipway
    /// releases` shows them); default the one before the current release.
    #[arg(long, value_name = "N")]
    pub to: Option<String>,
    /// Why: shown with the rollback and on the auto-deploy pause it sets.
    #[arg(long)]
    pub reason: String,
    /// Follow the rollback until it ends; exit non-zero unless it succeeds.
    #[arg(long, short)]
    pub follow: bool,
    #[command(flatten)]
    pub api: ApiArgs,
}

#[derive(Args, Debug)]
pub struct LogsArgs {
    /// The deployment's id (as `deploy`, `status` and `deployments` print it).
    pub id: String,
    /// Keep printing lines until the deployment ends; exit non-zero unless it succeeds.
    #[arg(long, short)]
    pub follow: bool,
    #[command(flatten)]
    pub api: ApiArgs,
}

#[derive(Args, Debug)]
pub struct ApproveArgs {
    /// The deployment's id.
    pub id: String,
    /// Why it may go; kept with the approval.
    #[arg(long, short)]
    pub comment: Option<String>,
    #[command(flatten)]
    pub api: ApiArgs,
}

#[derive(Args, Debug)]
pub struct RejectArgs {
    /// The deployment's id.
    pub id: String,
    /// Why it may not go; kept with the rejection (required).
    #[arg(long, short)]
    pub comment: String,
    #[command(flatten)]
    pub api: ApiArgs,
}

#[derive(Args, Debug)]
pub struct CancelArgs {
    /// The deployment's id.
    pub id: String,
    #[command(flatten)]
    pub api: ApiArgs,
}

#[derive(Args, Clone)]
pub struct TokenConfig {
    /// What the token allows.
    #[arg(long, value_enum)]
    pub role: Role,
    /// Who the token is for: a person, or a runner's or provider's name.
    #[arg(long)]
    pub subject: String,
    /// How long the token is valid (e.g. 12h, 30d).
    #[arg(long, default_value = "30d", value_parser = parse_ttl)]
    pub ttl: chrono::Duration,
    /// The data directory of `slipway up`, whose JWT secret signs the token.
    #[arg(long, env = "SLIPWAY_DATA_DIR", default_value = ".slipway")]
    pub data_dir: PathBuf,
    /// The secret itself, when the API runs elsewhere (`slipway-api --jwt-secret`).
    #[arg(long, env = "SLIPWAY_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// File holding the secret.
    #[arg(long, env = "SLIPWAY_JWT_SECRET_FILE", conflicts_with = "jwt_secret")]
    pub jwt_secret_file: Option<PathBuf>,
}

impl std::fmt::Debug for TokenConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenConfig")
            .field("role", &self.role)
            .field("subject", &self.subject)
            .field("ttl", &self.ttl)
            .field("data_dir", &self.data_dir)
            .field(
                "jwt_secret",
                &self.jwt_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("jwt_secret_file", &self.jwt_secret_file)
            .finish()
    }
}
