//! `portcullis run`: a command with secrets in its environment or in files, its output masked.
//!
//! Each secret is fetched once, under the caller's grant to use it (the server records the
//! command and the version). The child's stdout and stderr pass through a masker each
//! (`portcullis_vault::mask`); its stdin is ours. SIGINT, SIGTERM, SIGHUP and SIGQUIT are passed
//! on to it. When it ends, how it ended is recorded, files are removed, and we exit with its
//! status (a signal N as 128 + N, as a shell reports it).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::{Context, bail};
use portcullis_crypto::SecretBytes;
use portcullis_vault::mask::MaskSet;
use portcullis_vault::wire::{Released, UseEnded};

use crate::args::RunArgs;
use crate::open_device;

/// Where one value goes.
#[derive(Debug)]
enum Sink {
    Env(String),
    File(PathBuf),
}

/// One `--secret` or `--file`: where, which secret, which field (`None`: its main one).
#[derive(Debug)]
struct Binding {
    sink: Sink,
    secret: String,
    field: Option<String>,
}

fn parse_binding(spec: &str, file: bool) -> anyhow::Result<Binding> {
    let flag = if file { "--file" } else { "--secret" };
    let Some((left, right)) = spec.split_once('=') else {
        bail!("{flag} {spec:?}: write {}=SECRET[.FIELD]", if file { "PATH" } else { "ENV" });
    };
    let (secret, field) = match right.split_once('.') {
        Some((s, f)) => (s.to_string(), Some(f.to_string())),
        None => (right.to_string(), None),
    };
    portcullis_proto::check_name("secret", &secret).map_err(anyhow::Error::msg)?;
    let sink = if file {
        Sink::File(PathBuf::from(left))
    } else {
        let valid = left.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && left.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            bail!("--secret {left:?}=...: an environment variable name is letters, digits and '_'");
        }
        Sink::Env(left.to_string())
    };
    Ok(Binding { sink, secret, field })
}

/// The command line as the audit records it: each word quoted when it needs to be, control
/// characters escaped (a script given with `-c` spans lines), at most 4 KiB.
fn command_line(words: &[String]) -> String {
    let mut line = quoted_words(words)
        .chars()
        .flat_map(|c| if c.is_control() { c.escape_default().collect::<Vec<_>>() } else { vec![c] })
        .collect::<String>();
    if line.len() > 4096 {
        let mut cut = 4093;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        line.truncate(cut);
        line.push_str("...");
    }
    line
}

fn quoted_words(words: &[String]) -> String {
    let quoted: Vec<String> = words
        .iter()
        .map(|w| {
            if !w.is_empty() && w.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c)) {
                w.clone()
            } else {
                format!("'{}'", w.replace('\'', "'\\''"))
            }
        })
        .collect();
    quoted.join(" ")
}

/// Files written for the child, removed when this goes out of scope (however `run` ends).
struct Files(Vec<PathBuf>);

impl Drop for Files {
    fn drop(&mut self) {
        for path in &self.0 {
            if let Err(e) = std::fs::remove_file(path) {
                eprintln!("portcullis: could not remove {}: {e}", path.display());
            }
        }
    }
}

