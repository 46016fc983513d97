//! The `lotse-server` command line: serve (default), migrate, create-coordinator.

use std::io::Read;

use anyhow::Context;
use clap::Parser;
use lotse_server::config::{Cli, Command, CreateCoordinatorArgs, DbArgs, LogFormat, ServeArgs};
use lotse_server::store::{NewCoordinator, Store, StoreError};
use lotse_server::{AppState, auth, demo};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        None => serve(cli.serve).await,
        Some(Command::Serve(args)) => serve(args).await,
        Some(Command::Migrate(args)) => migrate(args).await,
        Some(Command::CreateCoordinator(args)) => create_coordinator(args).await,
    }
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn open_store(db: &DbArgs) -> anyhow::Result<Store> {
    let store = Store::connect(&db.database_url)
        .await
        .context("opening the database")?;
    store
        .migrate()
        .await
        .context("running database migrations")?;
    Ok(store)
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    init_logging(args.db.log.log_format);
    // The demo's coordinator password is printed and published in the README: such a
    // network must not be reachable from anywhere but this machine.
    if args.demo && !args.bind.ip().is_loopback() {
        anyhow::bail!(
            "--demo listens on this machine only (a loopback address such as 127.0.0.1), not on {}",
            args.bind
        );
    }
    let store = open_store(&args.db)
        .await?
        .with_server_key(args.secret_key.clone());
    if args.secret_key.is_none() && !args.demo {
        tracing::warn!(
            "LOTSE_SECRET_KEY is not set: the VAPID private key and the CSRF key are stored \
             in the database in plain text, so whoever reads the database or a backup of it \
             can send pushes as this server and forge dashboard form tokens (see README)"
        );
    }
    // A wrong key, or none for sealed secrets, ends the start before anything listens.
    store.open_secrets().await?;
    if args.demo {
        if demo::seed_if_empty(&store).await? {
            tracing::info!("seeded the demo network");
        }
        println!(
            "Demo-Netzwerk / demo network: log in as {} with password {}",
            demo::EMAIL,
            demo::PASSWORD
        );
    }
    let listener = tokio::net::TcpListener::bind(args.bind)
        .await
        .with_context(|| format!("binding {}", args.bind))?;
    let local = listener.local_addr()?;
    tracing::info!(address = %local, backend = ?store.backend(), "lotse-server listening");
    println!("Lotse läuft auf / listening on http://{local}");
    if args.demo
        && let Some((name, code)) = demo::enrollment_code(&store).await?
    {
        // The code travels in the fragment, which the browser never sends to a server.
        println!(
            "App für Lotsinnen und Lotsen / volunteers' app ({name}): http://{local}/app/#code={code}"
        );
    }
    let quotas = args.quotas();
    let mut http = args.http;
    if args.demo {
        // The demo's Leitung logs in with the printed password alone; it listens on
        // loopback only (checked above).
        http.two_factor_optional = true;
    } else if http.two_factor_optional {
        tracing::warn!(
            "--two-factor-optional: Leitung can log in without a second factor; a password \
             alone then opens the data of many people. Only for tests."
        );
    }
    let state = AppState::new(store.clone(), http, args.push)
        .await?
        .with_mail(&args.mail)?;
    if state.mail.enabled() {
        tracing::info!("e-mail through SMTP is on");
    }
    state.hub.set_doc_idle(args.doc_idle);
    state.hub.set_quotas(quotas);
    lotse_server::serve(state, listener, shutdown_signal()).await?;
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}

async fn migrate(args: DbArgs) -> anyhow::Result<()> {
    init_logging(args.log.log_format);
    open_store(&args).await?.close().await;
    println!("migrations applied");
    Ok(())
}

async fn create_coordinator(args: CreateCoordinatorArgs) -> anyhow::Result<()> {
    init_logging(args.db.log.log_format);
    let mut password = String::new();
    std::io::stdin()
        .read_to_string(&mut password)
        .context("reading the password from stdin")?;
    let password = password.trim_end_matches(['\r', '\n']).to_owned();
    if password.chars().count() < 12 {
        anyhow::bail!("the password must have at least 12 characters");
    }
    let email = args.email.trim();
    if !email.contains('@') || email.len() > 320 {
        anyhow::bail!("{email:?} is not an email address");
    }
    let org_name = args.org.trim();
    if org_name.is_empty() {
        anyhow::bail!("--org must not be empty");
    }
    let store = open_store(&args.db).await?;
    let org = store.ensure_organisation(org_name).await?;
    let hash = tokio::task::spawn_blocking(move || auth::hash_password(&password))
        .await?
        .map_err(|e| anyhow::anyhow!("hashing the password: {e}"))?;
    let created = store
        .create_coordinator(NewCoordinator {
            organisation_id: &org.id,
            email,
            display_name: args.name.as_deref().unwrap_or(email),
            password_hash: &hash,
            role: lotse_server::store::Role::Leitung,
        })
        .await;
    store.close().await;
    match created {
        Ok(c) => {
            println!("{}", c.id);
            Ok(())
        }
        Err(StoreError::Conflict(_)) => {
            anyhow::bail!("a coordinator with email {email} exists already")
        }
        Err(e) => Err(e.into()),
    }
}
