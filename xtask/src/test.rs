//! `cargo xtask test`: everything CI checks, in the order that fails cheapest first.
//! Each step is announced and timed; the first failure stops the run and names its step.

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};

use crate::{setup, util};

/// The privileged test targets (files in tests/tests/), by tier. A new tier is one line
/// here. A target that does not exist is an error, never a skip.
const TIERS: &[(u8, &str)] = &[(1, "tier1"), (2, "tier2")];

/// The eBPF crate builds only for bpfel-unknown-none: it is linted on its own (step 4),
/// and `--workspace` would otherwise pull it into host builds.
const EBPF_PACKAGE: &str = "warden-ebpf";
const EBPF_DIR: &str = "ebpf/programs";

/// Unit tests that need root live in `lab` modules (warden-tests' `lab`, the warden
/// library's `dataplane::lab`); `--skip` takes a substring of the test path.
const PRIVILEGED_UNIT_TESTS: &str = "lab::";

/// Options of `cargo xtask test`.
#[derive(clap::Args)]
pub struct TestArgs {
    /// Run only the static checks and unprivileged unit tests: no root, no bpffs, no
    /// namespaces, no eBPF loading.
    #[arg(long, conflicts_with = "tier")]
    skip_privileged: bool,
    /// Run only this tier of the privileged tests (1: BPF_PROG_TEST_RUN fixtures,
    /// 2: network-namespace lab).
    #[arg(long, value_parser = parse_tier)]
    tier: Option<u8>,
}

fn parse_tier(text: &str) -> Result<u8, String> {
    let known: Vec<String> = TIERS.iter().map(|(t, _)| t.to_string()).collect();
    text.parse::<u8>()
        .ok()
        .filter(|t| TIERS.iter().any(|(known, _)| known == t))
        .ok_or_else(|| format!("unknown tier {text:?}; tiers are {}", known.join(", ")))
}

struct Step {
    name: String,
    action: Box<dyn FnOnce() -> Result<()>>,
}

impl Step {
    fn new(name: impl Into<String>, action: impl FnOnce() -> Result<()> + 'static) -> Step {
        Step {
            name: name.into(),
            action: Box::new(action),
        }
    }

    /// A step that runs `cmd` with stdin closed: CI has no terminal.
    fn run(name: impl Into<String>, mut cmd: Command) -> Step {
        cmd.stdin(Stdio::null());
        Step::new(name, move || util::run(&mut cmd))
    }
}

/// Cargo (the one running xtask) in the workspace root.
fn cargo(args: &[&str]) -> Command {
    let mut cmd = util::cargo();
    cmd.args(args);
    cmd
}

pub fn run(args: TestArgs) -> Result<()> {
    let steps = plan(&args);
    let total = steps.len();
    let started = Instant::now();
    let mut passed = 0;
    for (i, step) in steps.into_iter().enumerate() {
        println!("\n==> [{}/{total}] {}", i + 1, step.name);
        let t = Instant::now();
        match (step.action)() {
            Ok(()) => {
                passed += 1;
                println!("<== {} ok ({})", step.name, secs(t.elapsed()));
            }
            Err(err) => {
                println!("<== {} FAILED ({})", step.name, secs(t.elapsed()));
                let not_run = total - passed - 1;
                println!(
                    "\n{passed} passed, 1 failed ({}), {not_run} not run, {}",
                    step.name,
                    secs(started.elapsed())
                );
                return Err(err).with_context(|| format!("step `{}` failed", step.name));
            }
        }
    }
    println!("\n{passed} passed, 0 failed, {}", secs(started.elapsed()));
    Ok(())
}

fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

fn plan(args: &TestArgs) -> Vec<Step> {
    let mut steps = vec![
        // First and cheapest: xtask must stay buildable without the eBPF toolchain.
        Step::new("xtask builds without eBPF", crate::deps::check),
        if args.skip_privileged {
            Step::new("setup (unprivileged)", || {
                setup::run_scoped(setup::Scope::Unprivileged)
            })
        } else {
            Step::new("setup", setup::run)
        },
        Step::run("fmt", cargo(&["fmt", "--all", "--", "--check"])),
        Step::run(
            "clippy",
            cargo(&[
                "clippy",
                "--workspace",
                "--exclude",
                EBPF_PACKAGE,
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ]),
        ),
        // Through the rustup proxy: `+nightly` wins over the RUSTUP_TOOLCHAIN that
        // `cargo xtask` inherits from the stable cargo that started it.
        Step::run("clippy (eBPF)", {
            let mut cmd = Command::new("cargo");
            cmd.current_dir(util::workspace_root().join(EBPF_DIR))
                .args([
                    "+nightly",
                    "clippy",
                    "-Z",
                    "build-std=core",
                    "--target",
                    "bpfel-unknown-none",
                    "--release",
                    "--",
                    "-D",
                    "warnings",
                ]);
            cmd
        }),
    ];

    let mut unit = vec![
        "test",
        "--workspace",
        "--exclude",
        EBPF_PACKAGE,
        "--lib",
        "--bins",
    ];
    if args.skip_privileged {
        unit.extend(["--", "--skip", PRIVILEGED_UNIT_TESTS]);
    }
    let unit_name = if args.skip_privileged {
        "unit tests (unprivileged)"
    } else {
        "unit tests"
    };
    if !args.skip_privileged {
        // The daemon binary (target/debug/warden) and the lab's WAN delay line
        // (target/debug/delayline) are run by the lab tests among the unit tests and by
        // Tier 2; `cargo test` of a package does not build another package's binaries.
        steps.push(Step::run(
            "build daemon and lab tools",
            cargo(&warden_tests::cmd::BUILD_DAEMON_AND_TOOLS),
        ));
    }
    steps.push(Step::run(unit_name, cargo(&unit)));
    if !args.skip_privileged {
        // warden-fleet's integration tests start a real etcd (installed by setup) on
        // loopback: its key layout, CAS writes, RBAC and TLS against the server itself.
        steps.push(Step::run(
            "fleet against etcd",
            cargo(&["test", "-p", "warden-fleet", "--tests"]),
        ));
    }

    if !args.skip_privileged {
        for (tier, target) in TIERS {
            if args.tier.is_some_and(|t| t != *tier) {
                continue;
            }
            steps.push(Step::run(
                format!("tier {tier} ({target})"),
                cargo(&[
                    "test",
                    "-p",
                    "warden-tests",
                    "--test",
                    target,
                    "--",
                    "--test-threads=1",
                ]),
            ));
        }
    }
    steps
}
