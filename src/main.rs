//! The `redcast` command: parses flags, loads the configuration, starts
//! the gateway and waits for a signal.

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use redcast::config::{self, LogFormat, Overrides, Settings};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "redcast",
    version,
    about = "Redis pub/sub to WebSocket gateway"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    common: Common,
}

#[derive(Subcommand)]
enum Command {
    /// Validate the configuration and print the effective values (secrets masked).
    CheckConfig,
}

#[derive(Args, Clone)]
struct Common {
    /// Configuration file (TOML). Without it, defaults apply.
    #[arg(long, short, env = "REDCAST_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Public WebSocket listen address (overrides server.listen).
    #[arg(long, global = true)]
    listen: Option<String>,
    /// Admin listen address (overrides admin.listen).
    #[arg(long, global = true)]
    admin_listen: Option<String>,
    /// Redis URL (overrides redis.url).
    #[arg(long, global = true)]
    redis_url: Option<String>,
    /// Log format, text or json (overrides log.format).
    #[arg(long, global = true)]
    log_format: Option<String>,
    /// Serve the live demo page at /demo (sets server.demo).
    #[arg(long, global = true)]
    demo: bool,
}

impl Common {
    fn load(&self) -> Result<Settings, config::ConfigError> {
        let overrides = Overrides {
            listen: self.listen.clone(),
            admin_listen: self.admin_listen.clone(),
            redis_url: self.redis_url.clone(),
            log_format: self.log_format.clone(),
            demo: self.demo,
        };
        config::load(self.config.as_deref(), std::env::vars(), &overrides)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::CheckConfig) => check_config(&cli.common),
        None => run(&cli.common),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("redcast: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn check_config(common: &Common) -> anyhow::Result<()> {
    let settings = common.load()?;
    // Key files and certificates are part of a valid configuration.
    if let Some(tls) = &settings.tls {
        redcast::tls::load(&tls.cert, &tls.key)?;
    }
    redcast::reload::Live::new(settings.clone())?;
    print!("{}", settings.render());
    for warning in settings.warnings() {
        eprintln!("warning: {warning}");
    }
    Ok(())
}

fn run(common: &Common) -> anyhow::Result<()> {
    let settings = common.load()?;
    init_logging(&settings);
    for warning in settings.warnings() {
        tracing::warn!("INSECURE: {warning}");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(settings.server.worker_threads)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let termination =
            redcast::shutdown::Termination::install().context("cannot watch SIGTERM")?;
        let hangup = redcast::shutdown::Hangup::install().context("cannot watch SIGHUP")?;
        let gateway = redcast::Gateway::start(settings).await?;
        let reloader = gateway.reloader();
        let source = common.clone();
        tokio::spawn(hangup.each(move || {
            let result = source
                .load()
                .map_err(anyhow::Error::from)
                .and_then(|s| Ok(reloader.apply(s)?));
            if let Err(e) = result {
                tracing::error!(error = %e, "reload refused; keeping the running configuration");
            }
        }));
        let token = gateway.shutdown_token();
        tokio::spawn(async move {
            let name = termination.recv().await;
            tracing::info!(signal = name, "shutting down");
            token.cancel();
        });
        gateway.run_until_shutdown().await;
        Ok(())
    })
}

fn init_logging(settings: &Settings) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&settings.log.level));
    // Colours only for a terminal, never into files or the journal.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match settings.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}
