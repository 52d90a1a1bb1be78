//! `slipway up`: the API, a runner and the provider in one process, for one
//! machine.
//!
//! The engine is checked before anything else: an engine that cannot be
//! reached or is not a swarm manager stops `up` with how to fix it, instead
//! of a runner failing every deployment later. The runner and the provider
//! talk to the API over its socket with tokens minted here, exactly as they do
//! when they run as separate processes.

use std::future::Future;
use std::os::unix::fs::DirBuilderExt as _;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context as _};
use slipway_api::auth::{Keys, Role};
use slipway_api::{db, AppState, Clock, Settings};
use slipway_runner::git::Credentials;
use slipway_runner::swarm::{Engine, EngineError};
use slipway_runner::work::Runner;
use tokio::net::TcpListener;

use crate::config::UpConfig;
use crate::secret;

/// The runner's name: the subject of its token.
const RUNNER_NAME: &str = "local";
/// How long the runner's and provider's own tokens live; `up` mints new ones
/// at every start.
const SERVICE_TOKEN_DAYS: i64 = 3650;
/// How long the parts may take to stop after the signal.
const STOP_WITHIN: Duration = Duration::from_secs(15);

/// Runs until `shutdown` resolves. Prints what a person needs to stdout.
pub async fn run(config: UpConfig, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let engine = check_engine(config.docker_host.as_deref()).await?;
    // Read before anything is made: a bad file changes nothing.
    let registry_auth = config.registry.read().map_err(anyhow::Error::msg)?;

    // Only its owner reads the database and the secret.
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&config.data_dir)
        .with_context(|| {
            format!(
                "cannot create the data directory {}",
                config.data_dir.display()
            )
        })?;
    let data_dir = config.data_dir.canonicalize().with_context(|| {
        format!(
            "cannot open the data directory {}",
            config.data_dir.display()
        )
    })?;
    let (jwt_secret, created) = secret::load_or_create(&data_dir)?;
    let keys = Keys::new(&jwt_secret);
    let secrets = slipway_runner::config::read_secrets(config.secrets_file.as_ref())
        .map_err(anyhow::Error::msg)?;

    let database_url = format!(
        "sqlite://{}?mode=rwc",
        data_dir.join("slipway.db").display()
    );
    let (database, _) = db::open(&database_url).await.with_context(|| {
        format!(
            "cannot open or migrate the database {}",
            data_dir.join("slipway.db").display()
        )
    })?;

    let api_listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {} (--listen)", config.listen))?;
    let hooks_listener = TcpListener::bind(config.hooks_listen)
        .await
        .with_context(|| format!("cannot listen on {} (--hooks-listen)", config.hooks_listen))?;
    let api_addr = api_listener.local_addr()?;
    let hooks_addr = hooks_listener.local_addr()?;
    let api_url = format!("http://{api_addr}");
    let public_url = config
        .public_url
        .as_deref()
        .map(|url| url.trim_end_matches('/').to_owned());

    let now = chrono::Utc::now();
    let service_ttl = chrono::Duration::days(SERVICE_TOKEN_DAYS);
    let runner_token = keys.issue(RUNNER_NAME, Role::Runner, service_ttl, now);
    let provider_token = keys.issue("provider", Role::Provider, service_ttl, now);
    let admin_token = keys.issue("admin", Role::Admin, config.admin_token_ttl, now);

    let state = AppState::new(
        database,
        keys,
        Clock::system(),
        Settings {
            lease: config.lease,
            public_url: public_url.clone(),
            hooks_url: Some(format!("http://{hooks_addr}")),
            ..Settings::default()
        },
    );
    let (code, _) = slipway_api::sessions::create_code(&state, "admin", Role::Admin, "slipway up")
        .await
        .map_err(|err| anyhow::anyhow!("cannot make a sign-in link: {}", err.message()))?;
    let sign_in = format!(
        "{}/login?code={code}",
        public_url.as_deref().unwrap_or(&api_url)
    );
    let provider_config = provider_config(
        &config,
        &api_url,
        public_url.as_deref(),
        &provider_token,
        &data_dir,
    );
    let mut runner = Runner::open(
        slipway_client::Client::new(&api_url, &runner_token),
        RUNNER_NAME,
        data_dir.join("runner"),
        engine,
        Credentials {
            ssh_key: config.git.git_ssh_key_file.clone(),
            token: config.git.git_token.clone(),
            known_hosts: config.git.known_hosts_file.clone(),
            ca_file: config.git.git_ca_file.clone(),
        },
    )?;
    runner.labels = vec!["local".into()];
    runner.secrets = secrets;
    runner.registry_auth = registry_auth;

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let wait = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    };
    let api = tokio::spawn(slipway_api::serve(
        state,
        api_listener,
        wait(stopped.clone()),
    ));
    let provider = tokio::spawn(slipway_provider::run(
        provider_config,
        hooks_listener,
        wait(stopped.clone()),
    ));
    let runner = tokio::spawn(slipway_runner::work::run(runner, wait(stopped.clone())));

    print_banner(&Banner {
        data_dir: &data_dir,
        created,
        api_url: &api_url,
        hooks_url: &format!("http://{hooks_addr}"),
        hooks: &config.hooks,
        docker_host: config.docker_host.as_deref(),
        admin_token: &admin_token,
        admin_ttl: config.admin_token_ttl,
        sign_in: &sign_in,
    });

    // Any part that ends on its own ends `up`: a half-running Slipway would
    // accept deployments that nobody carries out.
    let api_abort = api.abort_handle();
    let provider_abort = provider.abort_handle();
    let runner_abort = runner.abort_handle();
    let mut api = api;
    let mut provider = provider;
    let mut runner = runner;
    let early = tokio::select! {
        () = shutdown => None,
        result = &mut api => Some(match result {
            Ok(Ok(())) => anyhow::anyhow!("the API stopped"),
            Ok(Err(err)) => anyhow::Error::new(err).context("the API failed"),
            Err(err) => anyhow::anyhow!("the API failed: {err}"),
        }),
        result = &mut provider => Some(match result {
            Ok(Ok(())) => anyhow::anyhow!("the provider stopped"),
            Ok(Err(err)) => anyhow::Error::new(err).context("the provider failed"),
            Err(err) => anyhow::anyhow!("the provider failed: {err}"),
        }),
        result = &mut runner => Some(anyhow::anyhow!("the runner stopped: {result:?}")),
    };
    eprintln!("slipway: stopping");
    let _ = stop.send(true);
    let all = async {
        let _ = runner.await;
        let _ = provider.await;
        let _ = api.await;
    };
    if tokio::time::timeout(STOP_WITHIN, all).await.is_err() {
        // Open subscriptions (a `slipway deploy --follow` elsewhere) keep the
        // API's graceful shutdown waiting; they reconnect after a restart.
        eprintln!(
            "slipway: not stopped within {}s (open connections); stopping anyway",
            STOP_WITHIN.as_secs()
        );
        api_abort.abort();
        provider_abort.abort();
        runner_abort.abort();
    }
    match early {
        Some(err) => Err(err),
        None => {
            eprintln!("slipway: stopped");
            Ok(())
        }
    }
}

