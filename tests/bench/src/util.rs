//! Small helpers shared by the bench parts: the release re-run of a part, the
//! benchmark's eBPF object loaded as the daemon loads its own, aligned tables; running commands is
//! `warden_tests::cmd`'s (shared with xtask).

use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context as _, Result};

pub use warden_tests::cmd::{capture, run, workspace_root};

/// Where cargo puts its output: `$CARGO_TARGET_DIR`, else the workspace's `target`.
pub fn target_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

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

/// Builds the daemon and the lab's tools (`warden_tests::cmd::BUILD_DAEMON_AND_TOOLS`),
/// and in release this bench too, in one cargo call: built apart, the bench's
/// dependencies' features unify differently and cargo builds the release daemon's
/// crates twice (some four minutes here). The release build runs once per bench run:
/// the daemon's build script reruns whenever the repository's refs move
/// (`packed-refs`, shared by every worktree), so a second call could build the
/// daemon's crates again mid-run (seen here: three release builds of `warden` in one
/// run, some five minutes each).
pub fn cargo_build(release: bool) -> Result<()> {
    static RELEASE_BUILT: AtomicBool = AtomicBool::new(false);
    if !release {
        return warden_tests::cmd::cargo_build(false);
    }
    if RELEASE_BUILT.load(Ordering::Acquire) {
        return Ok(());
    }
    let mut cmd = warden_tests::cmd::cargo();
    cmd.args(warden_tests::cmd::BUILD_DAEMON_AND_TOOLS).args([
        "--package",
        "warden-bench",
        "--release",
    ]);
    run(&mut cmd)?;
    RELEASE_BUILT.store(true, Ordering::Release);
    Ok(())
}

/// Runs the bench part `task` (a subcommand of this binary) in a release build (a part
/// whose figures a debug build would distort), built with the release daemon
/// ([`cargo_build`]), and returns the JSON it prints on stdout.
pub fn run_release_task(task: &str) -> Result<serde_json::Value> {
    cargo_build(true).context("building the release daemon and bench")?;
    let bench = target_dir().join("release/warden-bench");
    let out = std::process::Command::new(&bench)
        .arg(task)
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("running {} {task}", bench.display()))?;
    anyhow::ensure!(
        out.status.success(),
        "warden-bench {task} (release) failed: {}",
        out.status
    );
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).with_context(|| format!("{task} printed no JSON: {text}"))
}

/// The benchmark's eBPF object (`warden-bench`, built with the daemon's): the enforcing
/// programs and the benchmark's own (baselines, generators, paths that move their frame
/// on), with the maps they share.
pub static BENCH_OBJECT: &[u8] = aya::include_bytes_aligned!(env!("WARDEN_BENCH_OBJECT"));

/// The benchmark object loaded as the daemon loads its own (`warden_dataplane::loader`),
/// with the XDP programs `names` loaded into the kernel. Fails unless the object's code
/// of the enforcing programs is the production object's ([`same_code_as_production`]):
/// the figures are the daemon's programs'.
pub fn load_xdp(names: &[&str]) -> Result<aya::Ebpf> {
    load_programs(names, &[])
}

/// [`load_xdp`], and the tc programs `tc_names` too.
pub fn load_programs(names: &[&str], tc_names: &[&str]) -> Result<aya::Ebpf> {
    load_on_pins(&[], names, tc_names)
}

/// [`load_programs`] with the maps `pins` names (map name, pin path) taken from those
/// pins (a running daemon's maps) instead of created.
pub fn load_on_pins(
    pins: &[(&str, &std::path::Path)],
    names: &[&str],
    tc_names: &[&str],
) -> Result<aya::Ebpf> {
    same_code_as_production()?;
    let mut loader = warden_dataplane::loader()?;
    for &(name, path) in pins {
        loader.map_pin_path(name, path);
    }
    let mut ebpf = loader
        .load(BENCH_OBJECT)
        .context("loading the benchmark eBPF object (needs root or CAP_BPF)")?;
    for &name in names {
        let prog: &mut aya::programs::Xdp = ebpf
            .program_mut(name)
            .with_context(|| format!("no program {name} in the object"))?
            .try_into()
            .with_context(|| format!("{name} is not an XDP program"))?;
        prog.load().with_context(|| format!("loading {name}"))?;
    }
    for &name in tc_names {
        let prog: &mut aya::programs::SchedClassifier = ebpf
            .program_mut(name)
            .with_context(|| format!("no program {name} in the object"))?
            .try_into()
            .with_context(|| format!("{name} is not a tc program"))?;
        prog.load().with_context(|| format!("loading {name}"))?;
    }
    Ok(ebpf)
}

/// Checks that every function of the production object (`warden_dataplane::OBJECT`: the
/// enforcing programs and the global functions they call) is in the benchmark object,
/// under the same name, with the same instructions. Both are built from the same
/// modules, so they are; this keeps it so.
pub fn same_code_as_production() -> Result<()> {
    use std::collections::HashMap;
    let parse = |what: &str, bytes: &[u8]| {
        aya_obj::Object::parse(bytes).with_context(|| format!("parsing the {what} object"))
    };
    let (prod, bench) = (
        parse("production", warden_dataplane::OBJECT)?,
        parse("benchmark", BENCH_OBJECT)?,
    );
    // An instruction's fields: opcode, destination and source register, offset, immediate.
    type Insn = (u8, u8, u8, i16, i32);
    let code = |o: &aya_obj::Object| -> HashMap<String, Vec<Insn>> {
        o.functions
            .values()
            .map(|f| {
                let insns = f.instructions.iter();
                let insns = insns.map(|i| (i.code, i.dst_reg(), i.src_reg(), i.off, i.imm));
                (f.name.clone(), insns.collect())
            })
            .collect()
    };
    let (prod, bench) = (code(&prod), code(&bench));
    anyhow::ensure!(!prod.is_empty(), "the production object has no functions");
    let mut differ: Vec<&str> = prod
        .iter()
        .filter(|(name, insns)| bench.get(*name) != Some(insns))
        .map(|(name, _)| name.as_str())
        .collect();
    differ.sort_unstable();
    anyhow::ensure!(
        differ.is_empty(),
        "the benchmark object's code differs from the production object's in {differ:?}: \
         its figures would not be the daemon's programs'"
    );
    Ok(())
}

/// The median of `v` (the mean of the middle two for an even count); NaN when empty.
pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

/// Puts `section` into the bench's report.json at `report` under `key` (replacing one
/// there), keeping every other section.
pub fn add_section(report: &std::path::Path, key: &str, section: serde_json::Value) -> Result<()> {
    let text =
        std::fs::read_to_string(report).with_context(|| format!("reading {}", report.display()))?;
    let mut v: serde_json::Value =
        serde_json::from_str(&text).context("report.json is not JSON")?;
    v.as_object_mut()
        .context("report.json is not an object")?
        .insert(key.into(), section);
    let text = serde_json::to_string_pretty(&v).context("encoding the report")?;
    std::fs::write(report, text + "\n").with_context(|| format!("writing {}", report.display()))
}

#[cfg(test)]
mod tests {
    /// The benchmark object's enforcing programs are the production object's: the
    /// benchmark measures the daemon's code.
    #[test]
    fn the_benchmark_object_has_the_production_objects_code() {
        super::same_code_as_production().expect("same code");
    }
}
