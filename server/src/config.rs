//! Configuration: one struct per command, parsed by clap, flags with `env` fallbacks.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub const DEFAULT_DATABASE_URL: &str = "sqlite://lotse-data/lotse.db";

#[derive(Debug, Parser)]
#[command(
    name = "lotse-server",
    version,
    about = "Lotse: sync server, API and dashboard for Integrationslotsen networks",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// `serve` is the default command; its flags work without naming it.
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default).
    Serve(ServeArgs),
    /// Run pending database migrations and exit.
    Migrate(DbArgs),
    /// Create a coordinator (and the organisation, if new); reads the password from stdin.
    CreateCoordinator(CreateCoordinatorArgs),
}

#[derive(Debug, Clone, Args)]
pub struct DbArgs {
    /// sqlite://path/to/file.db or postgres://user@host/db
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
    pub database_url: String,
    #[command(flatten)]
    pub log: LogArgs,
}

#[derive(Debug, Clone, Args)]
pub struct LogArgs {
    /// Log format; the level follows RUST_LOG (default: info).
    #[arg(long, env = "LOTSE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "LOTSE_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,
    #[command(flatten)]
    pub db: DbArgs,
    /// Seed an invented demo network when the database is empty, and print its login.
    #[arg(long)]
    pub demo: bool,
    #[command(flatten)]
    pub http: HttpConfig,
    #[command(flatten)]
    pub push: PushConfig,
    #[command(flatten)]
    pub mail: MailConfig,
    /// The server key that seals the secret settings in the database (the VAPID private
    /// key, the CSRF key): at least 32 characters, e.g. from `openssl rand -base64 32`.
    /// Without it they are stored in plain text. Set it in the environment: a command
    /// line is visible to every user of the machine.
    #[arg(
        long = "secret-key",
        env = "LOTSE_SECRET_KEY",
        hide_env_values = true,
        value_parser = ServerKeyParser
    )]
    pub secret_key: Option<crate::secrets::ServerKey>,
    /// Seconds an unused document stays in memory before it is dropped (it loads again
    /// from the database when a phone or the dashboard asks for it).
    #[arg(long = "doc-idle-secs", env = "LOTSE_DOC_IDLE_SECS", default_value = "120", value_parser = parse_idle_secs)]
    pub doc_idle: Duration,
    /// MiB the server stores for one document at most; a sync message that would take a
    /// document beyond it is refused for that document alone (`document-bytes`).
    #[arg(long = "document-quota-mib", env = "LOTSE_DOCUMENT_QUOTA_MIB", default_value = "8",
        value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub document_quota_mib: u64,
    /// MiB one device's changes may take on the server over all documents
    /// (`device-bytes`).
    #[arg(long = "device-quota-mib", env = "LOTSE_DEVICE_QUOTA_MIB", default_value = "64",
        value_parser = clap::value_parser!(u64).range(1..=65536))]
    pub device_quota_mib: u64,
}

impl ServeArgs {
    /// The quotas of `docs/sync.md`, with the sizes given here.
    pub fn quotas(&self) -> lotse_protocol::quota::Quotas {
        lotse_protocol::quota::Quotas {
            document_bytes: self.document_quota_mib * 1024 * 1024,
            device_bytes: self.device_quota_mib * 1024 * 1024,
            ..lotse_protocol::quota::Quotas::default()
        }
    }
}

/// Parses the server key without repeating it in an error (clap's own parsers quote the
/// value they refuse).
#[derive(Clone)]
struct ServerKeyParser;

impl clap::builder::TypedValueParser for ServerKeyParser {
    type Value = crate::secrets::ServerKey;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<Self::Value, clap::Error> {
        let refuse = |why: String| {
            clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                format!("LOTSE_SECRET_KEY: {why}\n"),
            )
            .with_cmd(cmd)
        };
        let text = value
            .to_str()
            .ok_or_else(|| refuse("not valid UTF-8".into()))?;
        crate::secrets::ServerKey::parse(text).map_err(refuse)
    }
}

fn parse_idle_secs(s: &str) -> Result<Duration, String> {
    match s.parse::<u64>() {
        Ok(n) if (1..=86_400).contains(&n) => Ok(Duration::from_secs(n)),
        _ => Err("a whole number of seconds between 1 and 86400".into()),
    }
}

#[derive(Debug, Clone, Args)]
pub struct PushConfig {
    /// Accept push endpoints over plain http and on loopback or private addresses. Only
    /// for tests with a local push service; never in production.
    #[arg(long, env = "LOTSE_ALLOW_INSECURE_PUSH_ENDPOINTS")]
    pub allow_insecure_push_endpoints: bool,
    /// Contact for push services, sent as the VAPID `sub` claim (mailto: or https: URL).
    #[arg(
        long,
        env = "LOTSE_VAPID_SUBJECT",
        default_value = "mailto:admin@lotse.invalid"
    )]
    pub vapid_subject: String,
    /// Do not run the push sender in this process (e.g. when another process sends, or a
    /// test drives the worker itself). Pushes stay queued in the outbox.
    #[arg(long = "no-push-worker", action = clap::ArgAction::SetFalse)]
    pub push_worker: bool,
}

