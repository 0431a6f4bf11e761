//! `cargo xtask fuzz`: the differential test of the kernel programs against the
//! reference model (Tier 1, `differential`) with as many frames as asked and a fresh
//! seed, printed so a difference can be reproduced with `--seed`.

use anyhow::{Context as _, Result};

use crate::{setup, util};

/// Options of `cargo xtask fuzz`.
#[derive(clap::Args)]
pub struct FuzzArgs {
    /// Frames to generate (each runs through all four programs).
    #[arg(long, default_value_t = 10_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    frames: u64,
    /// Seed of the frame generator (default: from the clock; printed).
    #[arg(long, value_parser = parse_seed)]
    seed: Option<u64>,
}

fn parse_seed(text: &str) -> Result<u64, String> {
    let parsed = match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    };
    parsed.map_err(|_| format!("{text:?} is not a number (decimal or 0x hex)"))
}

pub fn run(args: FuzzArgs) -> Result<()> {
    setup::run()?;
    let seed = match args.seed {
        Some(s) => s,
        None => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .context("the clock is before 1970")?
            .as_nanos() as u64,
    };
    println!(
        "fuzz: {} frames, seed {seed:#x} (again: cargo xtask fuzz --frames {} --seed {seed:#x})",
        args.frames, args.frames
    );
    let mut cmd = util::cargo();
    cmd.args([
        "test",
        "--package",
        "warden-tests",
        "--test",
        "tier1",
        "--",
        "--test-threads=1",
        "--nocapture",
        "random_and_mutated_frames_get_the_reference_models_verdict_and_counters",
    ])
    .env("WARDEN_FUZZ_FRAMES", args.frames.to_string())
    .env("WARDEN_FUZZ_SEED", format!("{seed:#x}"));
    util::run(&mut cmd).with_context(|| format!("differential fuzzing with seed {seed:#x}"))
}