/// Connects to the engine and makes sure it is a swarm manager, or says what to do.
pub async fn check_engine(host: Option<&str>) -> anyhow::Result<Engine> {
    let engine = match Engine::connect(host).await {
        Ok(engine) => engine,
        Err(err) => bail!(
            "{err}\n\nSlipway deploys to Docker Swarm and needs a Docker engine that is a swarm \
             manager. {} Or point --docker-host / DOCKER_HOST at a manager of an existing swarm.",
            if docker_installed() {
                "Start Docker (e.g. `systemctl start docker`, or `dockerd &`); then, if it is \
                 not in a swarm yet, run `docker swarm init`."
            } else {
                "Docker is not installed here. On Debian, `scripts/start.sh` in Slipway's \
                 repository installs and starts it, makes it a single-node swarm and starts \
                 `slipway up`; by hand: `apt-get install docker.io`, `dockerd &` (or \
                 `systemctl start docker`), `docker swarm init`."
            }
        ),
    };
    match engine.check_manager().await {
        Ok(()) => Ok(engine),
        Err(EngineError::NotManager { state }) => bail!(
            "the Docker engine is not a swarm manager ({state}).\n\nSlipway deploys stacks to \
             Docker Swarm. Make this engine a single-node swarm with `docker swarm init` \
             (add `--advertise-addr 127.0.0.1` when it has several addresses), or point \
             --docker-host / DOCKER_HOST at a manager of an existing swarm."
        ),
        Err(err) => bail!("cannot ask the Docker engine whether it is a swarm manager: {err}"),
    }
}

