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
#[command(name = "portcullis", version, max_term_width = 100, after_help = FIRST_STEPS)]
pub struct Cli {
    /// Where this device's state lives.
    #[arg(long, global = true, env = "PORTCULLIS_HOME")]
    pub home: Option<PathBuf>,

    /// Without one: what to do first.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// What a newcomer does first; `portcullis` alone and `portcullis --help` print it.
pub const FIRST_STEPS: &str = "\
First steps:
  A server of your own on this machine (SQLite in DIR, its gateway on 127.0.0.1:2222):
    portcullis server init --data DIR          # the last line is the first admin's one-time code
    portcullis server run  --data DIR --listen 127.0.0.1:8443     # leave it running
    portcullis enroll --server http://127.0.0.1:8443 --code CODE  # this device becomes that admin
  Joining a team's server: ask an admin for a code (`portcullis user add NAME --role requester`),
  then `portcullis enroll --server https://HOST:PORT --code CODE`.
  Then: `portcullis target add` (admin), `portcullis request TARGET`, `portcullis approve ID`
  (another person), `portcullis ssh TARGET`. Or use the desktop app, portcullis-desktop.
  No OS keyring here (SSH session, container)? export PORTCULLIS_KEY_STORE=passphrase; the
  passphrase is asked for, or read from PORTCULLIS_PASSPHRASE.";

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create or run a Portcullis server.
    #[command(subcommand)]
    Server(ServerCommand),
    /// Enrol this device as the user an enrolment code was issued for.
    Enroll {
        /// Server URL: http://127.0.0.1:PORT (loopback) or https://HOST:PORT. Repeat it (or
        /// separate with commas) for each replica of a team's server: calls move to the next
        /// one when one stops answering.
        #[arg(long = "server", required = true, value_delimiter = ',')]
        server: Vec<String>,
        /// One-time enrolment code (it also pins the server's TLS certificate); or in
        /// PORTCULLIS_ENROLL_CODE, or --code-file.
        #[arg(long, env = "PORTCULLIS_ENROLL_CODE", hide_env_values = true, required_unless_present = "code_file")]
        code: Option<String>,
        /// Read the enrolment code from this file (a pipeline's setup, without it in `ps`).
        #[arg(long, conflicts_with = "code")]
        code_file: Option<PathBuf>,
        /// For a pipeline (a service account): keep nothing here; write the device's whole
        /// identity to this new file (mode 0600) as one line, to store in the CI system's secrets
        /// and give the job as PORTCULLIS_IDENTITY. Whoever holds it is this device.
        #[arg(long)]
        identity_out: Option<PathBuf>,
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
    /// Manage groups (admin); policies name them.
    #[command(subcommand)]
    Group(GroupCommand),
    /// Show, replace and test the Cedar access policies.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// List and revoke devices (admins any, users their own).
    #[command(subcommand)]
    Device(DeviceCommand),
    /// Manage and list targets.
    #[command(subcommand)]
    Target(TargetCommand),
    /// Run a command with secrets in its environment (or in files), under your grants to use
    /// them, with every occurrence of their values masked in its output:
    /// `portcullis run --secret DB_PASSWORD=billing-db.password -- ./migrate.sh`. Exits with the
    /// command's status (a signal passes through). The command, the secret versions and how it
    /// ended are recorded.
    Run(RunArgs),
    /// Import secrets from a file (admin): Portcullis CSV (columns in the README), Bitwarden's
    /// unencrypted JSON export or KeePassXC's CSV export. All of it or nothing: any broken row,
    /// duplicate, bad encoding or refused value stops the import, and the report says which and
    /// why (never a value). Items of kinds the vault does not keep (cards) are skipped, reported.
    Import {
        file: PathBuf,
        /// csv, bitwarden or keepassxc.
        #[arg(long, default_value = "csv")]
        format: String,
        /// Check everything (here and on the server), import nothing.
        #[arg(long)]
        dry_run: bool,
        /// Put every imported secret in this environment (unless the file says another).
        #[arg(long = "env")]
        environment: Option<String>,
    },
    /// Export the vault's metadata (never a value) as CSV or JSON lines.
    Export {
        /// csv or json.
        #[arg(long, default_value = "csv")]
        format: String,
        /// Write here (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Typed secrets in the vault (passwords, SSH keys, API tokens, database credentials, TLS
    /// certificates, cloud keys, OAuth tokens, notes), with versions. Admins write; values are
    /// sealed before they leave this process and no command prints one.
    #[command(subcommand)]
    Secret(SecretCommand),
    /// Ask for access to a target (prints the request id), or `request show ID`: the whole
    /// story of a request, from the request to its sessions.
    Request(RequestArgs),
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
        /// Confirm with a security key: usb (default when the policy asks for one).
        #[arg(long)]
        authenticator: Option<String>,
    },
    /// Deny a pending request (approver).
    Deny {
        id: String,
        #[arg(long)]
        reason: Option<String>,
        #[arg(long)]
        authenticator: Option<String>,
    },
    /// Your security keys (FIDO2 over USB) for confirming approvals.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Follow requests and decisions live (approvers see new requests as they arrive).
    Watch,
    /// End access early: a grant (or the request that made it), or withdraw a pending request.
    /// Approvers and admins may revoke anyone's; requesters their own.
    Revoke {
        /// The request id (or grant id).
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },

    /// Open a brokered SSH session on a target you have a grant for, through its gateway (which
    /// holds the credential and records the session). With `-- COMMAND...` runs the command
    /// and exits with its status; without, opens an interactive shell.
    Ssh {
        target: String,
        /// Allocate a terminal even when running a command.
        #[arg(short = 't')]
        tty: bool,
        #[arg(last = true)]
        command: Vec<String>,
    },
    /// Write an OpenSSH config with a `Host TARGET.portcullis` entry for each target you hold a
    /// live grant for, so your own ssh, scp, sftp and rsync go through the gateway:
    /// `ssh -F FILE web.portcullis uptime`. Run it again after each new approval.
    SshConfig {
        /// Where to write it (default: ssh/config in this device's home).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Your recorded sessions (as the gateways recorded them).
    Sessions,
    /// Gateways: where sessions are brokered and recorded.
    #[command(subcommand)]
    Gateway(GatewayCommand),
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
        /// Keep the store in PostgreSQL: postgres://USER@HOST/DATABASE (what the URL leaves out
        /// comes from PGHOST, PGUSER, PGPASSWORD, PGDATABASE, ~/.pgpass). Default: SQLite in --data.
        #[arg(long, env = "PORTCULLIS_DATABASE")]
        database: Option<String>,
    },
    /// Run the server, with its embedded gateway. Plain HTTP on loopback; TLS (required) on any
    /// other address.
    Run {
        #[arg(long)]
        data: PathBuf,
        #[arg(long, default_value = "127.0.0.1:8443")]
        listen: String,
        /// Use TLS even on loopback.
        #[arg(long)]
        tls: bool,
        /// Where the embedded gateway's SSH server listens for users.
        #[arg(long, default_value = "127.0.0.1:2222")]
        gateway_listen: String,
        /// The HOST:PORT users are told to connect to, when it differs from --gateway-listen
        /// (e.g. behind NAT). Default: the listen address; with 0.0.0.0, the server's host.
        #[arg(long)]
        gateway_advertise: Option<String>,
        /// Run without the embedded gateway (every target is reached through gateway processes).
        #[arg(long)]
        no_gateway: bool,
        /// How many bytes of an exec session's stdin and of its stdout gateways record in full
        /// (each); beyond it, only size and SHA-256.
        #[arg(long, default_value_t = portcullis_proto::DEFAULT_EXEC_RECORD_LIMIT)]
        exec_record_limit: u64,
        /// Seconds the embedded gateway gives a connection to authenticate before closing it
        /// (like OpenSSH's LoginGraceTime).
        #[arg(long, default_value_t = 30)]
        ssh_login_grace: u64,
        /// The PostgreSQL database (default: the one --data was initialised with, else SQLite).
        /// Several `server run` on one database are replicas; gateways then run as their own
        /// processes.
        #[arg(long, env = "PORTCULLIS_DATABASE")]
        database: Option<String>,
        /// A proxy (address or network, repeatable) whose X-Forwarded-For names the client: rate
        /// limits, request records and source-network policies then see the client. From any
        /// other peer the header is ignored.
        #[arg(long = "trusted-proxy")]
        trusted_proxies: Vec<String>,
        /// Serve Prometheus metrics at http://ADDR/metrics (a loopback address; off by default):
        /// requests by route and status, latency, live streams, ingest, sessions and upload
        /// backlog per gateway, the database pool.
        #[arg(long)]
        metrics_listen: Option<String>,
    },
    /// Check a data directory's audit logs end to end, offline, with the root key (run it before
    /// serving a restored or suspect database). Exits non-zero naming the writer and the first
    /// bad record.
    Verify {
        #[arg(long)]
        data: PathBuf,
        /// The PostgreSQL database (default: the one --data was initialised with, else SQLite).
        #[arg(long, env = "PORTCULLIS_DATABASE")]
        database: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum GatewayCommand {
    /// Add a gateway (admin); prints its one-time enrolment code (last line).
    Add { name: String },
    /// Gateways with their address, last contact and unsynced backlog (admin).
    List,
    /// As an admin other than the one who added it: vouch for an enrolled gateway (compare the
    /// host key fingerprint `gateway list` shows with the gateway machine's). Until then it
    /// serves no target.
    Confirm { name: String },
    /// End a gateway: its sessions stop, live grants on its targets are voided, and the server
    /// refuses its uploads and session checks from now on (what it recorded stays verifiable).
    Revoke { name: String },
    /// On the gateway machine: enrol this machine as the gateway a code was issued for. Its
    /// state lives under $PORTCULLIS_HOME. (`portcullis-gateway enroll` does the same.)
    Enroll(portcullis_gateway::command::EnrollArgs),
    /// On the gateway machine: serve users and record their sessions. (`portcullis-gateway
    /// run` does the same without the control server's code.)
    Run(portcullis_gateway::command::RunArgs),
}

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Add a user; prints their one-time enrolment code.
    Add {
        name: String,
        /// admin, requester, approver or auditor (repeat for several).
        #[arg(long = "role", required = true)]
        roles: Vec<Role>,
        /// A group the user belongs to (repeatable; the group must exist).
        #[arg(long = "group")]
        groups: Vec<String>,
    },
    /// Users with their roles, groups and who created them.
    List,
    /// Replace a user's roles. Removing requester ends their access and running sessions.
    Roles {
        name: String,
        #[arg(long = "role", required = true)]
        roles: Vec<Role>,
    },
    /// Replace a user's groups (none: leave out --group).
    Groups {
        name: String,
        #[arg(long = "group")]
        groups: Vec<String>,
    },
    /// Disable a user: their devices stop working, their grants end, their sessions are closed.
    Disable { name: String },
    /// Vouch, as a second admin, for an account you did not create; prints its enrolment code
    /// (earlier codes stop working). Needed before an approver's reviews count on requests by
    /// the admin who created them, and when `user add` withheld the code.
    Confirm { name: String },
}

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct RequestArgs {
    #[command(subcommand)]
    pub show: Option<RequestShow>,
    /// The target (or secret) to ask for.
    #[arg(required = true)]
    pub target: Option<String>,
    /// How long the access should last, e.g. 30m, 2h (the policies set the longest; 8h by default).
    #[arg(long, required = true)]
    pub duration: Option<String>,
    /// Why you need it (shown to approvers and kept in the audit log).
    #[arg(long, required = true)]
    pub reason: Option<String>,
    /// For a secret: to check it out (see it). The default when it may be revealed.
    #[arg(long, conflicts_with = "use_secret")]
    pub checkout: bool,
    /// For a secret: to use it in a process (`portcullis run`). The default otherwise.
    #[arg(long = "use")]
    pub use_secret: bool,
}

#[derive(Subcommand, Debug)]
pub enum RequestShow {
    /// The story of a request in order: who asked, the policy that permitted it, each review,
    /// the grant, every session it opened, and how it ended.
    Show { id: String },
}

#[derive(Subcommand, Debug)]
pub enum KeyCommand {
    /// Register a security key under a name (touch it, and enter its PIN when asked).
    Add {
        name: String,
        /// usb (default).
        #[arg(long, default_value = "usb")]
        authenticator: String,
    },
    /// Your registered security keys.
    List,
    /// Remove one of your security keys (by name or id); confirm with one of your keys (an
    /// admin removes a lost one: `portcullis user` has no key command, the admin API does).
    Remove {
        key: String,
        /// usb (default).
        #[arg(long, default_value = "usb")]
        authenticator: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum GroupCommand {
    /// Create a group.
    Add { name: String },
    /// Groups and their members.
    List,
}

#[derive(Subcommand, Debug)]
pub enum PolicyCommand {
    /// Print the policy set in force (Cedar).
    Show,
    /// Replace the policy set with FILE; refused (with line and column) if it does not validate.
    Set { file: PathBuf },
    /// What would the policies decide? The last line begins with allow or deny.
    Test {
        #[arg(long)]
        user: String,
        #[arg(long)]
        target: String,
        /// e.g. 30m, 2h.
        #[arg(long)]
        duration: String,
        /// When (RFC 3339, e.g. 2026-11-30T09:30:00Z); now by default.
        #[arg(long)]
        at: Option<String>,
        /// The address the request would come from; yours by default.
        #[arg(long)]
        from: Option<String>,
        /// Test a draft policy file instead of the set in force.
        #[arg(long)]
        file: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
pub enum DeviceCommand {
    /// Devices (admins see everyone's).
    List,
    /// Revoke a device: it can no longer sign in; grants made to it end, its sessions close.
    Revoke { id: String },
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
    /// tags, gateway, who holds access now, last use.
    Show { name: String },
    /// Change a target (admin). Changing host, port, login or host key needs the credential in
    /// the same call and ends every live grant for the target; a new credential alone rotates it.
    Edit(TargetEdit),
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("credential").args(["password_stdin", "key_file"])))]
pub struct TargetEdit {
    pub name: String,
    #[arg(long)]
    pub host: Option<String>,
    #[arg(long)]
    pub port: Option<u16>,
    #[arg(long)]
    pub login: Option<String>,
    /// The target's host key as an OpenSSH public key line.
    #[arg(long)]
    pub host_key: Option<String>,
    /// Read a new password from standard input (one line).
    #[arg(long)]
    pub password_stdin: bool,
    /// A new unencrypted OpenSSH private key file.
    #[arg(long)]
    pub key_file: Option<PathBuf>,
    #[arg(long = "env")]
    pub environment: Option<String>,
    /// Replace the tags (repeatable).
    #[arg(long = "tag")]
    pub tags: Option<Vec<String>>,
    #[arg(long)]
    pub description: Option<String>,
    /// Move the target to another gateway.
    #[arg(long)]
    pub gateway: Option<String>,
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
    /// The gateway that reaches the target (default: the server's embedded gateway).
    #[arg(long)]
    pub gateway: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// List recorded sessions.
    List,
    /// One session: summary, commands and file transfers.
    Show { session_id: String },
    /// Security events the server recorded (enrolments, reviews, certificates issued, sessions
    /// authorised or refused, host-key mismatches, file transfers, rejected uploads), newest first.
    Events {
        /// Only events of this kind, e.g. host_key_mismatch (several: comma-separated).
        #[arg(long)]
        kind: Option<String>,
        /// Only what this user did.
        #[arg(long)]
        actor: Option<String>,
        /// Only what this gateway reported.
        #[arg(long)]
        gateway: Option<String>,
        /// From this time: RFC 3339 (2026-11-26T09:00:00Z) or how long ago (2h, 3d).
        #[arg(long)]
        since: Option<String>,
        /// Until this time (same forms).
        #[arg(long)]
        until: Option<String>,
        /// Only events older than this id (the next page).
        #[arg(long)]
        before: Option<i64>,
        /// How many (at most 500).
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Export one session: as an asciicast v2 file (`--out`, play it with asciinema-player), or
    /// as a bundle anyone can verify offline (`--bundle`: records, inclusion proofs, signed
    /// checkpoint, public keys).
    Export {
        session_id: String,
        #[arg(long, required_unless_present = "bundle")]
        out: Option<PathBuf>,
        #[arg(long)]
        bundle: Option<PathBuf>,
    },
    /// Verify the audit logs: on the server, every writer's log end to end (auditor); or, with
    /// `--bundle FILE`, an exported session offline, with no server. Exits non-zero naming the
    /// writer and the first bad record.
    Verify {
        #[arg(long)]
        bundle: Option<PathBuf>,
        /// With --bundle: the server key you trust (base64, as `audit verify` prints it); the
        /// bundle's countersignature must be by it.
        #[arg(long, requires = "bundle")]
        server_key: Option<String>,
    },
    /// Alarms: gaps, forks, rollbacks, refused uploads, records lost at a gateway.
    Alarms,
}

#[derive(Subcommand, Debug)]
pub enum SecretCommand {
    /// Add a secret (admin). The value comes from standard input or a file, never from an
    /// argument: `--value-stdin`, `--value-file F`, or `--field K=@FILE` (`K=@-`: stdin) per
    /// field; public fields may be given inline (`--field host=db1`). Fields by type:
    /// password: password, username, url; ssh-key: private_key, passphrase; api-token: token,
    /// url, username; database: password, engine, host, port, user, database; tls: private_key,
    /// certificate (or one PEM file with both); cloud-key: secret, provider, key_id, region;
    /// oauth-token: access_token, refresh_token, expires_at, token_url, client_id; note: text.
    Add(SecretAdd),
    /// List secrets (metadata only), by name, optionally filtered.
    List(SecretList),
    /// One secret's metadata and public facts (a certificate's subject, names and expiry).
    Show { name: String },
    /// Change a secret's metadata, or give it a new value (a new version; fields not given keep
    /// their current value).
    Edit(SecretEdit),
    /// A secret's versions: who made each, when and why (admins and auditors).
    History { name: String },
    /// Make an old version current again, as a new version (admin). Nobody sees either value.
    Restore {
        name: String,
        version: i64,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Remove a secret (admin): it stops being listed or used; its history stays.
    Remove {
        name: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Check a secret out under your grant and print it (to a terminal only, unless
    /// --allow-pipe; either way recorded). Exclusive: nobody else checks it out until you
    /// check it in or your access ends.
    Checkout {
        name: String,
        /// The field to print (default: the main one: the password, key, token, text...).
        #[arg(long)]
        field: Option<String>,
        /// Print even when standard output is not a terminal (a pipe or a file); the audit
        /// records that it went to a pipe.
        #[arg(long)]
        allow_pipe: bool,
    },
    /// Check a secret back in (only its holder does). A password bound to a target is then
    /// rotated on the target by its gateway; this waits for that (up to --wait seconds).
    Checkin {
        name: String,
        /// How long to wait for the rotation (0: do not wait).
        #[arg(long, default_value_t = 60)]
        wait: u64,
    },
    /// Rotate a password bound to a target now (admin): its gateway sets a new one on the
    /// target, logs in with it, and only then is it the current version. Nobody sees it.
    Rotate {
        name: String,
        #[arg(long, default_value = "")]
        reason: String,
        /// How long to wait for the result (0: do not wait).
        #[arg(long, default_value_t = 60)]
        wait: u64,
    },
    /// A bound password's rotations: why, how each went (a requester sees their own).
    Rotations {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Delete a removed secret and all its versions for good (admin; recorded).
    Purge {
        name: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
}

/// Where a value comes from (add and edit).
#[derive(Args, Debug)]
pub struct SecretValueArgs {
    /// Read the main field (the password, key, token, text...) from standard input.
    #[arg(long)]
    pub value_stdin: bool,
    /// Read the main field from a file.
    #[arg(long)]
    pub value_file: Option<PathBuf>,
    /// A field: K=@FILE, K=@- (standard input), or K=TEXT for a public field (repeatable).
    #[arg(long = "field")]
    pub fields: Vec<String>,
    /// Refused: a value on the command line ends up in shell history and `ps`.
    #[arg(long, hide = true)]
    pub value: Option<String>,
    /// Refused, like --value.
    #[arg(long, hide = true)]
    pub password: Option<String>,
}

#[derive(Args, Debug)]
pub struct SecretAdd {
    pub name: String,
    /// password, ssh-key, api-token, database, tls, cloud-key, oauth-token or note.
    #[arg(long = "type")]
    pub kind: String,
    #[command(flatten)]
    pub value: SecretValueArgs,
    /// Environment, e.g. prod or staging.
    #[arg(long = "env", default_value = "")]
    pub environment: String,
    /// A folder path, e.g. payments/prod.
    #[arg(long, default_value = "")]
    pub folder: String,
    /// A tag (repeatable).
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    #[arg(long, default_value = "")]
    pub description: String,
    /// The user responsible for it.
    #[arg(long, default_value = "")]
    pub owner: String,
    /// It may be checked out and shown to a person under a grant.
    #[arg(long)]
    pub revealable: bool,
    /// When it must be replaced: RFC 3339, or from now (90d). Default: what the value says (a
    /// certificate's expiry).
    #[arg(long)]
    pub expires: Option<String>,
    /// Versions kept (1-100; older ones are destroyed, their history stays).
    #[arg(long)]
    pub keep: Option<i64>,
    /// The SSH target whose password this is (type password): the gateway then logs in to the
    /// target with it, and rotates it there whenever a check-out of it ends.
    #[arg(long)]
    pub target: Option<String>,
    /// Why (kept in its history).
    #[arg(long, default_value = "")]
    pub reason: String,
}

#[derive(Args, Debug)]
pub struct SecretEdit {
    pub name: String,
    #[command(flatten)]
    pub value: SecretValueArgs,
    #[arg(long = "env")]
    pub environment: Option<String>,
    #[arg(long)]
    pub folder: Option<String>,
    /// Replace the tags (repeatable).
    #[arg(long = "tag")]
    pub tags: Option<Vec<String>>,
    #[arg(long)]
    pub description: Option<String>,
    #[arg(long)]
    pub owner: Option<String>,
    /// true or false: whether it may be checked out and shown under a grant.
    #[arg(long)]
    pub revealable: Option<bool>,
    /// A new expiry (RFC 3339 or from now, 90d), or `none` to go back to the value's own.
    #[arg(long)]
    pub expires: Option<String>,
    #[arg(long)]
    pub keep: Option<i64>,
    #[arg(long, default_value = "")]
    pub reason: String,
}

#[derive(Args, Debug)]
pub struct SecretList {
    /// Only this type.
    #[arg(long = "type")]
    pub kind: Option<String>,
    #[arg(long = "env")]
    pub environment: Option<String>,
    /// This folder and those under it.
    #[arg(long)]
    pub folder: Option<String>,
    #[arg(long)]
    pub tag: Option<String>,
    /// Words to find in the name, folder, tags or description (never in values).
    #[arg(long)]
    pub search: Option<String>,
    /// Only those expiring within this long (30d), or already expired.
    #[arg(long)]
    pub expiring: Option<String>,
    /// Removed secrets too.
    #[arg(long)]
    pub removed: bool,
    /// At most this many (default: all).
    #[arg(long)]
    pub limit: Option<u32>,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// ENV=SECRET[.FIELD]: the secret's field (default: its main one) in environment variable
    /// ENV (repeatable).
    #[arg(long = "secret", value_name = "ENV=SECRET[.FIELD]")]
    pub secrets: Vec<String>,
    /// PATH=SECRET[.FIELD]: the field written to a new file PATH (mode 0600), removed when the
    /// command ends (repeatable).
    #[arg(long = "file", value_name = "PATH=SECRET[.FIELD]")]
    pub files: Vec<String>,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}
