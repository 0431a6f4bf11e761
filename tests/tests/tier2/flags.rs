//! Flag review: flags written into the daemon's state database are listed, shown,
//! exported as pcap, acknowledged and dismissed through the API and the CLI, with roles
//! enforced and every review in the audit log.

use std::{process::Output, time::Duration};

use anyhow::{ensure, Context as _, Result};
use serde_json::{json, Value};
use warden_policy::{
    flag::{NewFlag, Sample},
    Kind,
};
use warden_store::Store;
use warden_tests::{
    packets::{Frame, Ipv4, L4},
    topology::{token, warden_binary, StandardLab},
};

/// A 60-byte Ethernet frame: TCP SYN from `src` to 198.18.3.254 port `dport`.
fn syn_frame(src: [u8; 4], dport: u16) -> Vec<u8> {
    let frame = Frame::new(
        Ipv4::new(src.into(), [198, 18, 3, 254].into()).l4(L4::tcp(40_000, dport, 0x02)),
    )
    .pad_to(60)
    .build();
    assert_eq!(frame.len(), 60);
    frame
}

/// Writes two flags (globex scan, initech flood_out), each with two samples, straight into
/// the running daemon's database. Returns their ids.
fn seed_flags(lab: &StandardLab) -> Result<(i64, i64)> {
    let state = lab.rundir()?.join("state");
    let store = Store::open(&state).with_context(|| format!("opening {}", state.display()))?;
    let now = warden_policy::time::system_clock();
    let mut ids = Vec::new();
    for (tenant, kind, src, figures, thresholds, targets) in [
        (
            "globex",
            Kind::Scan,
            [198, 18, 2, 10],
            json!({"targets": 120, "failure_ratio": 0.95}),
            json!({"targets": 100}),
            json!([[{"addr": "198.18.3.254", "port": null}, 120]]),
        ),
        (
            "initech",
            Kind::FloodOut,
            [198, 18, 2, 130],
            json!({"pps": 55000}),
            json!({"pps": 20000}),
            json!([[{"addr": "198.18.3.253", "port": null}, 55000]]),
        ),
    ] {
        let f = store.create_flag(NewFlag {
            tenant: tenant.into(),
            kind,
            seen: now,
            policy_generation: 1,
            thresholds,
            figures,
            top_targets: targets,
            deadline: Some(now + 86_400),
        })?;
        let samples: Vec<Sample> = (0..2u16)
            .map(|i| Sample {
                at_ns: now * 1_000_000_000 + i64::from(i) * 1_000,
                data: syn_frame(src, 80 + i),
                orig_len: 60,
            })
            .collect();
        ensure!(store.add_samples(f.id, &samples)? == 2, "samples not kept");
        ids.push(f.id);
    }
    Ok((ids[0], ids[1]))
}

/// Runs the CLI in the node namespace; returns (exit code, stdout, stderr).
fn cli(lab: &StandardLab, args: &[&str]) -> Result<(i32, String, String)> {
    let warden = warden_binary()?;
    let mut full = vec![warden.to_str().context("warden path is not UTF-8")?];
    full.extend_from_slice(args);
    let out: Output = lab.node.exec_unchecked(&full, Duration::from_secs(30))?;
    let code = out.status.code().unwrap_or(-1);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    eprintln!("$ warden {}  -> exit {code}", args.join(" "));
    Ok((code, stdout, stderr))
}

fn json_of(body: &str) -> Result<Value> {
    serde_json::from_str(body).with_context(|| format!("not JSON: {body}"))
}

