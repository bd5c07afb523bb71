use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use portcullis_server::{InitOptions, Server, SystemClock};

use crate::args::ServerCommand;
use crate::passphrase::Prompt;

pub async fn run(cmd: ServerCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ServerCommand::Init { data, admin, key_store, tls_names, database } => {
            let outcome = portcullis_server::init(
                &data,
                InitOptions {
                    key_store,
                    admin_name: admin,
                    extra_admin_roles: vec![],
                    tls_names,
                    standalone: false,
                    database,
                },
                &Prompt,
                Arc::new(SystemClock),
            )
            .await?;
            println!("Initialised a Portcullis server in {}", data.display());
            println!("Root key stored in: {}", outcome.key_store);
            println!("TLS certificate SHA-256: {}", outcome.tls_fingerprint);
            println!(
                "Enrol the first admin ({}) with: portcullis enroll --server URL --code CODE (valid 24 h)",
                outcome.admin_name
            );
            println!("{}", outcome.admin_code);
            Ok(ExitCode::SUCCESS)
        }
        ServerCommand::Verify { data, database } => {
            let report = Server::verify_data(&data, database.as_deref(), &Prompt).await?;
            Ok(crate::audit::print_report(&report))
        }
        ServerCommand::Run {
            data,
            listen,
            tls,
            gateway_listen,
            gateway_advertise,
            no_gateway,
            exec_record_limit,
            ssh_login_grace,
            database,
            trusted_proxies,
            metrics_listen,
        } => {
            let trusted_proxies =
                portcullis_server::client_addr::parse_proxies(&trusted_proxies).map_err(anyhow::Error::msg)?;
            let addr: std::net::SocketAddr =
                listen.parse().with_context(|| format!("--listen {listen:?} is not an ADDR:PORT"))?;
            let use_tls = tls || portcullis_server::listen_needs_tls(&addr);
            let server = Server::open_at(&data, database.as_deref(), &Prompt, Arc::new(SystemClock)).await?;
            // Replicas share one database; an embedded gateway each would write one gateway's
            // log from two places. With PostgreSQL, gateways are their own processes.
            let replicable = server.database_kind() == portcullis_server::DatabaseKind::Postgres;
            if replicable && !no_gateway {
                println!(
                    "Store: PostgreSQL. No embedded gateway: replicas share the database, so gateways run as their \
                     own processes (`portcullis gateway add NAME`, then `portcullis gateway run` near the targets)"
                );
            }
            let no_gateway = no_gateway || replicable;
            server.set_exec_record_limit(exec_record_limit);
            server.set_trusted_proxies(trusted_proxies);
            let listener =
                tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
            let local = listener.local_addr()?;
            let scheme = if use_tls { "https" } else { "http" };
            println!("Portcullis server listening on {scheme}://{local}");
            if use_tls {
                println!("TLS certificate SHA-256: {}", server.tls_fingerprint());
            }
            // The embedded gateway: in this process, credentials handed over in memory.
            let _gateway = if no_gateway {
                None
            } else {
                let gateway_addr: std::net::SocketAddr = gateway_listen
                    .parse()
                    .with_context(|| format!("--gateway-listen {gateway_listen:?} is not an ADDR:PORT"))?;
                let gateway = portcullis_embedded::gateway(&server)
                    .await
                    .map_err(anyhow::Error::msg)?
                    .with_limits(login_grace(ssh_login_grace));
                let gateway_listener = tokio::net::TcpListener::bind(gateway_addr)
                    .await
                    .with_context(|| format!("the gateway cannot listen on {gateway_addr}"))?;
                let gateway_local = gateway_listener.local_addr()?;
                let advertise = gateway_advertise.unwrap_or_else(|| advertised(gateway_local));
                let running = gateway.spawn(gateway_listener, advertise.clone()).map_err(anyhow::Error::msg)?;
                println!("Portcullis gateway (embedded) listening on {gateway_local}; users connect to {advertise}");
                Some(running)
            };
            let _metrics = match metrics_listen {
                Some(at) => {
                    let addr: std::net::SocketAddr =
                        at.parse().with_context(|| format!("--metrics-listen {at:?} is not an ADDR:PORT"))?;
                    anyhow::ensure!(
                        addr.ip().is_loopback(),
                        "--metrics-listen takes a loopback address ({addr} is not): scrape it through an agent or a \
                         tunnel on this host"
                    );
                    let handle = portcullis_server::metrics::install()?;
                    let listener = tokio::net::TcpListener::bind(addr)
                        .await
                        .with_context(|| format!("metrics cannot listen on {addr}"))?;
                    println!("Metrics at http://{}/metrics", listener.local_addr()?);
                    let serving = server.clone();
                    Some(tokio::spawn(async move { serving.serve_metrics(listener, handle, shutdown_signal()).await }))
                }
                None => None,
            };
            tracing::info!(%local, tls = use_tls, "serving");
            server.serve(listener, use_tls, shutdown_signal()).await?;
            tracing::info!("stopped");
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub use portcullis_gateway::command::{advertised, login_grace, shutdown_signal};
