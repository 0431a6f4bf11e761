//! `warden policy show`, `warden policy diff` and `warden policy apply --from-file`:
//! the running policy as the daemon serves it (`GET /api/v1/policy`), compared with a
//! file, and the way back from an API-applied policy to the daemon's own file.

use std::path::Path;

use anyhow::{Context as _, Result};
use warden_policy::diff::{diff, Change};

use super::error::{EXIT_DIFFERS, EXIT_ERROR, EXIT_OK};
use super::{ops, Client};
use crate::views::PolicyView;

/// The running policy, as applied or (`effective`) with `defaults` merged in.
fn running(client: &Client, effective: bool) -> Result<(serde_json::Value, PolicyView)> {
    let path = if effective {
        "/api/v1/policy?effective=true"
    } else {
        "/api/v1/policy"
    };
    let v = client.get(path)?;
    let view = serde_json::from_value(v.clone()).context("unexpected policy document")?;
    Ok((v, view))
}

/// `warden policy show [--effective] [--json]`: YAML that `warden policy apply` takes
/// back (with a comment line saying what it is), or the whole JSON document.
pub fn policy_show(client: &Client, effective: bool, json: bool) -> Result<()> {
    let (v, view) = running(client, effective)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let form = if view.effective {
        "effective: every tenant with defaults merged in"
    } else {
        "as applied"
    };
    println!(
        "# policy generation {} ({}), {form}",
        view.policy_generation, view.source
    );
    print!("{}", view.text);
    Ok(())
}

/// `warden policy diff FILE|-`: validates FILE as `policy check` does, then prints how
/// it differs from the running policy. The exit code: 1 when FILE is invalid; else 0,
/// or with `exit_code` [`EXIT_DIFFERS`] when they differ.
pub fn policy_diff(client: &Client, file: &Path, exit_code: bool) -> Result<u8> {
    let Ok((name, new)) = ops::checked(file)? else {
        return Ok(EXIT_ERROR);
    };
    let (_, view) = running(client, false)?;
    let label = format!("running policy (generation {})", view.policy_generation);
    let old = warden_policy::parse(&view.text, &label)
        .map_err(|d| anyhow::anyhow!("the daemon's policy does not parse here:\n{d}"))?;
    let changes = diff(&old, &new);
    print!("{}", diff_text(&name, &view, &changes));
    Ok(if exit_code && !changes.is_empty() {
        eprintln!(
            "policy diff: {name} differs from the running policy ({} change{})",
            changes.len(),
            if changes.len() == 1 { "" } else { "s" }
        );
        EXIT_DIFFERS
    } else {
        EXIT_OK
    })
}

/// What `policy diff` prints: a line naming both sides, then one line per change.
pub fn diff_text(name: &str, view: &PolicyView, changes: &[Change]) -> String {
    let running = format!(
        "the running policy (generation {}, {})",
        view.policy_generation, view.source
    );
    if changes.is_empty() {
        return format!("{name}: no changes from {running}\n");
    }
    let mut out = format!("{name}: {} change(s) from {running}\n", changes.len());
    for c in changes {
        out.push_str(&c.to_string());
        out.push('\n');
    }
    out
}

/// `warden policy apply --from-file`: the daemon drops the policy applied over the API
/// and applies its own `-c` file again.
pub fn policy_apply_from_file(client: &Client) -> Result<()> {
    let v = client.put("/api/v1/policy?from_file=true", Vec::new(), &[])?;
    println!(
        "the daemon's policy file is in force again: policy generation {}",
        v["policy_generation"]
    );
    Ok(())
}
