use std::path::Path;
use std::process::ExitCode;

use portcullis_proto::AddGatewayRequest;

use crate::args::GatewayCommand;
use crate::open_device;
use crate::passphrase::Prompt;

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
        GatewayCommand::Enroll(args) => {
            portcullis_gateway::command::enroll(home, args, &Prompt, "portcullis gateway").await?;
            Ok(ExitCode::SUCCESS)
        }
        GatewayCommand::Run(args) => {
            portcullis_gateway::command::run(home, args, &Prompt).await.map_err(anyhow::Error::msg)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
