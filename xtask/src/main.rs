//! Developer tasks. `cargo xtask <task>`; every task that needs the machine set up
//! runs `setup` first, so a fresh checkout needs nothing else.
//!
//! xtask itself builds on the stable toolchain alone: it installs the eBPF toolchain,
//! so nothing it depends on may need it (checked by `cargo xtask test`, see
//! [`deps`]). What embeds the eBPF object (the daemon, the benchmarks in
//! `tests/bench`) is built by a task after its setup.

mod bench;
mod demo;
mod deps;
mod fuzz;
mod package;
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
    /// Setup, then build the daemon (and its embedded eBPF object) and the lab's tools.
    Build {
        /// Build with the release profile.
        #[arg(long)]
        release: bool,
    },
    /// Build the Debian package (binary, unit, /etc/warden sample, man pages,
    /// completions) into target/package; prints the .deb's path.
    Package(package::PackageArgs),
    /// Setup, fmt check, clippy (userspace and eBPF), unit tests, then the privileged tiers.
    Test(test::TestArgs),
    /// Build a namespace lab, run the daemon on it, drive traffic and show per-tenant rates.
    Demo(demo::DemoArgs),
    /// Setup, then the differential test of the kernel programs against the reference
    /// model with many frames and a fresh seed.
    Fuzz(fuzz::FuzzArgs),
    /// Setup, then the benchmarks (`warden-bench run`): measure against baselines of the
    /// same run, write report.json, then BENCHMARKS.md. `cargo xtask bench --help` lists
    /// the bench's own options.
    #[command(disable_help_flag = true)]
    Bench {
        /// Options of `warden-bench run`, passed through.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Setup, then regenerate BENCHMARKS.md and docs/bench/*.svg from an existing bench
    /// report (`warden-bench report`).
    #[command(disable_help_flag = true)]
    BenchReport {
        /// Options of `warden-bench report`, passed through.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
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
        Task::Package(args) => package::run(args),
        Task::Test(args) => test::run(args),
        Task::Demo(args) => demo::run(args),
        Task::Fuzz(args) => fuzz::run(args),
        Task::Bench { args } => bench::run("run", &args),
        Task::BenchReport { args } => bench::run("report", &args),
    }
}
