//! The capabilities the daemon's kernel work needs, checked against its own effective
//! set when that work fails, so a start the kernel refuses (EPERM from `bpf(2)`, which
//! names no capability) says which one the daemon lacks.
//!
//! The set is the one `configs/warden.service` grants a daemon running as the `warden`
//! user (and the Tier 2 test `privileges` proves sufficient, and each of them needed):
//! nothing else of root's. Reading `/proc/sys/kernel/bpf_stats_enabled`, the state
//! directory and the events log need none (the daemon owns them); turning the BPF run
//! statistics on would need CAP_SYS_ADMIN, and the daemon never does.

/// Bit, name and use of each capability the daemon needs.
pub const NEEDED: [(u32, &str, &str); 3] = [
    (39, "CAP_BPF", "create, pin and open maps, load programs"),
    (
        12,
        "CAP_NET_ADMIN",
        "load XDP and tcx programs, attach them to interfaces",
    ),
    (
        38,
        "CAP_PERFMON",
        "the verifier's privileged mode, without which Warden's programs do not load",
    ),
];

/// CAP_SYS_ADMIN, which the kernel accepts in place of CAP_BPF and CAP_PERFMON.
const CAP_SYS_ADMIN: u32 = 21;

/// The needed capabilities missing from the effective set `eff` (a `CapEff` mask).
pub fn missing_from(eff: u64) -> Vec<&'static str> {
    let has = |bit: u32| eff & (1u64 << bit) != 0;
    NEEDED
        .iter()
        .filter(|(bit, name, _)| {
            let covered = *name != "CAP_NET_ADMIN" && has(CAP_SYS_ADMIN);
            !has(*bit) && !covered
        })
        .map(|(_, name, _)| *name)
        .collect()
}

/// The needed capabilities this process lacks (from `/proc/self/status`).
pub fn missing() -> std::io::Result<Vec<&'static str>> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .ok_or_else(|| std::io::Error::other("no CapEff line in /proc/self/status"))?;
    Ok(missing_from(eff))
}

/// `e` with, when this process lacks any needed capability, a first line naming them
/// and what each is for.
pub fn explain(e: anyhow::Error) -> anyhow::Error {
    let missing = match missing() {
        Ok(m) if !m.is_empty() => m,
        _ => return e,
    };
    let needs: Vec<String> = NEEDED
        .iter()
        .map(|(_, name, why)| format!("{name} ({why})"))
        .collect();
    e.context(format!(
        "the daemon lacks {}; it needs {}: run it as root or with them as ambient \
         capabilities (configs/warden.service)",
        missing.join(", "),
        needs.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BPF: u64 = 1 << 39;
    const NET_ADMIN: u64 = 1 << 12;
    const PERFMON: u64 = 1 << 38;

    #[test]
    fn each_missing_capability_is_named_and_sys_admin_stands_in_for_bpf_and_perfmon() {
        assert!(missing_from(BPF | NET_ADMIN | PERFMON).is_empty());
        assert!(missing_from(u64::MAX).is_empty());
        assert_eq!(missing_from(NET_ADMIN | PERFMON), ["CAP_BPF"]);
        assert_eq!(missing_from(BPF | PERFMON), ["CAP_NET_ADMIN"]);
        assert_eq!(missing_from(BPF | NET_ADMIN), ["CAP_PERFMON"]);
        assert_eq!(missing_from(0), ["CAP_BPF", "CAP_NET_ADMIN", "CAP_PERFMON"]);
        let sys_admin = 1u64 << CAP_SYS_ADMIN;
        assert!(missing_from(sys_admin | NET_ADMIN).is_empty());
        assert_eq!(missing_from(sys_admin), ["CAP_NET_ADMIN"]);
    }
}
