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
    /// Print the version.
    Version,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Crds { output_dir: None } => print!("{}", ctwa_operator::crdgen::crds_yaml()?),
        Command::Crds {
            output_dir: Some(dir),
        } => {
            std::fs::create_dir_all(&dir)?;
            for (name, yaml) in ctwa_operator::crdgen::crd_files()? {
                std::fs::write(dir.join(name), yaml)?;
            }
        }
        Command::Version => println!("ctwa-operator {}", env!("CARGO_PKG_VERSION")),
    }
    Ok(())
}