/// Whether a Docker engine is installed: `dockerd` on the `PATH`.
fn docker_installed() -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join("dockerd").is_file()))
}

fn provider_config(
    config: &UpConfig,
    api_url: &str,
    public_url: Option<&str>,
    token: &str,
    data_dir: &Path,
) -> slipway_provider::Config {
    let mut provider = slipway_provider::Config::new(api_url, token);
    provider.listen = config.hooks_listen;
    provider.public_url = public_url.map(str::to_owned);
    provider.hooks = config.hooks.clone();
    provider.data_dir = data_dir.join("provider");
    provider
}

struct Banner<'a> {
    data_dir: &'a Path,
    created: bool,
    api_url: &'a str,
    hooks_url: &'a str,
    hooks: &'a slipway_provider::config::Hooks,
    docker_host: Option<&'a str>,
    admin_token: &'a str,
    admin_ttl: chrono::Duration,
    sign_in: &'a str,
}

fn print_banner(b: &Banner<'_>) {
    let engine = b
        .docker_host
        .map(str::to_owned)
        .or_else(|| std::env::var("DOCKER_HOST").ok())
        .unwrap_or_else(|| "unix:///var/run/docker.sock".into());
    let secret_note = if b.created {
        "created now"
    } else {
        "kept from an earlier start"
    };
    // One line per hook source, from the provider's own list of them.
    let mut hooks = String::new();
    for (i, source) in slipway_provider::hooks::SOURCES.iter().enumerate() {
        let state = if source.is_configured(b.hooks) {
            "on".to_owned()
        } else {
            format!("off: --{} turns it on", source.secret_flag)
        };
        let label = if i == 0 { "hooks" } else { "" };
        hooks.push_str(&format!(
            "  {label:<9}{}{}  ({state})\n",
            b.hooks_url, source.route
        ));
    }
    println!(
        "Slipway is up.\n\
         \n\
         \x20 web UI   {api}/  — sign in with this link (once, within {code_ttl}):\n\
         \x20          {sign_in}\n\
         \x20 API      {api}/graphql  (GraphiQL in a browser; send the token as \
         {{\"Authorization\": \"Bearer <token>\"}})\n\
         \x20 events   {ws}/graphql/ws\n\
         {hooks}\
         \x20 engine   {engine} (a swarm manager)\n\
         \x20 data     {data}  (JWT secret {secret_note})\n\
         \n\
         An admin token, valid for {ttl} — for the `slipway` commands in another terminal:\n\
         \n\
         export SLIPWAY_API_URL={api}\n\
         export SLIPWAY_TOKEN={token}\n\
         \n\
         Stop with Ctrl-C.",
        api = b.api_url,
        ws = b.api_url.replacen("http://", "ws://", 1),
        data = b.data_dir.display(),
        ttl = human(b.admin_ttl),
        token = b.admin_token,
        sign_in = b.sign_in,
        code_ttl = human(slipway_api::sessions::CODE_TTL),
    );
}

/// `30d`, `12h`, `90m` → "30 days", "12 hours", "90 minutes".
fn human(ttl: chrono::Duration) -> String {
    let seconds = ttl.num_seconds();
    let (n, unit) = if seconds % 86_400 == 0 {
        (seconds / 86_400, "day")
    } else if seconds % 3600 == 0 {
        (seconds / 3600, "hour")
    } else if seconds % 60 == 0 {
        (seconds / 60, "minute")
    } else {
        (seconds, "second")
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}
