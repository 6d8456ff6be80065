//! `azure-emulator`: the local stand-in for Azure used by tests and the demo.

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "azure-emulator",
    version,
    about = "Local emulator of ARM, Microsoft Graph, managed-identity tokens and Resource Graph"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve ARM, Resource Graph, Microsoft Graph and the managed-identity endpoint on one loopback port.
    Serve(azure_emulator::cli::ServeArgs),
    /// Run a function app's custom handler under the Functions host simulator.
    FunctionsHost(azure_emulator::functions_host::cli::FunctionsHostArgs),
    /// The emulator, Event Grid and the Functions host simulator together.
    Up(Box<azure_emulator::functions_host::cli::UpArgs>),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Serve(args) => azure_emulator::cli::run(args).await?,
        Command::FunctionsHost(args) => azure_emulator::functions_host::cli::run(args).await?,
        Command::Up(args) => azure_emulator::functions_host::cli::run_up(*args).await?,
    }
    Ok(())
}
