//! Metering: exact per-tenant counts in host and gateway mode, IPv4 and IPv6.

use std::time::Duration;

use anyhow::Result;
use warden_common::direction;
use warden_tests::topology::{addr, warden_binary, StandardLab};

use crate::common::*;

#[test]
fn counts_are_exact_per_tenant_in_host_and_gateway_modes_for_ipv4_and_ipv6() -> Result<()> {
    let warden = warden_binary()?;
    let lab = StandardLab::build("wt")?;
    let policy = lab.write_policy()?;
    let daemon = lab.start_daemon(&warden, &policy, &["--detach-on-exit"])?;
    let kmap = kernel_counter_map(daemon.pid())?;

    // What is attached where follows the interface's mode.
    assert_eq!(
        xdp_program(&lab.node, "wan0")?.as_deref(),
        Some("xdp_to_tenant")
    );
    assert_eq!(
        xdp_program(&lab.node, "lan0")?.as_deref(),
        Some("xdp_from_tenant")
    );
    assert_eq!(
        tcx_egress_programs(&lab.node, "wan0")?,
        vec!["tc_from_tenant"]
    );
    assert_eq!(
        tcx_egress_programs(&lab.node, "lan1")?,
        vec!["tc_to_tenant"]
    );
    assert_eq!(
        xdp_program(&lab.node, "wan1")?,
        None,
        "wan1 is not Warden's"
    );

    let before = api_counters(&lab)?;
    let before_metrics = metrics_counters(&lab)?;
    let mut exp = Expected::new();
    use direction::{IN, OUT};

    // acme, host mode: the node's own stack talks through wan0.
    ping(&lab.node, addr::EXT_WAN0_V4, 25, 100)?;
    add(&mut exp, "acme", OUT, 25, ping_frame(false, 100));
    add(&mut exp, "acme", IN, 25, ping_frame(false, 100));
    ping(&lab.node, addr::EXT_WAN0_V6, 15, 300)?;
    add(&mut exp, "acme", OUT, 15, ping_frame(true, 300));
    add(&mut exp, "acme", IN, 15, ping_frame(true, 300));

    // globex and initech, gateway mode: their servers talk through the node.
    ping(&lab.globex, addr::EXT_WAN1_V4, 30, 56)?;
    add(&mut exp, "globex", OUT, 30, ping_frame(false, 56));
    add(&mut exp, "globex", IN, 30, ping_frame(false, 56));
    ping(&lab.globex, addr::EXT_WAN1_V6, 20, 1000)?;
    add(&mut exp, "globex", OUT, 20, ping_frame(true, 1000));
    add(&mut exp, "globex", IN, 20, ping_frame(true, 1000));

    // initech: UDP only one way (hping3 into a sink that never answers), plus pings.
    let _sink = lab
        .ext
        .spawn(&["socat", "-u", "UDP4-RECV:9000,reuseaddr", "OPEN:/dev/null"])?;
    lab.ext.wait_udp_listen(9000, Duration::from_secs(10))?;
    // hping3 exits 1 when nothing answers, which is what a sink gives: judge by its
    // own count of packets sent.
    let out = lab.initech.exec_unchecked(
        &[
            "hping3",
            "--udp",
            "-p",
            "9000",
            "-c",
            "40",
            "-i",
            "u2000",
            "-d",
            "200",
            addr::EXT_WAN1_V4,
        ],
        Duration::from_secs(30),
    )?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("40 packets transmitted"),
        "hping3 did not send 40 packets:\n{text}"
    );
    add(&mut exp, "initech", OUT, 40, 14 + 20 + 8 + 200);
    ping(&lab.initech, addr::EXT_WAN1_V6, 10, 64)?;
    add(&mut exp, "initech", OUT, 10, ping_frame(true, 64));
    add(&mut exp, "initech", IN, 10, ping_frame(true, 64));

    let after = api_counters(&lab)?;
    let after_metrics = metrics_counters(&lab)?;
    for tenant in ["acme", "globex", "initech"] {
        let (index, b) = before[tenant];
        let (_, a) = after[tenant];
        let want = [
            exp[&(tenant.to_string(), 0)],
            exp.get(&(tenant.to_string(), 1)).copied().unwrap_or((0, 0)),
        ];
        assert_eq!(
            delta(a, b),
            want,
            "{tenant}: API counters [out, in] (packets, bytes)"
        );
        let m = delta(after_metrics[tenant], before_metrics[tenant]);
        assert_eq!(m, want, "{tenant}: /metrics [out, in] (packets, bytes)");
        assert_eq!(
            kernel_counters(&kmap, index)?,
            a,
            "{tenant}: kernel map equals API"
        );
        eprintln!(
            "{tenant}: out {:?} in {:?} (packets, bytes) exact",
            want[0], want[1]
        );
    }

    // SIGTERM detaches everything the daemon attached.
    let status = daemon.stop()?;
    assert!(status.success(), "daemon exited with {status}");
    for iface in ["wan0", "lan0", "lan1"] {
        assert_eq!(xdp_program(&lab.node, iface)?, None, "XDP left on {iface}");
        assert!(
            tcx_egress_programs(&lab.node, iface)?.is_empty(),
            "tcx left on {iface}"
        );
    }
    Ok(())
}