impl Default for PushConfig {
    fn default() -> Self {
        Self {
            allow_insecure_push_endpoints: false,
            vapid_subject: "mailto:admin@lotse.invalid".into(),
            push_worker: true,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct HttpConfig {
    /// Send the session cookie without `Secure`, for plain-HTTP setups other than
    /// localhost. Never in production.
    #[arg(long, env = "LOTSE_INSECURE_COOKIES")]
    pub insecure_cookies: bool,
    /// How long a coordinator stays logged in, in hours.
    #[arg(long = "session-hours", env = "LOTSE_SESSION_HOURS", default_value = "12", value_parser = parse_hours)]
    pub session_ttl: Duration,
    /// Addresses of reverse proxies in front of the server (comma separated): only from
    /// them is `X-Forwarded-For` read, so that the rate limits see the real clients.
    #[arg(
        long = "trusted-proxy",
        env = "LOTSE_TRUSTED_PROXY",
        value_delimiter = ','
    )]
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Sync connections one device may hold open at once (on this instance). A phone
    /// needs one, two for a moment while it reconnects.
    #[arg(
        long = "sockets-per-device",
        env = "LOTSE_SOCKETS_PER_DEVICE",
        default_value = "4"
    )]
    pub sockets_per_device: usize,
    /// Seconds a client has to send a request's line and headers; a slower one is
    /// disconnected, so that connections trickling bytes cannot hold sockets for ever.
    /// An idle keep-alive connection is closed after as long.
    #[arg(
        long = "header-timeout-secs",
        env = "LOTSE_HEADER_TIMEOUT_SECS",
        default_value = "10",
        value_parser = parse_header_secs
    )]
    pub header_timeout: Duration,
    /// Let Leitung (and, where the organisation asks for it, everyone) log in without a
    /// second factor. For tests and the demo network only: a password alone then opens
    /// the data of many people. `--demo` implies it.
    #[arg(long, env = "LOTSE_TWO_FACTOR_OPTIONAL")]
    pub two_factor_optional: bool,
    /// The address people reach this server at (e.g. https://lotse.example.org), for the
    /// links in e-mails. Without it, the address the request came in on is used.
    #[arg(long, env = "LOTSE_PUBLIC_URL", value_parser = parse_public_url)]
    pub public_url: Option<String>,
}

fn parse_public_url(s: &str) -> Result<String, String> {
    let trimmed = s.trim_end_matches('/');
    let ok = (trimmed.starts_with("https://") || trimmed.starts_with("http://"))
        && !trimmed.contains(['?', '#', ' ']);
    if ok {
        Ok(trimmed.to_owned())
    } else {
        Err("an http:// or https:// address without query, e.g. https://lotse.example.org".into())
    }
}

/// E-mail (invitations, password resets): off unless an SMTP server is named.
#[derive(Debug, Clone, Default, Args)]
pub struct MailConfig {
    /// The SMTP server, e.g. `smtps://user:password@mail.example.org` (TLS),
    /// `smtp://user:password@mail.example.org:587?tls=required` (STARTTLS) or
    /// `smtp://127.0.0.1:2525` (plain, for a local relay). Without it no e-mail is sent
    /// and the dashboard shows the links to hand over instead. Set it in the
    /// environment: it may hold a password.
    #[arg(long, env = "LOTSE_SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<String>,
    /// The sender of e-mails.
    #[arg(
        long,
        env = "LOTSE_SMTP_FROM",
        default_value = "Lotse <lotse@localhost>"
    )]
    pub smtp_from: String,
}

fn parse_header_secs(s: &str) -> Result<Duration, String> {
    match s.parse::<u64>() {
        Ok(n) if (1..=300).contains(&n) => Ok(Duration::from_secs(n)),
        _ => Err("a whole number of seconds between 1 and 300".into()),
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            insecure_cookies: false,
            session_ttl: Duration::from_secs(12 * 3600),
            trusted_proxies: Vec::new(),
            sockets_per_device: 4,
            header_timeout: Duration::from_secs(10),
            two_factor_optional: false,
            public_url: None,
        }
    }
}

fn parse_hours(s: &str) -> Result<Duration, String> {
    match s.parse::<u64>() {
        Ok(h) if (1..=720).contains(&h) => Ok(Duration::from_secs(h * 3600)),
        _ => Err("a whole number of hours between 1 and 720".into()),
    }
}

#[derive(Debug, Clone, Args)]
pub struct CreateCoordinatorArgs {
    /// Organisation name, e.g. "Integrationslotsen Neuss"; created if new.
    #[arg(long)]
    pub org: String,
    #[arg(long)]
    pub email: String,
    /// Name shown in the dashboard (defaults to the email).
    #[arg(long)]
    pub name: Option<String>,
    /// Read the password from standard input (the only way: never on the command line).
    #[arg(long, required = true)]
    pub password_stdin: bool,
    #[command(flatten)]
    pub db: DbArgs,
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn quotas_come_from_the_command_line_in_mib() {
        let cli = Cli::try_parse_from([
            "lotse-server",
            "serve",
            "--document-quota-mib",
            "2",
            "--device-quota-mib",
            "16",
        ])
        .expect("valid");
        let Some(Command::Serve(args)) = cli.command else {
            panic!("serve");
        };
        let q = args.quotas();
        assert_eq!(q.document_bytes, 2 * 1024 * 1024);
        assert_eq!(q.device_bytes, 16 * 1024 * 1024);
        assert_eq!(q.entries, lotse_protocol::quota::Quotas::default().entries);
        assert!(
            Cli::try_parse_from(["lotse-server", "serve", "--document-quota-mib", "0"]).is_err()
        );
    }
}
