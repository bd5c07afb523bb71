use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use portcullis_keystore::Preference;
use portcullis_proto::Role;

/// Portcullis: privileged access with just-in-time approval, brokered SSH and recorded,
/// synced sessions.
///
/// Each device's state lives under $PORTCULLIS_HOME (or --home). Passphrases are read from the
/// terminal, or from PORTCULLIS_PASSPHRASE when set (scripts, CI); never from arguments.
/// Commands that create something print its code or id alone on the last line of stdout.
#[derive(Parser, Debug)]
#[command(name = "portcullis", version, max_term_width = 100)]
pub struct Cli {
    /// Where this device's state lives.
    #[arg(long, global = true, env = "PORTCULLIS_HOME")]
    pub home: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create or run a Portcullis server.
    #[command(subcommand)]
    Server(ServerCommand),
    /// Enrol this device as the user an enrolment code was issued for.
    Enroll {
        /// Server URL: http://127.0.0.1:PORT (loopback) or https://HOST:PORT.
        #[arg(long)]
        server: String,
        /// One-time enrolment code (it also pins the server's TLS certificate).
        #[arg(long)]
        code: String,
        /// A name for this device (default: the host name).
        #[arg(long)]
        device_name: Option<String>,
        /// Where to keep this device's local key: auto (OS keyring if reachable, else a
        /// passphrase), keyring, or passphrase.
        #[arg(long, env = "PORTCULLIS_KEY_STORE", default_value = "auto")]
        key_store: Preference,
    },
    /// Show who this device is enrolled as.
    Whoami,
    /// Manage users (admin).
    #[command(subcommand)]
    User(UserCommand),
    /// Manage and list targets.
    #[command(subcommand)]
    Target(TargetCommand),
    /// Ask for access to a target; prints the request id.
    Request {
        target: String,
        /// How long the access should last, e.g. 30m, 2h (at most 8h).
        #[arg(long)]
        duration: String,
        /// Why you need it (shown to approvers and kept in the audit log).
        #[arg(long)]
        reason: String,
    },
    /// List access requests (approvers and admins see everyone's).
    Requests {
        /// Only requests waiting for a decision.
        #[arg(long)]
        pending: bool,
    },
    /// Approve a pending request (approver; never your own).
    Approve {
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Deny a pending request (approver).
    Deny {
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Follow requests and decisions live (approvers see new requests as they arrive).
    Watch,
    /// Open a brokered SSH session on a target you have a grant for. The credential is used by
    /// Portcullis and never shown. With `-- COMMAND...` runs the command and exits with its
    /// status; without, opens an interactive shell. Every session is recorded.
    Ssh {
        target: String,
        /// Allocate a terminal even when running a command.
        #[arg(short = 't')]
        tty: bool,
        #[arg(last = true)]
        command: Vec<String>,
    },
    /// Upload recorded sessions and audit records that the server has not acknowledged.
    Sync,
    /// Sessions recorded on this device, with their upload state.
    Sessions,
    /// Recorded sessions on the server (auditor or admin).
    #[command(subcommand)]
    Audit(AuditCommand),
}

#[derive(Subcommand, Debug)]
pub enum ServerCommand {
    /// Create a data directory: root key, identities, TLS certificate; prints the first
    /// admin's enrolment code.
    Init {
        #[arg(long)]
        data: PathBuf,
        /// Name of the first admin.
        #[arg(long, default_value = "admin")]
        admin: String,
        /// Where to keep the root key: auto (OS keyring if reachable, else a passphrase),
        /// keyring, or passphrase.
        #[arg(long, env = "PORTCULLIS_KEY_STORE", default_value = "auto")]
        key_store: Preference,
        /// Extra DNS name or IP address for the TLS certificate (repeatable).
        #[arg(long = "tls-name")]
        tls_names: Vec<String>,
    },
    /// Run the server. Plain HTTP on loopback; TLS (required) on any other address.
    Run {
        #[arg(long)]
        data: PathBuf,
        #[arg(long, default_value = "127.0.0.1:8443")]
        listen: String,
        /// Use TLS even on loopback.
        #[arg(long)]
        tls: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Add a user; prints their one-time enrolment code.
    Add {
        name: String,
        /// admin, requester, approver or auditor (repeat for several).
        #[arg(long = "role", required = true)]
        roles: Vec<Role>,
    },
}

#[derive(Subcommand, Debug)]
pub enum TargetCommand {
    /// Add an SSH target and its credential (admin). The credential is sealed to the server
    /// before it leaves this process and is never shown again.
    Add(TargetAdd),
    /// List targets (never their credentials), optionally filtered.
    List {
        /// Text to find in name, host, login, environment, tags or description.
        #[arg(long)]
        search: Option<String>,
        #[arg(long = "env")]
        environment: Option<String>,
        #[arg(long)]
        tag: Option<String>,
    },
    /// Everything about one target except its credential: address, host key, environment,
    /// tags, who holds access now, last use.
    Show { name: String },
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("credential").required(true).args(["password_stdin", "key_file"])))]
pub struct TargetAdd {
    pub name: String,
    #[arg(long)]
    pub host: String,
    #[arg(long, default_value_t = 22)]
    pub port: u16,
    #[arg(long)]
    pub login: String,
    /// Read the password from standard input (one line).
    #[arg(long)]
    pub password_stdin: bool,
    /// An unencrypted OpenSSH private key file.
    #[arg(long)]
    pub key_file: Option<PathBuf>,
    /// The target's host key as an OpenSSH public key line ("ssh-ed25519 AAAA...").
    #[arg(long)]
    pub host_key: String,
    /// Environment, e.g. prod or staging.
    #[arg(long = "env", default_value = "")]
    pub environment: String,
    /// A tag (repeatable).
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    #[arg(long, default_value = "")]
    pub description: String,
}

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// List recorded sessions.
    List,
    /// Security events the server recorded (enrolments, reviews, credential releases,
    /// host-key mismatches, rejected uploads), newest first.
    Events {
        /// Only events of this kind, e.g. host_key_mismatch.
        #[arg(long)]
        kind: Option<String>,
    },
    /// Export one session as an asciicast v2 file (play it with asciinema-player).
    Export {
        session_id: String,
        #[arg(long)]
        out: PathBuf,
    },
}
