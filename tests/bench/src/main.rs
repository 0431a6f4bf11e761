//! Warden's benchmarks: per-packet cost, detection latency, `/metrics`, scale, veth
//! throughput, the console in a browser and the fleet, each against a baseline measured in the same run, and the report they
//! make (`target/bench/report.json`, BENCHMARKS.md and its charts).
//!
//! Run through `cargo xtask bench` (and `cargo xtask bench-report`), which sets the
//! machine up first: this crate embeds the eBPF object, so it builds only once the eBPF
//! toolchain is installed, and xtask must never depend on it.

mod bench;
mod bench_console;
mod bench_fleet;
mod bench_fleet_scale;
mod bench_metrics;
mod bench_scale;
mod bench_throughput;
mod latency;
mod report;
mod util;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "warden-bench",
    about = "Warden benchmarks (run via `cargo xtask bench`)"
)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Measure against baselines of the same run; write report.json, then BENCHMARKS.md.
    Run(bench::BenchArgs),
    /// The /metrics part alone, as JSON (run by `run` in release).
    Metrics,
    /// The scale part alone, as JSON (run by `run` in release).
    Scale(bench_scale::Options),
    /// The veth throughput part alone: its table, then its JSON.
    Throughput(bench_throughput::Options),
    /// The console part alone (headless Chromium on a queue of 10,000 flags, a release
    /// daemon): its table, then its JSON.
    Console(bench_console::ConsoleArgs),
    /// The fleet part alone (a 3-member etcd, the controller, 20 host and 2 gateway
    /// release nodes in namespaces): its table, then its JSON.
    Fleet(bench_fleet::FleetArgs),
    /// The fleet-scale part alone (100,000 tenants in a real etcd: a gateway and a host
    /// node's cold start, a one-tenant change, the controller's flags over 10,000): its
    /// table, then its JSON.
    FleetScale(bench_fleet_scale::FleetScaleArgs),
    /// Regenerate BENCHMARKS.md and docs/bench/*.svg from an existing bench report.
    Report(report::ReportArgs),
}

fn main() -> Result<()> {
    // Errors here name the failing step and command; a backtrace of the bench itself
    // only hides that.
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        std::env::set_var("RUST_LIB_BACKTRACE", "0");
    }

    match Cli::parse().task {
        Task::Run(args) => bench::run(args),
        Task::Metrics => bench_metrics::print_json(),
        Task::Scale(opts) => bench_scale::print_json(&opts),
        Task::Throughput(opts) => bench_throughput::print(&opts),
        Task::Console(args) => bench_console::print(&args),
        Task::Fleet(args) => bench_fleet::print(&args),
        Task::FleetScale(args) => bench_fleet_scale::print(&args),
        Task::Report(args) => report::run(args),
    }
}

#[cfg(test)]
mod tests {
    /// Every subcommand's and flattened part's options fit together (clap checks names
    /// and groups only when a command is parsed: two parts' `Options` once clashed).
    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory as _;
        super::Cli::command().debug_assert();
    }
}
