//! Policy input on a running daemon: invalid UTF-8 reported at its line by `policy check`
//! and `policy apply` (CLI to API), errors bounded to 100 with a count of the rest, a key
//! holding a newline unable to forge an error line (API and SIGHUP), a file past the
//! size limit refused unread; none of it moving the policy generation.

use std::time::Duration;

use anyhow::{ensure, Context as _, Result};
use serde_json::Value;
use warden_tests::topology::{token, warden_binary, StandardLab};

/// The key of a policy line that tries to forge a second error line.
const FORGED: &str = "\"a\\nx.yaml:1:1: forged\": 1\n";

fn generation(lab: &StandardLab) -> Result<u64> {
    let v: Value = serde_json::from_str(&lab.get("/api/v1/status")?)?;
    v["policy_generation"].as_u64().context("no generation")
}

/// `PUT /api/v1/policy` of `text`: the status and the `errors` list.
fn put(lab: &StandardLab, text: &str) -> Result<(u16, Value)> {
    let r = lab.request("PUT", "/api/v1/policy", Some(text), Some(token::OPERATOR))?;
    Ok((r.status, serde_json::from_str(&r.body)?))
}

#[test]
fn policy_input_is_bounded_escaped_and_placed_for_check_apply_and_reload() -> Result<()> {
    let lab = StandardLab::build("wp")?;
    let warden = warden_binary()?;
    let w = warden.to_str().context("utf-8")?;
    let policy_path = lab.write_policy()?;
    let mut daemon = lab.start_daemon(&warden, &policy_path, &["--detach-on-exit"])?;
    ensure!(generation(&lab)? == 1);
    let good = lab.policy_text()?;

    // A byte that is not UTF-8 in line 7, column 3.
    let mut bytes = good.clone().into_bytes();
    let line7 = bytes
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .nth(5)
        .context("a 7th line")?
        .0
        + 1;
    bytes.insert(line7 + 2, 0xff);
    let bad = lab.lab.tempdir().join("latin1.yaml");
    std::fs::write(&bad, &bytes)?;
    let bad_s = bad.to_str().context("utf-8")?;
    let expected = format!("{bad_s}:7:3: invalid UTF-8 (0xff); a policy file must be UTF-8 text");
    let out = lab
        .node
        .exec_unchecked(&[w, "policy", "check", bad_s], Duration::from_secs(30))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.code() == Some(1) && stderr.lines().next() == Some(expected.as_str()),
        "policy check: {:?}\n{stderr}",
        out.status
    );
    let out = lab.node.exec_unchecked(
        &[w, "--token", token::OPERATOR, "policy", "apply", bad_s],
        Duration::from_secs(30),
    )?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.code() == Some(1)
            && stderr.contains("422")
            && stderr.lines().any(|l| l == expected),
        "policy apply: {:?}\n{stderr}",
        out.status
    );

    // A key with a newline: one error, on one line, the newline escaped.
    let (status, v) = put(&lab, &format!("{good}{FORGED}"))?;
    let errors = v["errors"].as_array().context("errors")?;
    ensure!(status == 422 && errors.len() == 1, "{status} {v}");
    let e = errors[0].as_str().context("an error string")?;
    ensure!(
        !e.contains('\n') && e.contains("unknown key `a\\nx.yaml:1:1: forged`"),
        "{e:?}"
    );

    // 1,000 errors: the first 100, then how many more.
    let many: String = (0..1_000).map(|i| format!("unknown_{i}: 1\n")).collect();
    let (status, v) = put(&lab, &format!("{good}{many}"))?;
    let errors = v["errors"].as_array().context("errors")?;
    ensure!(
        status == 422
            && v["error"] == "invalid policy: 1000 error(s)"
            && errors.len() == 101
            && errors[100]
                == "<request>: 900 more errors not shown (only the first 100 are reported)",
        "{status} {} errors, error {}, last {}",
        errors.len(),
        v["error"],
        errors.last().unwrap_or(&Value::Null)
    );

    // SIGHUP of a file with the forged key: rejected, the key escaped in the log.
    std::fs::write(&policy_path, format!("{good}{FORGED}"))?;
    // SAFETY: signals the daemon we started.
    ensure!(unsafe { libc::kill(daemon.pid() as i32, libc::SIGHUP) } == 0);
    daemon.wait_log("policy reload rejected", Duration::from_secs(10))?;
    let log = daemon.log();
    ensure!(
        log.contains("unknown key `a\\nx.yaml:1:1: forged`")
            && !log.lines().any(|l| l.starts_with("x.yaml:1:1: forged")),
        "log:\n{log}"
    );

    // A file past 64 MiB is refused by the CLI unread (sparse: nothing is written).
    let big = lab.lab.tempdir().join("big.yaml");
    std::fs::File::create(&big)?.set_len(65 << 20)?;
    let big_s = big.to_str().context("utf-8")?;
    for args in [
        vec![w, "policy", "check", big_s],
        vec![w, "--token", token::OPERATOR, "policy", "apply", big_s],
    ] {
        let out = lab.node.exec_unchecked(&args, Duration::from_secs(30))?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure!(
            out.status.code() == Some(1)
                && stderr.contains(
                    "the policy is 68157440 bytes; at most 67108864 (64 MiB) are accepted"
                ),
            "{args:?}: {:?}\n{stderr}",
            out.status
        );
    }
    ensure!(
        generation(&lab)? == 1,
        "a refused policy moved the generation"
    );
    Ok(())
}
