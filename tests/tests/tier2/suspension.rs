//! Suspension above everything an operator can write (issue 16): a policy that would
//! expose a suspended tenant is refused for an operator and applied for an admin with an
//! audit entry, the suspended addresses staying dropped; and a state database that is
//! deleted, emptied, rolled back (WAL lost) or removed with its directory never lifts a
//! suspension: the daemon refuses to start, the pinned programs keep dropping, and
//! `warden state restore` brings the suspension back. Real traffic throughout: 50 echoes
//! per probe, bounded in count and time.

use std::{path::Path, time::Duration};

use crate::common::ping_received;
use anyhow::{anyhow, ensure, Context as _, Result};
use serde_json::Value;
use warden_tests::{
    lab::{Netns, Proc},
    topology::{addr, token, warden_binary, StandardLab},
    wait::{eventually, give_up},
};

/// Echoes per probe.
const PROBES: u64 = 50;

/// Echo replies `ns` gets of [`PROBES`] echoes to the outside host (20 ms apart, 1 s wait
/// for the last: a few seconds, at most 60).
fn probe(ns: &Netns) -> Result<u64> {
    let count = PROBES.to_string();
    ping_received(
        ns,
        &["-c", &count, "-i", "0.02", "-W", "1"],
        addr::EXT_WAN1_V4,
    )
}

/// `probe` of the suspended tenant, which must get nothing back.
fn expect_dropped(lab: &StandardLab, when: &str) -> Result<()> {
    let got = probe(&lab.globex)?;
    ensure!(
        got == 0,
        "{when}: the suspended tenant got {got} of {PROBES} replies"
    );
    eprintln!("{when}: globex 0 of {PROBES}");
    Ok(())
}

/// `probe` of a tenant that is not suspended, which must get everything back.
fn expect_flowing(lab: &StandardLab, when: &str) -> Result<()> {
    let got = probe(&lab.initech)?;
    ensure!(
        got == PROBES,
        "{when}: initech got {got} of {PROBES} replies"
    );
    Ok(())
}

fn post(lab: &StandardLab, path: &str, reason: &str) -> Result<()> {
    let body = serde_json::json!({ "reason": reason }).to_string();
    let r = lab.request("POST", path, Some(&body), Some(token::ADMIN))?;
    ensure!(r.status == 200, "POST {path}: {} {}", r.status, r.body);
    Ok(())
}

fn suspend(lab: &StandardLab, tenant: &str, reason: &str) -> Result<()> {
    post(lab, &format!("/api/v1/tenants/{tenant}/suspend"), reason)
}

fn unsuspend(lab: &StandardLab, tenant: &str, reason: &str) -> Result<()> {
    post(lab, &format!("/api/v1/tenants/{tenant}/unsuspend"), reason)
}

fn generation(lab: &StandardLab) -> Result<u64> {
    let v: Value = serde_json::from_str(&lab.get("/api/v1/status")?)?;
    v["policy_generation"].as_u64().context("no generation")
}

fn tenant(lab: &StandardLab, id: &str) -> Result<Value> {
    Ok(serde_json::from_str(
        &lab.get(&format!("/api/v1/tenants/{id}"))?,
    )?)
}

/// A tenant's `suspended` drops in the out direction, from the API.
fn suspended_drops(lab: &StandardLab, id: &str) -> Result<u64> {
    Ok(tenant(lab, id)?["out"]["drops"]["suspended"]
        .as_u64()
        .unwrap_or(0))
}

/// The newest audit entry with `action`, if any.
fn audit_entry(lab: &StandardLab, action: &str) -> Result<Option<Value>> {
    let v: Value = serde_json::from_str(&lab.get("/api/v1/audit")?)?;
    Ok(v.as_array()
        .context("audit list")?
        .iter()
        .find(|e| e["action"] == action)
        .cloned())
}

/// The demo policy with `from` replaced by `to` (which must be there).
fn edit(base: &str, from: &str, to: &str) -> Result<String> {
    ensure!(base.contains(from), "the lab policy has no {from:?}");
    Ok(base.replacen(from, to, 1))
}

