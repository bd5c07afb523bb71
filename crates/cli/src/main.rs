//! `portcullis`: the command-line shell over the Portcullis client core and server library.
//! Each subcommand parses its arguments, calls one core function, and prints the result.

mod access;
mod admin;
mod args;
mod audit;
mod gateway;
mod passphrase;
mod run;
mod secrets;
mod server;
mod ssh;
mod vault;

use std::process::ExitCode;

use clap::Parser;

use args::{
    AuditCommand, Cli, Command, DeviceCommand, GatewayCommand, GroupCommand, KeyCommand, PolicyCommand, RequestShow,
    SecretCommand, TargetCommand, UserCommand,
};
use portcullis_proto::TargetFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let home = cli.home.unwrap_or_else(portcullis_client::default_home);
    let Some(command) = cli.command else {
        print!("{}", first_steps(&home));
        return ExitCode::SUCCESS;
    };
    let serving =
        matches!(&command, Command::Server(args::ServerCommand::Run { .. }) | Command::Gateway(GatewayCommand::Run(_)));
    portcullis_gateway::command::init_tracing(if serving { "info" } else { "warn" });
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("portcullis: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(run(home, command));
    // Do not wait for a stdin read that will never finish.
    runtime.shutdown_background();
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("portcullis: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// `portcullis` alone: where this device stands, and the first steps.
fn first_steps(home: &std::path::Path) -> String {
    let here = if portcullis_client::Device::is_enrolled(home) {
        format!("This device is enrolled (state in {}): `portcullis whoami` says as whom.", home.display())
    } else {
        format!("This device is not enrolled yet (state would live in {}).", home.display())
    };
    format!(
        "Portcullis {}: privileged access with just-in-time approval, brokered SSH and recorded sessions.\n{here}\n\n{}\n\nAll commands: portcullis --help\n",
        env!("CARGO_PKG_VERSION"),
        args::FIRST_STEPS
    )
}

async fn run(home: std::path::PathBuf, command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Server(cmd) => server::run(cmd).await,
        Command::Enroll { server, code, code_file, identity_out, device_name, key_store } => {
            let code = match (code, code_file) {
                (Some(code), _) => code,
                (None, Some(file)) => std::fs::read_to_string(&file)
                    .map_err(|e| anyhow::anyhow!("reading {}: {e}", file.display()))?
                    .trim()
                    .to_string(),
                (None, None) => anyhow::bail!("give the enrolment code: --code, --code-file or PORTCULLIS_ENROLL_CODE"),
            };
            match identity_out {
                Some(out) => vault::enroll_identity(&server.join(","), &code, device_name, &out).await,
                None => vault::enroll(&home, &server.join(","), &code, device_name, key_store).await,
            }
        }
        Command::Whoami => vault::whoami(&home).await,
        Command::User(UserCommand::Add { name, roles, groups }) => vault::add_user(&home, &name, &roles, &groups).await,
        Command::User(UserCommand::List) => admin::list_users(&home).await,
        Command::User(UserCommand::Roles { name, roles }) => admin::set_roles(&home, &name, &roles).await,
        Command::User(UserCommand::Groups { name, groups }) => admin::set_groups(&home, &name, &groups).await,
        Command::User(UserCommand::Disable { name }) => admin::disable_user(&home, &name).await,
        Command::User(UserCommand::Confirm { name }) => admin::confirm_user(&home, &name).await,
        Command::Group(GroupCommand::Add { name }) => admin::add_group(&home, &name).await,
        Command::Group(GroupCommand::List) => admin::list_groups(&home).await,
        Command::Policy(PolicyCommand::Show) => admin::show_policy(&home).await,
        Command::Policy(PolicyCommand::Set { file }) => admin::set_policy(&home, &file).await,
        Command::Policy(PolicyCommand::Test { user, target, duration, at, from, file }) => {
            admin::test_policy(&home, &user, &target, &duration, at, from, file.as_deref()).await
        }
        Command::Device(DeviceCommand::List) => admin::list_devices(&home).await,
        Command::Device(DeviceCommand::Revoke { id }) => admin::revoke_device(&home, &id).await,
        Command::Target(TargetCommand::Add(add)) => vault::add_target(&home, add).await,
        Command::Target(TargetCommand::List { search, environment, tag }) => {
            vault::list_targets(&home, TargetFilter { text: search, environment, tag }).await
        }
        Command::Target(TargetCommand::Show { name }) => vault::show_target(&home, &name).await,
        Command::Target(TargetCommand::Edit(edit)) => vault::edit_target(&home, edit).await,
        Command::Secret(SecretCommand::Add(add)) => secrets::add(&home, add).await,
        Command::Secret(SecretCommand::List(list)) => secrets::list(&home, list).await,
        Command::Secret(SecretCommand::Show { name }) => secrets::show(&home, &name).await,
        Command::Secret(SecretCommand::Edit(edit)) => secrets::edit(&home, edit).await,
        Command::Secret(SecretCommand::History { name }) => secrets::history(&home, &name).await,
        Command::Secret(SecretCommand::Restore { name, version, reason }) => {
            secrets::restore(&home, &name, version, reason).await
        }
        Command::Secret(SecretCommand::Remove { name, reason }) => secrets::remove(&home, &name, false, reason).await,
        Command::Secret(SecretCommand::Checkout { name, field, allow_pipe }) => {
            secrets::checkout(&home, &name, field.as_deref(), allow_pipe).await
        }
        Command::Secret(SecretCommand::Checkin { name, wait }) => secrets::checkin(&home, &name, wait).await,
        Command::Secret(SecretCommand::Rotate { name, reason, wait }) => {
            secrets::rotate(&home, &name, reason, wait).await
        }
        Command::Secret(SecretCommand::Rotations { name, json }) => secrets::rotations(&home, &name, json).await,
        Command::Run(run) => run::run(&home, run).await,
        Command::Import { file, format, dry_run, environment } => {
            secrets::import(&home, &file, &format, dry_run, environment).await
        }
        Command::Export { format, out } => secrets::export(&home, &format, out.as_deref()).await,
        Command::Secret(SecretCommand::Purge { name, reason }) => secrets::remove(&home, &name, true, reason).await,
        Command::Request(req) => match (req.show, req.target, req.duration, req.reason) {
            (Some(RequestShow::Show { id }), ..) => access::show(&home, &id).await,
            (None, Some(target), Some(duration), Some(reason)) => {
                let access = match (req.checkout, req.use_secret) {
                    (true, _) => Some(portcullis_proto::Access::Checkout),
                    (_, true) => Some(portcullis_proto::Access::Use),
                    _ => None,
                };
                access::request(&home, &target, &duration, &reason, access).await
            }
            _ => {
                anyhow::bail!("usage: portcullis request TARGET --duration D --reason R, or portcullis request show ID")
            }
        },
        Command::Revoke { id, reason } => access::revoke(&home, &id, reason).await,
        Command::Requests { pending } => access::list(&home, pending).await,
        Command::Approve { id, reason, authenticator } => {
            access::review(&home, &id, true, reason, authenticator.as_deref()).await
        }
        Command::Deny { id, reason, authenticator } => {
            access::review(&home, &id, false, reason, authenticator.as_deref()).await
        }
        Command::Key(KeyCommand::Add { name, authenticator }) => admin::add_key(&home, &name, &authenticator).await,
        Command::Key(KeyCommand::List) => admin::list_keys(&home).await,
        Command::Key(KeyCommand::Remove { key, authenticator }) => admin::remove_key(&home, &key, &authenticator).await,
        Command::Watch => access::watch(&home).await,
        Command::Ssh { target, tty, command } => ssh::run(&home, &target, tty, command).await,
        Command::SshConfig { out } => ssh::config(&home, out.as_deref()).await,
        Command::Sessions => audit::list(&home, true).await,
        Command::Gateway(cmd) => gateway::run(&home, cmd).await,
        Command::Audit(AuditCommand::List) => audit::list(&home, false).await,
        Command::Audit(AuditCommand::Show { session_id }) => audit::show(&home, &session_id).await,
        Command::Audit(AuditCommand::Events { kind, actor, gateway, since, until, before, limit }) => {
            let query = portcullis_proto::EventQuery {
                kind,
                actor,
                gateway,
                since: since.as_deref().map(audit::parse_when).transpose()?,
                until: until.as_deref().map(audit::parse_when).transpose()?,
                before,
                limit: Some(limit),
            };
            audit::events(&home, &query).await
        }
        Command::Audit(AuditCommand::Export { session_id, out, bundle }) => match (out, bundle) {
            (_, Some(bundle)) => audit::export_bundle(&home, &session_id, &bundle).await,
            (Some(out), None) => audit::export(&home, &session_id, &out).await,
            (None, None) => unreachable!("clap requires --out or --bundle"),
        },
        Command::Audit(AuditCommand::Verify { bundle: Some(bundle), server_key }) => {
            audit::verify_bundle(&bundle, server_key.as_deref())
        }
        Command::Audit(AuditCommand::Verify { bundle: None, .. }) => audit::verify(&home).await,
        Command::Audit(AuditCommand::Alarms) => audit::alarms(&home).await,
    }
}

/// Opens this machine's enrolled device, unlocking its local key.
/// A pipeline's job opens the device `PORTCULLIS_IDENTITY` holds instead (nothing on disk).
pub async fn open_device(home: &std::path::Path) -> anyhow::Result<portcullis_client::Device> {
    if let Some(device) = portcullis_client::Device::from_environment()? {
        return Ok(device);
    }
    Ok(portcullis_client::Device::open(home, &passphrase::Prompt).await?)
}
