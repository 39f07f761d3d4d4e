#![forbid(unsafe_code)]

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Kubernetes operator for Click-to-WhatsApp ad measurement: 360dialog Signals to X Ads.
#[derive(Parser)]
#[command(name = "ctwa-operator", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print every CustomResourceDefinition as multi-document YAML.
    Crds {
        /// Write one file per kind into this directory instead of printing.
        #[arg(long)]
        output_dir: Option<PathBuf>,
    },
    /// Run the operator (reads the kubeconfig or the in-cluster service account).
    Run(Box<RunArgs>),
    /// Check that the operator can work here: CRDs served, RBAC granted, referenced Secrets
    /// readable, upstream APIs reachable. Exits 1 when anything fails (`helm test` runs it).
    Check(CheckArgs),
    /// Print the version.
    Version,
}

/// The upstream base URLs, the same for `run` and `check`.
#[derive(clap::Args)]
struct UpstreamArgs {
    /// Base URL of the 360dialog Signals API.
    #[arg(
        long,
        env = "CTWA_SIGNALS_URL",
        default_value = "https://api.signals.360dialog.io"
    )]
    signals_url: String,
    /// Base URL of the 360dialog Hub.
    #[arg(
        long,
        env = "CTWA_HUB_URL",
        default_value = "https://hub.360dialog.io/api/v2"
    )]
    hub_url: String,
    /// Base URL of the X Ads API.
    #[arg(
        long,
        env = "CTWA_X_ADS_URL",
        default_value = "https://ads-api.x.com/12"
    )]
    x_ads_url: String,
}

#[derive(clap::Args)]
struct CheckArgs {
    /// A namespace the operator watches (repeatable; default: all namespaces).
    #[arg(long = "namespace", env = "CTWA_NAMESPACE", value_delimiter = ',')]
    namespaces: Vec<String>,
    #[command(flatten)]
    upstream: UpstreamArgs,
    /// Also check the permissions on the leader Lease of this name.
    #[arg(long, env = "CTWA_LEASE_NAME")]
    lease_name: Option<String>,
    /// Namespace of the leader Lease (default: POD_NAMESPACE).
    #[arg(long, env = "CTWA_LEADER_ELECTION_NAMESPACE")]
    leader_election_namespace: Option<String>,
    /// With `--lease-name`: the operator runs with `--shards` this many (the shard and member
    /// Leases are checked instead of the leader Lease).
    #[arg(long, env = "CTWA_SHARDS", default_value_t = 1)]
    shards: u32,
    /// How long each upstream API may take to answer.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    timeout: std::time::Duration,
}

async fn check(args: CheckArgs) -> anyhow::Result<bool> {
    let client = kube::Client::try_default().await?;
    let lease = args.lease_name.map(|name| {
        let namespace = args
            .leader_election_namespace
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .unwrap_or_else(|| "default".into());
        (namespace, name)
    });
    let config = ctwa_operator::check::CheckConfig {
        namespaces: args.namespaces,
        upstreams: vec![
            ("Signals API", args.upstream.signals_url),
            ("360dialog Hub", args.upstream.hub_url),
            ("X Ads API", args.upstream.x_ads_url),
        ],
        timeout: args.timeout,
        lease,
        shards: args.shards,
    };
    let findings = ctwa_operator::check::run(&client, &config).await;
    for finding in &findings {
        println!("{finding}");
    }
    let failed = findings.iter().filter(|f| !f.ok).count();
    if failed == 0 {
        println!("all {} checks passed", findings.len());
    } else {
        println!("{failed} of {} checks failed", findings.len());
    }
    Ok(failed == 0)
}