fn write_secret_file(path: &Path, value: &SecretBytes) -> anyhow::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("--file {}: creating it (it must not exist yet)", path.display()))?;
    file.write_all(value.expose_secret()).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Copies `from` to `to` through a masker, on a thread of its own (plain blocking IO: no
/// runtime hop per write); everything held is written when `from` ends.
fn pump(
    mut from: impl Read + Send + 'static,
    mut to: impl Write + Send + 'static,
    masks: Arc<MaskSet>,
) -> JoinHandle<std::io::Result<()>> {
    std::thread::spawn(move || {
        let mut masker = masks.masker();
        let mut buf = vec![0u8; PIPE_BYTES];
        let mut out = Vec::with_capacity(PIPE_BYTES + 1024);
        let mut failed: Option<std::io::Error> = None;
        loop {
            let n = match from.read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            out.clear();
            if n == 0 {
                if failed.is_none() {
                    masker.finish(&mut out);
                    if let Err(e) = to.write_all(&out).and_then(|()| to.flush()) {
                        failed = Some(e);
                    }
                }
                return failed.map_or(Ok(()), Err);
            }
            if failed.is_some() {
                continue; // our output is gone: keep draining, so the child never blocks on a full pipe
            }
            masker.push(&buf[..n], &mut out);
            if !out.is_empty()
                && let Err(e) = to.write_all(&out).and_then(|()| to.flush())
            {
                failed = Some(e);
            }
        }
    })
}

/// How much a child's output pipe holds (Linux's default is 64 KiB): fewer, larger reads.
const PIPE_BYTES: usize = 1024 * 1024;

pub async fn run(home: &Path, args: RunArgs) -> anyhow::Result<ExitCode> {
    let mut bindings = Vec::new();
    for spec in &args.secrets {
        bindings.push(parse_binding(spec, false)?);
    }
    for spec in &args.files {
        bindings.push(parse_binding(spec, true)?);
    }
    if bindings.is_empty() {
        bail!("name at least one secret: --secret ENV=SECRET[.FIELD] or --file PATH=SECRET[.FIELD]");
    }
    for b in &bindings {
        if let Sink::File(path) = &b.sink
            && path.exists()
        {
            bail!(
                "--file {}: it exists already; name a new file (it is removed when the command ends)",
                path.display()
            );
        }
    }
    let line = command_line(&args.command);
    let device = open_device(home).await?;
    let mut fetched: BTreeMap<String, (Released, Vec<(String, SecretBytes)>)> = BTreeMap::new();
    for b in &bindings {
        if !fetched.contains_key(&b.secret) {
            let got = device.use_secret(&b.secret, &line).await.with_context(|| format!("secret {}", b.secret))?;
            fetched.insert(b.secret.clone(), got);
        }
    }
    let mut values: Vec<(String, &SecretBytes)> = Vec::new();
    let mut env: Vec<(String, std::ffi::OsString)> = Vec::new();
    let mut files = Files(Vec::new());
    for b in &bindings {
        let (released, fields) = &fetched[&b.secret];
        let field = b.field.as_deref().unwrap_or(released.kind.primary_field());
        let Some((_, value)) = fields.iter().find(|(n, _)| n == field) else {
            let known: Vec<&str> = fields.iter().map(|(n, _)| n.as_str()).collect();
            bail!("secret {} has no field {field:?} (it has: {})", b.secret, known.join(", "));
        };
        match &b.sink {
            Sink::Env(name) => {
                env.push((name.clone(), std::ffi::OsString::from_vec(value.expose_secret().clone())));
                values.push((name.clone(), value));
            }
            Sink::File(path) => {
                write_secret_file(path, value)?;
                files.0.push(path.clone());
                values.push((path.display().to_string(), value));
            }
        }
    }
    let masks = Arc::new(MaskSet::new(values.iter().map(|(label, v)| (label.as_str(), v.expose_secret().as_slice()))));
    for warning in masks.warnings() {
        eprintln!("portcullis: warning: {warning}");
    }
    let mut child = std::process::Command::new(&args.command[0])
        .args(&args.command[1..])
        // The child gets its secrets, never what opens this device (it could ask for more).
        .env_remove("PORTCULLIS_IDENTITY")
        .env_remove("PORTCULLIS_PASSPHRASE")
        .env_remove("PORTCULLIS_ENROLL_CODE")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::inherit())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", args.command[0]))?;
    drop(env);
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        bail!("the command's output pipes are missing");
    };
    for pipe in [stdout.as_fd(), stderr.as_fd()] {
        // Best effort: a smaller pipe only means more reads.
        let _ = rustix::pipe::fcntl_setpipe_size(pipe, PIPE_BYTES);
    }
    let out = pump(stdout, std::io::stdout(), masks.clone());
    let err = pump(stderr, std::io::stderr(), masks.clone());
    let status = forward_signals_until_exit(child).await?;
    // The child is gone; its pipes end when every process that inherited them has closed them.
    for pumped in [out, err] {
        match pumped.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("portcullis: passing on the command's output failed: {e}"),
            Err(_) => eprintln!("portcullis: passing on the command's output failed"),
        }
    }
    let signal = status.signal().map(|s| signal_name(s).to_string());
    for (name, (released, _)) in &fetched {
        let ended = UseEnded { id: released.id.clone(), exit_status: status.code(), signal: signal.clone() };
        if let Err(e) = device.api().secret_used(name, &ended).await {
            eprintln!("portcullis: warning: could not record how the command ended: {e}");
        }
    }
    drop(files);
    Ok(match (status.code(), status.signal()) {
        (Some(code), _) => ExitCode::from(code.clamp(0, 255) as u8),
        (None, Some(signal)) => ExitCode::from((128 + signal).clamp(0, 255) as u8),
        _ => ExitCode::FAILURE,
    })
}

/// Waits for the child, passing on the signals a terminal or a CI runner sends to stop a job.
async fn forward_signals_until_exit(mut child: std::process::Child) -> anyhow::Result<std::process::ExitStatus> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut quit = signal(SignalKind::quit())?;
    let pid = rustix::process::Pid::from_raw(child.id() as i32);
    let mut waiting = tokio::task::spawn_blocking(move || child.wait());
    loop {
        let sig = tokio::select! {
            status = &mut waiting => return Ok(status??),
            _ = int.recv() => rustix::process::Signal::INT,
            _ = term.recv() => rustix::process::Signal::TERM,
            _ = hup.recv() => rustix::process::Signal::HUP,
            _ = quit.recv() => rustix::process::Signal::QUIT,
        };
        if let Some(pid) = pid {
            let _ = rustix::process::kill_process(pid, sig);
        }
    }
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        6 => "SIGABRT",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        15 => "SIGTERM",
        _ => "signal",
    }
}
