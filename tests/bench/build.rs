//! Hands this crate the path of the benchmark's eBPF object (`warden-bench`), which the
//! `warden-dataplane` crate's build script builds with the daemon's and passes on through its
//! `links` key, as `WARDEN_BENCH_OBJECT` (embedded by `util::BENCH_OBJECT`).
fn main() {
    const DEP: &str = "DEP_WARDEN_OBJECTS_BENCH";
    println!("cargo::rerun-if-env-changed={DEP}");
    let path = std::env::var(DEP).expect(
        "warden's build script sets it (`links = \"warden-objects\"`), and warden-dataplane is a dependency",
    );
    println!("cargo::rustc-env=WARDEN_BENCH_OBJECT={path}");
}