#[derive(clap::Args)]
struct RunArgs {
    /// Watch only this namespace (repeatable; default: all namespaces).
    #[arg(long = "namespace", env = "CTWA_NAMESPACE", value_delimiter = ',')]
    namespaces: Vec<String>,
    /// How often upstream is re-read to repair drift (`ctwa.dev/resync-interval` overrides it).
    #[arg(long, env = "CTWA_RESYNC_INTERVAL", default_value = "10m", value_parser = parse_duration)]
    resync_interval: std::time::Duration,
    #[command(flatten)]
    upstream: UpstreamArgs,
    /// Address of `/metrics`, `/healthz` and `/readyz`.
    #[arg(long, env = "CTWA_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: std::net::SocketAddr,
    /// Address of the postback receiver (`POST /postbacks/<namespace>/<bridge>/<token>`).
    #[arg(long, env = "CTWA_POSTBACK_ADDR", default_value = "0.0.0.0:8081")]
    postback_addr: std::net::SocketAddr,
    /// The URL under which Signals reaches the postback receiver, e.g.
    /// `https://ctwa.example.com`; needed by SignalsPostback objects with `bridgeRef`.
    #[arg(long, env = "CTWA_PUBLIC_BASE_URL")]
    public_base_url: Option<String>,
    /// Least time between two status writes of one ConversionBridge.
    #[arg(long, env = "CTWA_BRIDGE_STATUS_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    bridge_status_interval: std::time::Duration,
    /// Forwarded event ids one ConversionBridge remembers at most; beyond it the oldest are
    /// forgotten first (counted in `ctwa_bridge_seen_ids_evicted_total`).
    #[arg(long, env = "CTWA_BRIDGE_MAX_SEEN_IDS", default_value_t = ctwa_operator::bridge::dedupe::DEFAULT_MAX_SEEN_IDS)]
    bridge_max_seen_ids: usize,
    /// Signals API requests per second per 360dialog Secret, shared by every object and
    /// bridge using it (at most 4 in flight at once).
    #[arg(long, env = "CTWA_SIGNALS_REQUESTS_PER_SECOND", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    signals_requests_per_second: u32,
    /// Run only while holding the leader Lease (run several replicas for availability).
    #[arg(long, env = "CTWA_LEADER_ELECTION")]
    leader_election: bool,
    /// Namespace of the leader Lease (default: the pod's namespace, from POD_NAMESPACE).
    #[arg(long, env = "CTWA_LEADER_ELECTION_NAMESPACE")]
    leader_election_namespace: Option<String>,
    /// Name of the leader Lease.
    #[arg(long, env = "CTWA_LEASE_NAME", default_value = "ctwa-operator")]
    lease_name: String,
    /// How the other replicas reach this process's postback receiver while it leads, e.g.
    /// `http://$(POD_IP):8081`: a follower hands the postbacks it receives to the leader.
    #[arg(long, env = "CTWA_POSTBACK_ADVERTISE_URL", value_parser = ctwa_operator::leadership::advertise_url)]
    postback_advertise_url: Option<String>,
    /// How long a leader Lease lasts without renewal; a crashed leader is replaced after it.
    #[arg(long, env = "CTWA_LEASE_DURATION", default_value = "15s", value_parser = parse_duration)]
    lease_duration: std::time::Duration,
    /// Spread the objects and bridges over this many shards, each held through Lease
    /// `<lease-name>-<i>` by one replica; the replicas share them out evenly. Needs
    /// `--leader-election`; 1 keeps a single leader.
    #[arg(long, env = "CTWA_SHARDS", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
    shards: u32,
    /// On SIGTERM, how long batches in flight may take to be delivered.
    #[arg(long, env = "CTWA_SHUTDOWN_GRACE", default_value = "20s", value_parser = parse_duration)]
    shutdown_grace: std::time::Duration,
    /// Log filter, e.g. `info` or `ctwa_operator=debug`.
    #[arg(long, env = "CTWA_LOG_LEVEL", default_value = "info")]
    log_level: String,
    /// `text` or `json`.
    #[arg(long, env = "CTWA_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
}

fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    ctwa_operator::runtime::duration::parse_duration(text)
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log_level)?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if args.log_format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
    if args.shards > 1 && !args.leader_election {
        anyhow::bail!("--shards above 1 needs --leader-election: shards are held on Leases");
    }
    let client = kube::Client::try_default().await?;
    let config = ctwa_operator::operator::OperatorConfig {
        resync_interval: args.resync_interval,
        signals_url: args.upstream.signals_url,
        hub_url: args.upstream.hub_url,
        x_ads_url: args.upstream.x_ads_url,
        namespaces: args.namespaces,
        metrics_addr: args.metrics_addr,
        postback_addr: args.postback_addr,
        public_base_url: args.public_base_url,
        bridge_status_interval: args.bridge_status_interval,
        leader_election: args
            .leader_election
            .then(|| ctwa_operator::operator::LeaseConfig {
                namespace: args
                    .leader_election_namespace
                    .or_else(|| std::env::var("POD_NAMESPACE").ok())
                    .unwrap_or_else(|| "default".into()),
                name: args.lease_name,
                identity: identity(),
                duration: args.lease_duration,
                postback_url: args.postback_advertise_url,
            }),
        shutdown_grace: args.shutdown_grace,
        bridge_max_seen_ids: args.bridge_max_seen_ids,
        signals_requests_per_second: args.signals_requests_per_second,
        shards: args.shards,
    };
    ctwa_operator::operator::run(client, config).await
}

/// This process in the leader Lease: the pod name (or host name), made unique per process.
fn identity() -> String {
    let host = std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "ctwa-operator".into());
    format!("{host}-{}", std::process::id())
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Run(args) => tokio::runtime::Runtime::new()?.block_on(run(*args))?,
        Command::Crds { output_dir: None } => print!("{}", ctwa_operator::crdgen::crds_yaml()?),
        Command::Crds {
            output_dir: Some(dir),
        } => {
            std::fs::create_dir_all(&dir)?;
            for (name, yaml) in ctwa_operator::crdgen::crd_files()? {
                std::fs::write(dir.join(name), yaml)?;
            }
        }
        Command::Check(args) => {
            let passed = tokio::runtime::Runtime::new()?.block_on(check(args))?;
            if !passed {
                std::process::exit(1);
            }
        }
        Command::Version => println!("ctwa-operator {}", env!("CARGO_PKG_VERSION")),
    }
    Ok(())
}
