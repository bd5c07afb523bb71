//! `portcullis-soak`: fault tests only (feature `soak`; never packaged, and not a subcommand of
//! `portcullis`). Writes synthetic sessions through an enrolled gateway's real record log and
//! uploads them through its real sync, so a test can kill it — and the server — at random and
//! then check that every committed record reached the server exactly once.

// The CLI's passphrase source; its security-key prompt is not used here.
#[allow(dead_code)]
mod passphrase;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Synthetic sessions through this gateway's real record log and sync, until the server
/// acknowledged them all. Restartable: a run goes on where the last one stopped.
#[derive(Parser, Debug)]
#[command(name = "portcullis-soak")]
struct Args {
    /// The enrolled gateway's state.
    #[arg(long, env = "PORTCULLIS_HOME")]
    home: PathBuf,
    #[arg(long, default_value_t = 20)]
    sessions: u64,
    #[arg(long, default_value_t = 4096)]
    events: u64,
    /// A user's Portcullis certificate for `--target` (the sessions are authorised with it).
    #[arg(long)]
    certificate: PathBuf,
    /// A target reached through this gateway.
    #[arg(long)]
    target: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("portcullis-soak: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        let (gateway, _, _) = portcullis_gateway::identity::open(&args.home, &passphrase::Prompt).await?;
        let certificate = std::fs::read_to_string(&args.certificate)?.trim().to_string();
        let plan = portcullis_gateway::soak::Plan {
            sessions: args.sessions,
            events: args.events,
            certificate,
            target: args.target.clone(),
            authorization_file: args.home.join("soak-authorization.json"),
        };
        portcullis_gateway::soak::run(gateway, plan).await.map_err(anyhow::Error::msg)
    });
    match result {
        Ok(()) => {
            println!("soak done");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("portcullis-soak: {e:#}");
            ExitCode::from(1)
        }
    }
}