/// The four exposing policies: (rule the API must name, policy text, the tenant that
/// owns globex's IPv4 address afterwards).
fn exposing(base: &str) -> Result<Vec<(&'static str, String, &'static str)>> {
    let globex = "  - id: globex\n";
    let globex_start = base.find(globex).context("no globex in the lab policy")?;
    let globex_end = globex_start
        + base[globex_start..]
            .find("  - id: initech\n")
            .context("no initech after globex")?;
    let removed = format!("{}{}", &base[..globex_start], &base[globex_end..]);
    let moved = edit(
        base,
        "      - 198.18.2.10/32\n      - 2001:db8:2:1::10/128\n",
        "      - 2001:db8:2:1::10/128\n",
    )?;
    let moved = edit(
        &moved,
        "      - 198.18.2.130/32\n",
        "      - 198.18.2.130/32\n      - 198.18.2.10/32\n",
    )?;
    Ok(vec![
        (
            "management_widened",
            // Wider than before, and now covering the outside host the probe pings.
            edit(base, "    - 198.18.3.253/32\n", "    - 198.18.3.0/24\n")?,
            "globex",
        ),
        (
            "suspended_tenant_renamed",
            edit(base, globex, "  - id: globex-renamed\n")?,
            "globex-renamed",
        ),
        ("suspended_tenant_removed", removed, "globex"),
        ("suspended_addresses_moved", moved, "initech"),
    ])
}

#[test]
fn a_policy_exposing_a_suspended_tenant_is_403_for_an_operator_and_applied_audited_and_still_dropped_for_an_admin(
) -> Result<()> {
    let lab = StandardLab::build("sx")?;
    let policy_path = lab.write_policy()?;
    let base = std::fs::read_to_string(&policy_path)?;
    let warden = warden_binary()?;
    let mut daemon = lab.start_daemon(&warden, &policy_path, &["--detach-on-exit"])?;
    expect_flowing(&lab, "before")?;
    suspend(&lab, "globex", "tier2: abuse report 16")?;
    expect_dropped(&lab, "suspended")?;
    let cases = exposing(&base)?;

    // Operator: 403 naming the rule and the tenant; nothing applied.
    for (rule, text, _) in &cases {
        let before = generation(&lab)?;
        let r = lab.request("PUT", "/api/v1/policy", Some(text), Some(token::OPERATOR))?;
        ensure!(
            r.status == 403 && r.body.contains(rule) && r.body.contains("globex"),
            "operator PUT ({rule}): {} {}",
            r.status,
            r.body
        );
        eprintln!("operator PUT ({rule}): 403 {}", r.body);
        ensure!(
            generation(&lab)? == before,
            "{rule}: the refused policy was applied"
        );
        expect_dropped(&lab, &format!("operator {rule}"))?;
    }
    expect_flowing(&lab, "after the refusals")?;

    // No role may make the whole Internet management (which would lift every
    // suspension at once): refused as invalid, nothing applied.
    let before = generation(&lab)?;
    let everything = edit(&base, "    - 198.18.3.253/32\n", "    - 0.0.0.0/0\n")?;
    let r = lab.request(
        "PUT",
        "/api/v1/policy",
        Some(&everything),
        Some(token::ADMIN),
    )?;
    ensure!(
        r.status == 422 && r.body.contains("0.0.0.0/0 is wider than /8"),
        "admin PUT of management 0.0.0.0/0: {} {}",
        r.status,
        r.body
    );
    ensure!(
        generation(&lab)? == before,
        "management 0.0.0.0/0 was applied"
    );
    expect_dropped(&lab, "after management 0.0.0.0/0 was refused")?;

    // Admin: applied, audited with what it exposes; the suspended address stays dropped.
    for (rule, text, owner) in &cases {
        let before = generation(&lab)?;
        let r = lab.request("PUT", "/api/v1/policy", Some(text), Some(token::ADMIN))?;
        ensure!(
            r.status == 200,
            "admin PUT ({rule}): {} {}",
            r.status,
            r.body
        );
        ensure!(generation(&lab)? == before + 1, "{rule}: not applied");
        let e = audit_entry(&lab, "policy.expose")?.context("no policy.expose audit entry")?;
        ensure!(
            e["actor"] == "lab-admin"
                && e["detail"]["generation"] == before + 1
                && e["detail"]["exposures"].to_string().contains(rule),
            "{rule}: audit entry {e}"
        );
        if *rule == "management_widened" {
            // Management prefixes are the one exception to a suspension, and the admin
            // has just made the probe's target one: its replies come back, while the
            // tenant is still suspended (everything but management is dropped).
            ensure!(tenant(&lab, "globex")?["state"] == "suspended");
            let got = probe(&lab.globex)?;
            ensure!(
                got == PROBES,
                "{rule}: management 198.18.3.0/24 applied, yet {got} of {PROBES}"
            );
            eprintln!("admin {rule}: applied and audited; globex reaches the widened management ({got} of {PROBES})");
        } else {
            let drops = suspended_drops(&lab, owner)?;
            expect_dropped(&lab, &format!("admin {rule}"))?;
            let after = suspended_drops(&lab, owner)?;
            ensure!(
                after >= drops + PROBES,
                "{rule}: {owner} counted {} suspended drops for {PROBES} echoes",
                after - drops
            );
            let t = tenant(&lab, owner)?;
            ensure!(
                t["state"] == "suspended" && t["why_suspended"].is_string(),
                "{rule}: {owner} shown as {t}"
            );
            eprintln!("admin {rule}: {owner} {}", t["why_suspended"]);
        }
        if *rule == "suspended_addresses_moved" {
            // initech owns a suspended address now: held as suspended with it.
            let got = probe(&lab.initech)?;
            ensure!(
                got == 0,
                "initech holds a suspended address, yet got {got} of {PROBES}"
            );
        }
        let r = lab.request("PUT", "/api/v1/policy", Some(&base), Some(token::ADMIN))?;
        ensure!(
            r.status == 200,
            "back to the base policy: {} {}",
            r.status,
            r.body
        );
        expect_dropped(&lab, "back to the base policy")?;
        expect_flowing(&lab, "back to the base policy")?;
    }

    // The policies above were applied over the API and are kept: back to the -c file
    // first, or a SIGHUP of a changed file is refused (see enforcement.rs).
    let before = generation(&lab)?;
    let r = lab.request(
        "PUT",
        "/api/v1/policy?from_file=true",
        None,
        Some(token::ADMIN),
    )?;
    ensure!(
        r.status == 200 && generation(&lab)? == before + 1,
        "back to the -c file: {} {}",
        r.status,
        r.body
    );
    // SIGHUP of an exposing -c file (root on the box): applied as an admin's, audited the
    // same way, and the suspended address still dropped under its new id.
    std::fs::write(&policy_path, &cases[1].1)?;
    let before = generation(&lab)?;
    // SAFETY: kill only sends a signal to the daemon this test started.
    ensure!(unsafe { libc::kill(daemon.pid() as i32, libc::SIGHUP) } == 0);
    eventually(Duration::from_secs(10), || {
        if let Some(status) = daemon.try_wait().map_err(give_up)? {
            return Err(give_up(anyhow!("the daemon exited ({status}) on SIGHUP")));
        }
        let now = generation(&lab)?;
        ensure!(now == before + 1, "generation {now}, from {before}");
        Ok(true)
    })
    .with_context(|| format!("SIGHUP did not apply:\n{}", daemon.log()))?;
    let e = audit_entry(&lab, "policy.expose")?.context("no policy.expose entry")?;
    ensure!(
        e["actor"] == "SIGHUP"
            && e["detail"]["exposures"]
                .to_string()
                .contains("suspended_tenant_renamed"),
        "SIGHUP audit entry {e}"
    );
    expect_dropped(&lab, "SIGHUP renamed")?;
    ensure!(tenant(&lab, "globex-renamed")?["state"] == "suspended");

    // Lifting it takes an admin and releases every held address.
    unsuspend(&lab, "globex", "tier2: resolved")?;
    let got = probe(&lab.globex)?;
    ensure!(got == PROBES, "unsuspended: {got} of {PROBES}");
    Ok(())
}

