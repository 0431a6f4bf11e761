//! Small helpers shared by the bench parts: the release re-run of a part, the eBPF
//! object loaded as the daemon loads it, aligned tables; running commands is
//! `warden_tests::cmd`'s (shared with xtask).

use anyhow::{Context as _, Result};

pub use warden_tests::cmd::{capture, cargo_build, run, workspace_root};

/// Prints an aligned table: columns two spaces apart, those for which `right(column)`
/// holds right-aligned (figures), the rest left-aligned.
pub fn print_aligned<const N: usize>(
    headers: [&str; N],
    rows: &[[String; N]],
    right: impl Fn(usize) -> bool,
) {
    let mut widths = headers.map(str::len);
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: [&str; N]| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i > 0 {
                out.push_str("  ");
            }
            if right(i) {
                out.push_str(&format!("{cell:>w$}"));
            } else {
                out.push_str(&format!("{cell:<w$}"));
            }
        }
        println!("{}", out.trim_end());
    };
    line(headers);
    for row in rows {
        line(row.each_ref().map(String::as_str));
    }
}

/// Runs the bench part `task` (a subcommand of this binary) in a release build (a part
/// whose figures a debug build would distort), after building the release daemon, and
/// returns the JSON it prints on stdout.
pub fn run_release_task(task: &str) -> Result<serde_json::Value> {
    cargo_build(true).context("building the release daemon")?;
    let out = warden_tests::cmd::cargo()
        .args([
            "run",
            "--release",
            "--quiet",
            "--package",
            "warden-bench",
            "--",
            task,
        ])
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("running cargo run --release -p warden-bench -- {task}"))?;
    anyhow::ensure!(
        out.status.success(),
        "warden-bench {task} (release) failed: {}",
        out.status
    );
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).with_context(|| format!("{task} printed no JSON: {text}"))
}

/// The eBPF object loaded as the daemon loads it (`warden_dataplane::loader`), with
/// the XDP programs `names` loaded into the kernel.
pub fn load_xdp(names: &[&str]) -> Result<aya::Ebpf> {
    let mut ebpf = warden_dataplane::loader()?
        .load(warden_dataplane::OBJECT)
        .context("loading the eBPF object (needs root or CAP_BPF)")?;
    for &name in names {
        let prog: &mut aya::programs::Xdp = ebpf
            .program_mut(name)
            .with_context(|| format!("no program {name} in the object"))?
            .try_into()
            .with_context(|| format!("{name} is not an XDP program"))?;
        prog.load().with_context(|| format!("loading {name}"))?;
    }
    Ok(ebpf)
}
