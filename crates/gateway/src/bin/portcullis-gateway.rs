//! `portcullis-gateway`: a gateway machine's binary — enrol, then serve. It builds none of the
//! control server (no HTTP server, policy engine or WebAuthn); `portcullis gateway enroll|run`
//! does the same from the full binary.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use portcullis_gateway::command::{self, EnrollArgs, RunArgs};
use portcullis_keystore::terminal::Prompt;

/// A Portcullis gateway: brokers and records SSH sessions near the targets. Passphrases are
/// read from PORTCULLIS_PASSPHRASE when no OS keyring holds the local key.
#[derive(Parser, Debug)]
#[command(name = "portcullis-gateway", version)]
struct Cli {
    /// Where the gateway's state lives.
    #[arg(long, env = "PORTCULLIS_HOME", global = true)]
    home: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Enrol this machine as the gateway a one-time code was issued for.
    Enroll(EnrollArgs),
    /// Serve users and record their sessions.
    Run(RunArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Where `portcullis` keeps it too, so either binary finds an enrolled gateway.
    let home = cli.home.unwrap_or_else(|| {
        dirs::data_dir().map(|d| d.join("portcullis")).unwrap_or_else(|| PathBuf::from(".portcullis"))
    });
    command::init_tracing(if matches!(cli.command, Command::Run(_)) { "info" } else { "warn" });
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("portcullis-gateway: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Enroll(args) => {
                command::enroll(&home, args, &Prompt, "portcullis-gateway").await.map_err(|e| e.to_string())
            }
            Command::Run(args) => command::run(&home, args, &Prompt).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("portcullis-gateway: {e}");
            ExitCode::from(1)
        }
    }
}
