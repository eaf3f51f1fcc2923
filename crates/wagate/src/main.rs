use clap::Parser;

/// mimalloc: rows are allocated on sqlx's SQLite worker threads and freed on the runtime's,
/// a pattern where the system allocator spends its time in lock contention.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    let cli = wagate::cli::Cli::parse();
    if let Err(e) = wagate::cli::run(cli).await {
        eprintln!("wagate: {e:#}");
        std::process::exit(1);
    }
}