/// The damage done to the state database of a killed daemon.
#[derive(Clone, Copy, Debug)]
enum Damage {
    Deleted,
    Truncated,
    WalDeleted,
    StateDirRemoved,
}

impl Damage {
    fn apply(self, state_dir: &Path) -> Result<()> {
        let db = state_dir.join("warden.db");
        match self {
            Damage::Deleted => std::fs::remove_file(&db)?,
            Damage::Truncated => std::fs::File::create(&db).map(drop)?,
            Damage::WalDeleted => {
                let wal = state_dir.join("warden.db-wal");
                ensure!(wal.exists(), "no WAL after SIGKILL");
                std::fs::remove_file(&wal)?
            }
            Damage::StateDirRemoved => std::fs::remove_dir_all(state_dir)?,
        }
        Ok(())
    }

    /// What the refusal must say about the database.
    fn said(self) -> &'static str {
        match self {
            Damage::Deleted => "is missing",
            Damage::Truncated => "is empty (0 bytes)",
            Damage::WalDeleted => "older than the kernel's suspension record",
            Damage::StateDirRemoved => "is missing (so is its directory",
        }
    }
}

fn sigkill(daemon: Proc) -> Result<()> {
    ensure!(
        // SAFETY: kill only sends a signal to the daemon this test started.
        unsafe { libc::kill(daemon.pid() as i32, libc::SIGKILL) } == 0,
        "kill -9 failed"
    );
    let status = daemon.wait(Duration::from_secs(10))?;
    ensure!(!status.success(), "SIGKILLed daemon exited {status}");
    Ok(())
}