#[test]
fn flags_are_listed_shown_exported_acked_and_dismissed_with_roles_and_audit() -> Result<()> {
    let lab = StandardLab::build("wt")?;
    let path = lab.write_policy()?;
    let _daemon = lab.start_daemon(&warden_binary()?, &path, &["--detach-on-exit"])?;
    let (scan, flood) = seed_flags(&lab)?;

    // List, filter, show.
    let all = json_of(&lab.get("/api/v1/flags")?)?;
    ensure!(all.as_array().map(Vec::len) == Some(2), "list: {all}");
    let globex = json_of(&lab.get("/api/v1/flags?tenant=globex")?)?;
    let globex = globex.as_array().context("list")?;
    ensure!(
        globex.len() == 1 && globex[0]["id"] == scan && globex[0]["kind"] == "scan",
        "tenant filter: {globex:?}"
    );
    let r = lab.request("GET", "/api/v1/flags?tenat=globex", None, None)?;
    ensure!(
        r.status == 400
            && json_of(&r.body)?["error"]
                .as_str()
                .unwrap_or("")
                .contains("tenat"),
        "unknown query key: {} {}",
        r.status,
        r.body
    );
    let shown = json_of(&lab.get(&format!("/api/v1/flags/{scan}"))?)?;
    ensure!(
        shown["figures"]["targets"] == 120
            && shown["thresholds"]["targets"] == 100
            && shown["samples"] == 2
            && shown["state"] == "open",
        "show: {shown}"
    );
    let r = lab.request("GET", "/api/v1/flags/999999", None, None)?;
    ensure!(r.status == 404, "unknown flag: {} {}", r.status, r.body);
    json_of(&r.body)?["error"]
        .as_str()
        .context("404 without error")?;

    // The pcap route: the file tcpdump reads back as the two samples.
    let r = lab.request("GET", &format!("/api/v1/flags/{scan}/pcap"), None, None)?;
    ensure!(r.status == 200, "pcap: {}", r.status);
    let pcap = lab.lab.tempdir().join("scan.pcap");
    let pcap_s = pcap.to_str().context("utf-8")?;
    let url = format!("http://{}/api/v1/flags/{scan}/pcap", lab.api());
    let out = lab
        .node
        .exec(&["curl", "-sS", "-o", pcap_s, "-w", "%{content_type}", &url])?;
    let ctype = String::from_utf8_lossy(&out.stdout);
    ensure!(
        ctype == "application/vnd.tcpdump.pcap",
        "content type {ctype}"
    );
    let packets = |file: &std::path::Path| -> Result<Vec<String>> {
        let out = std::process::Command::new("tcpdump")
            .args(["-nn", "-r"])
            .arg(file)
            .output()
            .context("running tcpdump")?;
        ensure!(
            out.status.success(),
            "tcpdump: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect())
    };
    let lines = packets(&pcap)?;
    eprintln!("tcpdump:\n{}", lines.join("\n"));
    ensure!(lines.len() == 2, "tcpdump read {} packets", lines.len());
    ensure!(
        lines[0].contains("198.18.2.10.40000 > 198.18.3.254.80"),
        "{}",
        lines[0]
    );

    // Reviews: roles, transitions, reasons.
    let ack = format!("/api/v1/flags/{scan}/ack");
    let dismiss = format!("/api/v1/flags/{scan}/dismiss");
    let r = lab.request("POST", &ack, None, None)?;
    ensure!(r.status == 401, "ack without token: {}", r.status);
    let r = lab.request("POST", &ack, None, Some(token::VIEWER))?;
    ensure!(r.status == 403, "ack as viewer: {} {}", r.status, r.body);
    let r = lab.request("POST", &ack, None, Some(token::OPERATOR))?;
    ensure!(r.status == 200, "ack: {} {}", r.status, r.body);
    ensure!(json_of(&r.body)?["state"] == "acked", "ack: {}", r.body);
    let r = lab.request("POST", &ack, None, Some(token::OPERATOR))?;
    ensure!(r.status == 409, "ack again: {} {}", r.status, r.body);
    ensure!(
        json_of(&r.body)?["error"]
            .as_str()
            .unwrap_or("")
            .contains("cannot become acked"),
        "409 message: {}",
        r.body
    );
    for body in ["{}", r#"{"reason": ""}"#, r#"{"reason": "  "}"#] {
        let r = lab.request("POST", &dismiss, Some(body), Some(token::OPERATOR))?;
        ensure!(
            r.status == 400
                && json_of(&r.body)?["error"]
                    .as_str()
                    .unwrap_or("")
                    .contains("reason"),
            "dismiss with {body}: {} {}",
            r.status,
            r.body
        );
    }
    let r = lab.request(
        "POST",
        &dismiss,
        Some(r#"{"reason": "customer's own load test"}"#),
        Some(token::OPERATOR),
    )?;
    ensure!(r.status == 200, "dismiss: {} {}", r.status, r.body);
    let v = json_of(&r.body)?;
    ensure!(
        v["state"] == "dismissed" && v["state_reason"] == "customer's own load test",
        "dismiss: {v}"
    );
    let r = lab.request(
        "POST",
        "/api/v1/flags/999999/ack",
        None,
        Some(token::OPERATOR),
    )?;
    ensure!(r.status == 404, "ack unknown: {} {}", r.status, r.body);
    let dismissed = json_of(&lab.get("/api/v1/flags?state=dismissed")?)?;
    ensure!(
        dismissed.as_array().map(Vec::len) == Some(1),
        "state filter: {dismissed}"
    );

    // The CLI, in the node namespace.
    let (code, out, _) = cli(&lab, &["flags", "--json"])?;
    ensure!(code == 0, "flags --json exit {code}");
    ensure!(json_of(&out)?.as_array().map(Vec::len) == Some(2), "{out}");
    let (code, out, _) = cli(&lab, &["flags"])?;
    eprint!("{out}");
    ensure!(
        code == 0
            && out.starts_with("ID")
            && out.contains("TOP TARGET")
            && out.contains("initech")
            && out.contains("198.18.3.253"),
        "flags table (exit {code}):\n{out}"
    );
    let (code, out, _) = cli(
        &lab,
        &["flags", "--tenant", "initech", "--since", "1h", "--json"],
    )?;
    let v = json_of(&out)?;
    ensure!(
        code == 0 && v.as_array().map(Vec::len) == Some(1) && v[0]["id"] == flood,
        "filtered flags (exit {code}): {out}"
    );
    let cli_pcap = lab.lab.tempdir().join("flood.pcap");
    let flood_s = flood.to_string();
    let (code, out, err) = cli(
        &lab,
        &[
            "flag",
            "show",
            &flood_s,
            "--pcap",
            cli_pcap.to_str().context("utf-8")?,
        ],
    )?;
    eprint!("{out}");
    ensure!(
        code == 0
            && out.contains("flood_out")
            && out.contains("55000")
            && out.contains("20000")
            && out.contains("samples: 2 kept"),
        "flag show (exit {code}):\n{out}{err}"
    );
    ensure!(packets(&cli_pcap)?.len() == 2, "CLI pcap");
    let (code, out, _) = cli(&lab, &["flag", "show", &flood_s, "--json"])?;
    ensure!(
        code == 0 && json_of(&out)?["kind"] == "flood_out",
        "show --json (exit {code}): {out}"
    );
    let (code, _, err) = cli(&lab, &["flag", "ack", &flood_s])?;
    ensure!(
        code == 4 && err.contains("401"),
        "ack without token (exit {code}): {err}"
    );
    let (code, out, err) = cli(&lab, &["--token", token::OPERATOR, "flag", "ack", &flood_s])?;
    ensure!(
        code == 0 && out.contains("acked"),
        "ack (exit {code}): {out}{err}"
    );
    let (code, _, err) = cli(&lab, &["--token", token::OPERATOR, "flag", "ack", &flood_s])?;
    ensure!(
        code == 6 && err.contains("409"),
        "ack again (exit {code}): {err}"
    );
    let (code, _, err) = cli(&lab, &["flag", "show", "999999"])?;
    ensure!(
        code == 5 && err.contains("404"),
        "show unknown (exit {code}): {err}"
    );
    cli_exit_codes_and_versions(&lab)?;
    let (code, _, err) = cli(
        &lab,
        &["--token", token::OPERATOR, "flag", "dismiss", &flood_s],
    )?;
    ensure!(
        code == 2 && err.contains("--reason"),
        "dismiss without --reason (exit {code}): {err}"
    );
    let (code, _, _) = cli(&lab, &["flags", "--since", "2x"])?;
    ensure!(code == 2, "bad --since: exit {code}");
    let (code, out, err) = cli(
        &lab,
        &[
            "--token",
            token::OPERATOR,
            "flag",
            "dismiss",
            &flood_s,
            "--reason",
            "seen",
        ],
    )?;
    ensure!(
        code == 0 && out.contains("dismissed"),
        "dismiss (exit {code}): {out}{err}"
    );

    // The audit log has every review under the operator's token name.
    let audit = json_of(&lab.get("/api/v1/audit")?)?;
    let reviews: Vec<(String, String, i64)> = audit
        .as_array()
        .context("audit list")?
        .iter()
        .filter(|e| e["action"].as_str().unwrap_or("").starts_with("flag."))
        .map(|e| {
            (
                e["action"].as_str().unwrap_or("").to_string(),
                e["actor"].as_str().unwrap_or("").to_string(),
                e["detail"]["flag"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    eprintln!("audit: {reviews:?}");
    let op = || "lab-operator".to_string();
    for want in [
        ("flag.ack".to_string(), op(), scan),
        ("flag.dismiss".to_string(), op(), scan),
        ("flag.ack".to_string(), op(), flood),
        ("flag.dismiss".to_string(), op(), flood),
    ] {
        ensure!(reviews.contains(&want), "audit lacks {want:?}: {reviews:?}");
    }
    ensure!(
        reviews.len() == 4,
        "refused reviews were audited: {reviews:?}"
    );
    Ok(())
}

/// The exit codes a script branches on that the review above does not reach: an unknown
/// tenant (5, a known one with no flags is 0), `--api` without a scheme (2, before any
/// request), a daemon that is not there (3); and `version` naming client and daemon
/// with the commit they were built from.
fn cli_exit_codes_and_versions(lab: &StandardLab) -> Result<()> {
    let (code, _, err) = cli(lab, &["flags", "--tenant", "nosuch"])?;
    ensure!(
        code == 5 && err.contains("no tenant `nosuch`"),
        "flags --tenant nosuch (exit {code}): {err}"
    );
    let (code, out, err) = cli(lab, &["flags", "--tenant", "initech", "--kind", "spam"])?;
    ensure!(
        code == 0,
        "flags of a known tenant (exit {code}): {out}{err}"
    );
    let (code, _, err) = cli(lab, &["--api", "127.0.0.1:9477", "status"])?;
    ensure!(
        code == 2 && err.contains("give e.g. http://127.0.0.1:9477"),
        "--api without a scheme (exit {code}): {err}"
    );
    let (code, _, err) = cli(lab, &["--api", "http://127.0.0.1:1", "status"])?;
    ensure!(
        code == 3 && err.contains("cannot reach the warden daemon"),
        "unreachable daemon (exit {code}): {err}"
    );
    let (code, out, err) = cli(lab, &["version"])?;
    let client = out.lines().next().unwrap_or_default();
    ensure!(
        code == 0 && client.starts_with("client: warden ") && client.contains("(commit "),
        "version (exit {code}): {out}{err}"
    );
    let daemon = client.replacen("client:", "daemon:", 1);
    ensure!(
        out.lines().nth(1) == Some(daemon.as_str()),
        "the daemon is not the same build as the client: {out}"
    );
    Ok(())
}
