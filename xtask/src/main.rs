//! Developer tasks. `cargo xtask <task>`; every task that needs the machine set up
//! runs `setup` first, so a fresh checkout needs nothing else.

mod bench;
mod bench_metrics;
mod bench_scale;
mod bench_throughput;
mod demo;
mod latency;
mod report;
mod setup;
mod test;
mod util;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask", about = "Warden developer tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install and verify everything a fresh machine lacks (idempotent).
    Setup,
    /// Build the daemon (and its embedded eBPF object).
    Build {
        /// Build with the release profile.
        #[arg(long)]
        release: bool,
    },
    /// Setup, fmt check, clippy (userspace and eBPF), unit tests, then the privileged tiers.
    Test(test::TestArgs),
    /// Build a namespace lab, run the daemon on it, drive traffic and show per-tenant rates.
    Demo(demo::DemoArgs),
    /// Measure against baselines of the same run; write report.json, then BENCHMARKS.md.
    Bench(bench::BenchArgs),
    /// The /metrics part of `bench` alone, as JSON (run by `bench` in release).
    #[command(hide = true)]
    BenchMetrics,
    /// The scale part of `bench` alone, as JSON (run by `bench` in release).
    #[command(hide = true)]
    BenchScale(bench_scale::Options),
    /// The veth throughput part of `bench` alone: its table, then its JSON.
    #[command(hide = true)]
    BenchThroughput(bench_throughput::Options),
    /// Regenerate BENCHMARKS.md and docs/bench/*.svg from an existing bench report.
    BenchReport(report::ReportArgs),
}

fn main() -> Result<()> {
    // Errors here name the failing step and command; a backtrace of xtask itself
    // (which RUST_BACKTRACE=1 would add to every one) only hides that.
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        std::env::set_var("RUST_LIB_BACKTRACE", "0");
    }

    match Cli::parse().task {
        Task::Setup => setup::run(),
        Task::Build { release } => {
            setup::run()?;
            util::cargo_build(release)
        }
        Task::Test(args) => test::run(args),
        Task::Demo(args) => demo::run(args),
        Task::Bench(args) => bench::run(args),
        Task::BenchMetrics => bench_metrics::print_json(),
        Task::BenchScale(opts) => bench_scale::print_json(&opts),
        Task::BenchThroughput(opts) => bench_throughput::print(&opts),
        Task::BenchReport(args) => report::run(args),
    }
}
