use clap::Parser;

#[tokio::main]
async fn main() {
    let cli = wagate::cli::Cli::parse();
    if let Err(e) = wagate::cli::run(cli).await {
        eprintln!("wagate: {e:#}");
        std::process::exit(1);
    }
}
