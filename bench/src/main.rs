//! lotse-bench: sync cost and server capacity of Lotse, side by side with the stock
//! automerge-repo 2.x stack. See bench/README.md.

mod api;
mod client;
mod idle;
mod load;
mod mobile;
mod procs;
mod propagation;
mod push;
mod report;
mod scenarios;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "lotse-bench",
    about = "Lotse benchmarks against automerge-repo"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run every scenario, print the table, write JSON and Markdown.
    All(scenarios::Options),
    /// Internal: mobile-core measurements in a process of their own (for its RSS).
    #[command(hide = true)]
    MobileChild {
        #[arg(long)]
        base: String,
        #[arg(long)]
        code: String,
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        notes: usize,
    },
    /// Internal: cold open of an existing mobile-core store.
    #[command(hide = true)]
    MobileOpen {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        base: String,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    match cli.command {
        Cmd::All(opts) => rt.block_on(scenarios::all(opts)),
        Cmd::MobileChild {
            base,
            code,
            dir,
            notes,
        } => rt.block_on(mobile::child(&base, &code, &dir, notes)),
        Cmd::MobileOpen { dir, base } => rt.block_on(mobile::open(&dir, &base)),
    }
}
