use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use portcullis_proto::AddGatewayRequest;

use crate::args::GatewayCommand;
use crate::passphrase::Prompt;
use crate::{open_device, server};

pub async fn run(home: &Path, cmd: GatewayCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        GatewayCommand::Add { name } => {
            let device = open_device(home).await?;
            let added = device.api().add_gateway(&AddGatewayRequest { name }).await?;
            println!(
                "Added gateway {}. On the gateway machine run `portcullis gateway enroll --server {} --code CODE` \
                 with this one-time code (valid 24 h):",
                added.name,
                device.config().server_url
            );
            println!("{}", added.enrolment_code);
            Ok(ExitCode::SUCCESS)
        }
        GatewayCommand::Confirm { name } => {
            let device = open_device(home).await?;
            let g = device.api().confirm_gateway(&name).await?;
            println!(
                "Confirmed gateway {} (host key {}); targets may now be placed on it.",
                g.name,
                g.host_key_fingerprint.unwrap_or_else(|| "-".into())
            );
            Ok(ExitCode::SUCCESS)
        }
        GatewayCommand::Revoke { name } => {
            let device = open_device(home).await?;
            let outcome = device.api().revoke_gateway(&name).await?;
            println!(
                "Revoked gateway {name}: {} live grant(s) on its {} target(s) voided; its sessions are ending and its \
                 uploads are refused from now on.",
                outcome.grants_voided, outcome.targets
            );
            Ok(ExitCode::SUCCESS)
        }
        GatewayCommand::List => {
            let device = open_device(home).await?;
            let gateways = device.api().gateways().await?;
            let when = |at: Option<i64>| at.map(crate::access::format_time).unwrap_or_else(|| "never".into());
            println!(
                "{:<16} {:<24} {:<8} {:<22} {:<8} HOST KEY",
                "NAME", "ADDRESS", "TARGETS", "LAST CONTACT", "BACKLOG"
            );
            for g in gateways {
                let name = if g.embedded { format!("{} (in server)", g.name) } else { g.name };
                let address = match (&g.address, g.enrolled_at) {
                    _ if g.revoked_at.is_some() => "(revoked)".into(),
                    (_, Some(_)) if !g.confirmed => "(awaiting confirmation)".into(),
                    (Some(a), _) => a.clone(),
                    (None, None) => "(not enrolled)".into(),
                    (None, Some(_)) => "(not running yet)".into(),
                };
                println!(
                    "{:<16} {:<24} {:<8} {:<22} {:<8} {}",
                    name,
                    address,
                    g.targets,
                    when(g.last_contact_at),
                    g.backlog,
                    g.host_key_fingerprint.unwrap_or_else(|| "-".into())
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        GatewayCommand::Enroll { server, code, key_store } => {
            let (file, kind) =
                portcullis_gateway::identity::enroll(home, &server.join(","), &code, key_store, &Prompt).await?;
            println!(
                "Enrolled this machine as gateway {} of {}; its keys are in: {kind}. Start it with `portcullis gateway run --listen ADDR:PORT`.",
                file.name, file.server_url
            );
            println!("{}", file.gateway_id);
            Ok(ExitCode::SUCCESS)
        }
        GatewayCommand::Run { listen, advertise, ssh_login_grace } => {
            let (gateway, file, _) = portcullis_gateway::identity::open(home, &Prompt).await?;
            let gateway = gateway.with_limits(server::login_grace(ssh_login_grace));
            let addr: std::net::SocketAddr =
                listen.parse().with_context(|| format!("--listen {listen:?} is not an ADDR:PORT"))?;
            let listener =
                tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
            let local = listener.local_addr()?;
            let advertise = advertise.unwrap_or_else(|| server::advertised(local));
            let host_key = gateway.host_key_openssh();
            let _running = gateway.spawn(listener, advertise.clone()).map_err(anyhow::Error::msg)?;
            println!("Portcullis gateway {} listening on {local} (users connect to {advertise})", file.name);
            println!("Host key: {host_key}");
            tracing::info!(%local, "gateway serving");
            server::shutdown_signal().await;
            Ok(ExitCode::SUCCESS)
        }
    }
}