#[test]
fn a_deleted_emptied_rolled_back_or_removed_state_database_never_lifts_a_suspension_and_restore_brings_it_back(
) -> Result<()> {
    let lab = StandardLab::build("sl")?;
    let policy_path = lab.write_policy()?;
    let policy = policy_path.to_str().context("policy path")?.to_string();
    let state_dir = lab.rundir()?.join("state");
    let db = state_dir.join("warden.db");
    let warden = warden_binary()?;
    let warden_s = warden.to_str().context("warden path")?.to_string();
    let mut daemon = Some(lab.start_daemon(&warden, &policy_path, &[])?);
    suspend(&lab, "globex", "tier2: abuse report 16")?;
    expect_dropped(&lab, "suspended")?;
    expect_flowing(&lab, "suspended")?;

    for damage in [
        Damage::Deleted,
        Damage::Truncated,
        Damage::WalDeleted,
        Damage::StateDirRemoved,
    ] {
        let case = format!("{damage:?}");
        // The latest change only in the write-ahead log: lift and suspend again.
        unsuspend(&lab, "globex", &format!("tier2: {case}: lifted"))?;
        suspend(&lab, "globex", &format!("tier2: {case}: suspended again"))?;
        expect_dropped(&lab, &format!("{case}: suspended again"))?;
        sigkill(daemon.take().context("no daemon")?)?;
        damage.apply(&state_dir)?;
        expect_dropped(&lab, &format!("{case}: daemon dead, database damaged"))?;

        // The restart refuses, saying what happened and what to run.
        let p = lab.node.spawn(&[&warden_s, "run", "-c", &policy])?;
        let log_path = p.log_path().to_path_buf();
        let status = p.wait(Duration::from_secs(30))?;
        let log = std::fs::read_to_string(&log_path)?;
        ensure!(!status.success(), "{case}: the daemon started:\n{log}");
        for needle in [
            "refusing to start",
            &db.display().to_string(),
            damage.said(),
            "globex  addresses 198.18.2.10/32",
            &format!("warden state restore -c {policy}"),
        ] {
            ensure!(
                log.contains(needle),
                "{case}: refusal lacks {needle:?}:\n{log}"
            );
        }
        eprintln!("{case}: refused ({status}):\n{log}");
        expect_dropped(&lab, &format!("{case}: refused start"))?;

        // The restore (no daemon running), then a normal start.
        let out = std::process::Command::new(&warden)
            .args(["state", "restore", "-c", &policy])
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        ensure!(
            out.status.success(),
            "{case}: restore failed: {}{}",
            text,
            String::from_utf8_lossy(&out.stderr)
        );
        ensure!(
            text.contains("suspensions restored") && text.contains("globex"),
            "{case}: restore said:\n{text}"
        );
        eprintln!("{case}: restore:\n{text}");
        expect_dropped(&lab, &format!("{case}: restored, daemon not yet started"))?;
        let d = lab.start_daemon(&warden, &policy_path, &[])?;
        let g = tenant(&lab, "globex")?;
        ensure!(
            g["state"] == "suspended"
                && g["suspension"]["reason"] == format!("tier2: {case}: suspended again"),
            "{case}: after restore globex is {g}"
        );
        let audit = audit_entry(&lab, "suspensions.restore")?;
        ensure!(
            audit.is_some_and(|e| e["detail"]["in_force"].to_string().contains("globex")),
            "{case}: no suspensions.restore audit entry"
        );
        expect_dropped(&lab, &format!("{case}: daemon started after restore"))?;
        expect_flowing(&lab, &format!("{case}: daemon started after restore"))?;
        daemon = Some(d);
    }

    // As after a reboot: nothing pinned any more (no record), and the database lost. The
    // events log (kept) is what the start checks against and the restore rebuilds from.
    sigkill(daemon.take().context("no daemon")?)?;
    let out = std::process::Command::new(&warden)
        .args(["uninstall", "-c", &policy])
        .output()?;
    ensure!(
        out.status.success(),
        "uninstall: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Damage::Deleted.apply(&state_dir)?;
    let p = lab.node.spawn(&[&warden_s, "run", "-c", &policy])?;
    let log_path = p.log_path().to_path_buf();
    let status = p.wait(Duration::from_secs(30))?;
    let log = std::fs::read_to_string(&log_path)?;
    ensure!(
        !status.success()
            && log.contains("Nothing is pinned")
            && log.contains("globex  addresses 198.18.2.10/32"),
        "no pins, database lost: {status}\n{log}"
    );
    let out = std::process::Command::new(&warden)
        .args(["state", "restore", "-c", &policy])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    ensure!(
        out.status.success() && text.contains("suspension recorded again: globex"),
        "restore from the events log: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let d = lab.start_daemon(&warden, &policy_path, &["--detach-on-exit"])?;
    ensure!(
        d.log().contains("how=attached"),
        "fresh start did not attach"
    );
    ensure!(tenant(&lab, "globex")?["state"] == "suspended");
    expect_dropped(&lab, "rebuilt from the events log alone")?;
    expect_flowing(&lab, "rebuilt from the events log alone")?;
    d.stop()?;
    Ok(())
}
