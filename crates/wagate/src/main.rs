use clap::Parser;

/// mimalloc: rows are allocated on sqlx's SQLite worker threads and freed on the runtime's,
/// a pattern where the system allocator spends its time in lock contention.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    keep_freed_memory();
    let cli = wagate::cli::Cli::parse();
    if let Err(e) = wagate::cli::run(cli).await {
        eprintln!("wagate: {e:#}");
        std::process::exit(1);
    }
}

/// SQLite allocates its page caches with the C allocator. A connection drops its cache whenever
/// another connection has written, and glibc then hands the freed pages back with `madvise`,
/// which on a virtual machine costs a TLB shootdown on every core — it was the largest single
/// cost of inbound ingest. A higher trim threshold keeps up to 64 MiB of freed memory for reuse.
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before any other thread runs.
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
    }
}
