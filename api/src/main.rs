use anyhow::Context as _;
use clap::Parser;
use slipway_api::auth::Keys;
use slipway_api::config::{Cli, Command, ServeConfig};
use slipway_api::{db, AppState, Clock, Listeners, Settings};
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SLIPWAY_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        None => serve(cli.serve).await,
        Some(Command::Serve(config)) => serve(*config).await,
        Some(Command::Schema) => {
            print!("{}", slipway_api::graphql::sdl());
            Ok(())
        }
        Some(Command::Token(config)) => {
            let secret = config.jwt.secret().map_err(anyhow::Error::msg)?;
            let token = Keys::new(&secret).issue(
                &config.subject,
                config.role,
                config.ttl,
                chrono::Utc::now(),
            );
            println!("{token}");
            Ok(())
        }
        Some(Command::Migrate(config)) => {
            let url = config.url().map_err(anyhow::Error::msg)?;
            let db = db::connect(&url)
                .await
                .context("cannot open the database")?;
            let applied = db::migrate(&db).await.context("migration failed")?;
            eprintln!("applied {applied} migration(s); the schema is up to date");
            Ok(())
        }
    }
}

async fn serve(config: ServeConfig) -> anyhow::Result<()> {
    let secret = config.jwt.secret().map_err(anyhow::Error::msg)?;
    let url = config.database.url().map_err(anyhow::Error::msg)?;
    let (db, _) = db::open(&url)
        .await
        .with_context(|| format!("cannot open or migrate the database {:?}", config.database))?;
    let settings = Settings {
        lease: config.lease,
        public_url: config.public_url.clone(),
        hooks_url: config.hooks_url.clone(),
        slack: config.slack.commands().map_err(anyhow::Error::msg)?,
        sentry_token: config.sentry_token().map_err(anyhow::Error::msg)?,
        ..Settings::default()
    };
    let state = AppState::new(db, Keys::new(&secret), Clock::system(), settings);
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    tracing::info!(
        "listening on http://{} (GraphiQL at /graphql)",
        listener.local_addr()?
    );
    let metrics = match config.metrics_listen {
        Some(addr) => {
            let metrics = TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen for metrics on {addr}"))?;
            tracing::info!("metrics at http://{}/metrics", metrics.local_addr()?);
            Some(metrics)
        }
        None => None,
    };
    let listeners = Listeners {
        api: listener,
        metrics,
    };
    slipway_api::serve(state, listeners, shutdown_signal()).await?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down");
}
