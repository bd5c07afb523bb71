//! The gateway machine's commands, `enroll` and `run`: the same for `portcullis gateway …` and
//! for the gateway-only binary `portcullis-gateway` (which builds none of the control server).

use std::path::Path;

use portcullis_keystore::{PassphraseSource, Preference};

use crate::SshLimits;
use crate::identity::IdentityError;

#[derive(clap::Args, Debug)]
pub struct EnrollArgs {
    /// The server's URL; repeat it (or separate with commas) for each replica.
    #[arg(long = "server", required = true, value_delimiter = ',')]
    pub server: Vec<String>,
    #[arg(long)]
    pub code: String,
    /// Where to keep the gateway's local key: auto, keyring or passphrase.
    #[arg(long, env = "PORTCULLIS_KEY_STORE", default_value = "auto")]
    pub key_store: Preference,
}

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// The ADDR:PORT users connect to (SSH).
    #[arg(long)]
    pub listen: String,
    /// The HOST:PORT users are told to connect to (default: the listen address).
    #[arg(long)]
    pub advertise: Option<String>,
    /// Seconds a connection gets to authenticate before it is closed (like OpenSSH's
    /// LoginGraceTime).
    #[arg(long, default_value_t = 30)]
    pub ssh_login_grace: u64,
}

/// Enrols this machine (state under `home`) as the gateway the code was issued for; prints
/// what happened (`program` is how the user runs these commands), and the gateway's id on the
/// last line.
pub async fn enroll(
    home: &Path,
    args: EnrollArgs,
    passphrases: &dyn PassphraseSource,
    program: &str,
) -> Result<(), IdentityError> {
    let (file, kind) =
        crate::identity::enroll(home, &args.server.join(","), &args.code, args.key_store, passphrases).await?;
    println!(
        "Enrolled this machine as gateway {} of {}; its keys are in: {kind}. Start it with `{program} run --listen ADDR:PORT`.",
        file.name, file.server_url
    );
    println!("{}", file.gateway_id);
    Ok(())
}

/// Serves users and records their sessions until SIGINT or SIGTERM.
pub async fn run(home: &Path, args: RunArgs, passphrases: &dyn PassphraseSource) -> Result<(), String> {
    let (gateway, file, _) = crate::identity::open(home, passphrases).await.map_err(|e| e.to_string())?;
    let gateway = gateway.with_limits(login_grace(args.ssh_login_grace));
    let addr: std::net::SocketAddr =
        args.listen.parse().map_err(|_| format!("--listen {:?} is not an ADDR:PORT", args.listen))?;
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    let advertise = args.advertise.unwrap_or_else(|| advertised(local));
    let host_key = gateway.host_key_openssh();
    let _running = gateway.spawn(listener, advertise.clone())?;
    println!("Portcullis gateway {} listening on {local} (users connect to {advertise})", file.name);
    println!("Host key: {host_key}");
    tracing::info!(%local, "gateway serving");
    shutdown_signal().await;
    Ok(())
}

/// The default limits with this login grace time (at least a second).
pub fn login_grace(secs: u64) -> SshLimits {
    SshLimits { login_grace: std::time::Duration::from_secs(secs.max(1)), ..Default::default() }
}

/// What users are told to connect to: the listen address, or — when it is a wildcard — the
/// same port on the control server's host (an empty host).
pub fn advertised(local: std::net::SocketAddr) -> String {
    if local.ip().is_unspecified() {
        format!(":{}", local.port())
    } else if local.is_ipv6() {
        format!("[{}]:{}", local.ip(), local.port())
    } else {
        local.to_string()
    }
}

/// Until SIGINT (Ctrl-C) or SIGTERM (systemd, docker stop).
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// Logs to stderr at `default` (or `RUST_LOG`), never below info for russh: its trace output
/// includes packet contents, and an SSH password travels inside one.
pub fn init_tracing(default: &str) {
    let mut filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    for directive in ["russh=info", "russh_keys=info", "internal_russh_forked_ssh_key=info"] {
        if let Ok(d) = directive.parse() {
            filter = filter.add_directive(d);
        }
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
