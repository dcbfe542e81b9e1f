//! The `bcos-operator` binary: `run` the controllers, or `crdgen` the CRDs.

use std::{net::SocketAddr, path::PathBuf};

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(name = "bcos-operator", version, about = "Kubernetes operator for BCOS consortium chains")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Reconcile ConsortiumChain and Member resources (the container's command).
    Run {
        /// Where /metrics, /healthz and /readyz are served.
        #[arg(long, default_value = "0.0.0.0:8080")]
        http_listen: SocketAddr,
        /// Log lines as JSON (for log collectors) or as text.
        #[arg(long, value_enum, default_value_t = LogFormat::Json)]
        log_format: LogFormat,
        /// Watch only this namespace (default: all namespaces).
        #[arg(long)]
        watch_namespace: Option<String>,
        /// Name of the leader-election Lease.
        #[arg(long, default_value = "bcos-operator")]
        lease_name: String,
        /// Namespace of the Lease: the operator's own.
        #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
        lease_namespace: String,
        /// This replica's identity in the Lease.
        #[arg(long, env = "POD_NAME")]
        identity: Option<String>,
    },
    /// Write the CRDs generated from the resource types into `crds/` and the Helm chart.
    Crdgen {
        /// The repository root.
        #[arg(long, default_value = ".")]
        root: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Json,
    Text,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Crdgen { root } => {
            for file in bcos_operator::crdgen::write(&root)? {
                println!("wrote {}", file.display());
            }
            Ok(())
        }
        Command::Run { http_listen, log_format, watch_namespace, lease_name, lease_namespace, identity } => {
            let filter = tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
            let logs = tracing_subscriber::fmt().with_env_filter(filter);
            match log_format {
                LogFormat::Json => logs.json().init(),
                LogFormat::Text => logs.init(),
            }
            rustls::crypto::ring::default_provider()
                .install_default()
                .map_err(|_| anyhow::anyhow!("a TLS crypto provider is already installed"))?;
            let identity = identity.unwrap_or_else(|| format!("bcos-operator-{}", std::process::id()));
            let options =
                bcos_operator::run::Options { http_listen, watch_namespace, lease_name, lease_namespace, identity };
            tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(bcos_operator::run::run(options))
        }
    }
}
