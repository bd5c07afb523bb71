use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;

use anyhow::bail;
use portcullis_client::ssh::{self, Input, Output, Pty, SessionOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::open_device;

/// Puts the local terminal in raw mode for an interactive session; restores it on drop.
struct RawMode;

impl RawMode {
    fn enable() -> anyhow::Result<Self> {
        crossterm::terminal::enable_raw_mode()?;
        Ok(Self)
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = crossterm::terminal::disable_raw_mode();
    }
}

pub async fn run(home: &Path, target: &str, force_tty: bool, command: Vec<String>) -> anyhow::Result<ExitCode> {
    let stdin_is_tty = std::io::stdin().is_terminal();
    // Like OpenSSH, the words after `--` are joined with spaces and run by the login shell.
    let command = if command.is_empty() { None } else { Some(command.join(" ")) };
    if command.is_none() && !stdin_is_tty {
        bail!("an interactive session needs a terminal; to run a command use: portcullis ssh {target} -- COMMAND");
    }
    let pty = (command.is_none() || force_tty).then(|| {
        let (cols, rows) = crossterm::terminal::size().unwrap_or((80, 24));
        Pty { term: std::env::var("TERM").unwrap_or_else(|_| "xterm-256color".into()), cols, rows }
    });
    let device = open_device(home).await?;

    let (input_tx, input_rx) = mpsc::channel::<Input>(16);
    let (output_tx, mut output_rx) = mpsc::channel::<Output>(64);
    let raw = if pty.is_some() && stdin_is_tty { Some(RawMode::enable()?) } else { None };

    let stdin_tx = input_tx.clone();
    tokio::spawn(async move {
        let mut stdin = tokio::io::stdin();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match stdin.read(&mut buf).await {
                Ok(0) | Err(_) => {
                    let _ = stdin_tx.send(Input::Eof).await;
                    break;
                }
                Ok(n) => {
                    if stdin_tx.send(Input::Data(buf[..n].to_vec())).await.is_err() {
                        break;
                    }
                }
            }
        }
    });
    #[cfg(unix)]
    if pty.is_some() {
        let resize_tx = input_tx.clone();
        tokio::spawn(async move {
            let Ok(mut winch) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change()) else {
                return;
            };
            while winch.recv().await.is_some() {
                let Ok((cols, rows)) = crossterm::terminal::size() else { continue };
                if resize_tx.send(Input::Resize { cols, rows }).await.is_err() {
                    break;
                }
            }
        });
    }
    drop(input_tx);
    let writer = tokio::spawn(async move {
        let mut stdout = tokio::io::stdout();
        let mut stderr = tokio::io::stderr();
        while let Some(chunk) = output_rx.recv().await {
            let written = match chunk {
                Output::Stdout(data) => {
                    async {
                        stdout.write_all(&data).await?;
                        stdout.flush().await
                    }
                    .await
                }
                Output::Stderr(data) => {
                    async {
                        stderr.write_all(&data).await?;
                        stderr.flush().await
                    }
                    .await
                }
            };
            if written.is_err() {
                break;
            }
        }
    });

    let result = ssh::run(&device, target, SessionOptions { command, pty }, input_rx, output_tx).await;
    let _ = writer.await;
    drop(raw);
    let outcome = result?;
    Ok(match outcome.exit_status {
        Some(status) => ExitCode::from(status.min(255) as u8),
        // Killed, disconnected or expired without an exit status: like ssh, 255.
        None => ExitCode::from(255),
    })
}

pub async fn config(home: &Path, out: Option<&Path>) -> anyhow::Result<ExitCode> {
    let device = open_device(home).await?;
    let written = device.write_ssh_config(out).await?;
    for (target, why) in &written.skipped {
        eprintln!("portcullis: {target} left out: {why}");
    }
    if written.hosts.is_empty() {
        println!(
            "You hold no live grant; the config has no hosts. Ask for access with `portcullis request TARGET ...`."
        );
    }
    for (host, _, until) in &written.hosts {
        println!("{host:<30} until {}", crate::access::format_time(*until));
    }
    println!(
        "Use: ssh -F {0} HOST   |   scp -F {0} FILE HOST:PATH   |   rsync -e 'ssh -F {0}' ...",
        written.config.display()
    );
    println!("{}", written.config.display());
    Ok(ExitCode::SUCCESS)
}
