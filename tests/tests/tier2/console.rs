//! The security team's console (`/ui/`) in a real browser: headless Chromium, driven
//! over WebDriver inside the lab's node namespace, against the real daemon. A real nmap
//! scan raises a flag that appears in the open queue without a reload; the operator
//! opens it, sees its evidence and frames, acknowledges it with a note, and finds the
//! entry in the audit log; a viewer sees no write buttons and a forged write from the
//! page is refused with 403. Each page is saved as a screenshot under
//! `target/console-screenshots/`. A queue of 10,000 flags is paged and filtered by the
//! server, two of them dismissed at once with one reason (two audit entries), and the
//! times the page took are printed (timings are reported, not asserted; they are
//! measured by `warden_tests::console`, as `cargo xtask bench` measures them against a
//! release daemon and judges them against their bars).

use std::{path::PathBuf, time::Duration};

use anyhow::{ensure, Context as _, Result};
use serde_json::{json, Value};
use warden_tests::{
    console,
    evidence::{flag, state_report, wait_flag},
    topology::{token, warden_binary, StandardLab, API},
    wait::eventually_every,
    webdriver::Browser,
};

/// Where ChromeDriver listens, inside the node namespace (a namespace of this run only).
pub(crate) const DRIVER_PORT: u16 = 9515;
/// How long the scan's flag may take to be raised, and then to show in the page.
const FLAG_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a page may take to show what it should.
pub(crate) const PAGE_TIMEOUT: Duration = Duration::from_secs(20);

fn screenshots() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/console-screenshots")
}

fn start(lab: &StandardLab) -> Result<warden_tests::lab::Proc> {
    let policy = format!(
        "{}defaults:
  smtp: block
  detectors:
    scan:
      action: flag
      distinct_targets: 50
      window: 30s
tenants:
  - id: acme
    addresses: [198.18.1.1/32, 2001:db8:1::1/128]
  - id: globex
    addresses: [198.18.2.10/32, 2001:db8:2:1::10/128]
  - id: initech
    addresses: [198.18.2.130/32, 2001:db8:2:2::10/128]
",
        lab.policy_header()?
    );
    let path = lab.write_policy_as("console.yaml", &policy)?;
    lab.start_daemon(&warden_binary()?, &path, &[])
}

/// A vertical scan of 100 ports of a live outside host from globex (review.rs's).
fn scan_from_globex(lab: &StandardLab) -> Result<()> {
    crate::review::scan_from(&lab.globex, 0x300)
}

fn sign_in(b: &Browser, token: &str) -> Result<()> {
    b.goto(&format!("http://{API}/"))?;
    b.type_into("#token", token)?;
    b.click("#sign-in-button")?;
    b.wait_for("#page", PAGE_TIMEOUT)?;
    Ok(())
}

pub(crate) fn shot(b: &Browser, name: &str) -> Result<()> {
    let path = screenshots().join(name);
    b.screenshot(&path)?;
    println!("screenshot {}", path.display());
    Ok(())
}

/// The page's console must be free of errors (a CSP violation, a failed script).
fn no_console_errors(b: &Browser) -> Result<()> {
    let errors: Vec<String> = b
        .console_log()?
        .into_iter()
        .filter(|l| l.starts_with("\"SEVERE\""))
        .collect();
    ensure!(errors.is_empty(), "browser console errors: {errors:#?}");
    Ok(())
}

/// The console is served with a strict policy, no cookie, and no ambient credential.
fn check_headers(lab: &StandardLab) -> Result<()> {
    let r = lab.request("GET", "/ui/", None, None)?;
    ensure!(r.status == 200, "GET /ui/: {} {}", r.status, r.body);
    let csp = r.header("content-security-policy").unwrap_or_default();
    for part in [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "frame-ancestors 'none'",
    ] {
        ensure!(csp.contains(part), "CSP {csp:?} lacks {part:?}");
    }
    ensure!(
        !csp.contains("unsafe-inline"),
        "CSP allows inline code: {csp}"
    );
    ensure!(
        r.header("x-content-type-options") == Some("nosniff"),
        "no nosniff: {}",
        r.head
    );
    ensure!(r.header("set-cookie").is_none(), "a cookie: {}", r.head);
    let who = lab.request("GET", "/api/v1/whoami", None, None)?;
    ensure!(who.status == 401, "whoami without a token: {}", who.status);
    Ok(())
}

/// Flag `id`'s audit entries of `action`.
fn audit_entries(lab: &StandardLab, action: &str, tenant: &str) -> Result<Vec<Value>> {
    let all: Vec<Value> = serde_json::from_str(
        &lab.request("GET", "/api/v1/audit?limit=1000", None, Some(token::VIEWER))?
            .body,
    )?;
    Ok(all
        .into_iter()
        .filter(|e| e["action"] == action && e["target"] == tenant)
        .collect())
}

#[test]
fn console_shows_a_scan_flag_live_and_acks_it_and_a_viewer_cannot_write() -> Result<()> {
    let lab = StandardLab::build_outside("cn")?;
    let daemon = start(&lab)?;
    check_headers(&lab)?;
    let profile = lab.rundir()?.join("chromium");
    let b = Browser::start(&lab.node, DRIVER_PORT, &profile)?;

    // Operator signs in; the queue is empty.
    b.goto(&format!("http://{API}/"))?;
    b.wait_for("#token", PAGE_TIMEOUT)?;
    ensure!(
        b.url()?.ends_with("/ui/"),
        "/ did not lead to the console: {}",
        b.url()?
    );
    shot(&b, "01-sign-in.png")?;
    sign_in(&b, token::OPERATOR)?;
    b.wait_text("#who", "lab-operator (operator)", PAGE_TIMEOUT)?;
    b.wait_for("#queue-empty", PAGE_TIMEOUT)?;
    // Marks this page load: a reload would lose it.
    b.exec("window.wardenMark = 'still-here'; return 1;", json!([]))?;

    // A real scan: the flag appears without a reload.
    scan_from_globex(&lab)?;
    let Some((f, took)) = wait_flag(&lab, "globex", "scan", FLAG_TIMEOUT)? else {
        anyhow::bail!("no scan flag for globex\n{}", state_report(&lab, &daemon));
    };
    println!("globex: scan flagged after {took:?}");
    let id = f["id"].as_i64().context("flag without id")?;
    let row = format!("tr[data-flag='{id}']");
    b.wait_text(&row, "globex", FLAG_TIMEOUT)?;
    let mark = b.exec("return window.wardenMark || null;", json!([]))?;
    ensure!(mark == "still-here", "the queue reloaded the page: {mark}");
    let text = b.text(&row)?;
    ensure!(
        text.contains("scan") && text.contains("open") && text.contains("ago"),
        "row: {text}"
    );
    b.wait_text(".count[data-state='open']", "open 1", PAGE_TIMEOUT)?;
    ensure!(
        b.count("input.pick")? == 1,
        "no selection box for the operator"
    );
    shot(&b, "02-queue-live-flag.png")?;

    // A flagged tenant's next frames are captured as the flag's samples: the rest of
    // a scan made once more.
    scan_from_globex(&lab)?;
    eventually_every(PAGE_TIMEOUT, Duration::from_millis(200), || {
        Ok(flag(&lab, id)?["samples"].as_u64() > Some(0))
    })
    .with_context(|| {
        format!(
            "no samples for flag {id}: {}",
            flag(&lab, id).unwrap_or_default()
        )
    })?;

    // The flag page: evidence and frames.
    b.click(&format!("a[href='#/flag/{id}']"))?;
    b.wait_text("#figures", "failed targets in window", PAGE_TIMEOUT)?;
    b.wait_text("#flag-state", "open", PAGE_TIMEOUT)?;
    b.wait_for("#frames tbody tr", PAGE_TIMEOUT)?;
    let frames = b.text("#frames")?;
    ensure!(
        frames.contains("198.18.2.10") && frames.contains("SYN"),
        "frames table lacks the scan's SYNs from globex: {frames}"
    );
    // Top targets in words (a host or a port, with its count), never a raw object.
    let targets = b.text("#targets")?;
    ensure!(
        (targets.contains("host 198.19.") || targets.contains("port "))
            && !targets.contains("[object"),
        "top targets table: {targets}"
    );
    let download = b.text("#pcap-download")?;
    ensure!(download.contains("frames"), "download link: {download}");
    // The chart: the scan's step is stored within a history step (10 s) of the scan,
    // and a line needs the step after it; until then the page is loaded again.
    let flag_url = format!("http://{API}/ui/#/flag/{id}");
    let sent_line = || -> Result<bool> {
        let d = b.exec(
            "const p = document.querySelector('#chart path.series.out');
             return p ? p.getAttribute('d') : null;",
            json!([]),
        )?;
        Ok(d.as_str().is_some_and(|d| d.contains('L')))
    };
    eventually_every(Duration::from_secs(40), Duration::from_secs(2), || {
        if sent_line()? {
            return Ok(true);
        }
        b.goto(&format!("http://{API}/ui/"))?;
        b.goto(&flag_url)?;
        b.wait_for("#chart, #chart-none", PAGE_TIMEOUT)?;
        sent_line()
    })
    .context("no line of sent traffic in the flag page's chart")?;
    let history: Value = serde_json::from_str(
        &lab.request(
            "GET",
            "/api/v1/tenants/globex/history",
            None,
            Some(token::VIEWER),
        )?
        .body,
    )?;
    ensure!(
        history["points"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p["out_pps"].as_f64() > Some(1.0))),
        "no step of the scan in globex's history: {history}"
    );
    b.wait_for("#frames tbody tr", PAGE_TIMEOUT)?;
    shot(&b, "03-flag-evidence-chart-frames.png")?;

    // Ack with a note: one audit entry, the note kept.
    let note = "seen in console; tenant contacted";
    b.type_into("#review-reason", note)?;
    b.click("#ack")?;
    b.wait_text("#flag-state", "acked", PAGE_TIMEOUT)?;
    let f = flag(&lab, id)?;
    ensure!(
        f["state"] == "acked" && f["state_reason"] == note,
        "flag after ack: {f}"
    );
    let acks = audit_entries(&lab, "flag.ack", "globex")?;
    ensure!(
        acks.len() == 1 && acks[0]["actor"] == "lab-operator",
        "audit entries of the ack: {acks:?}"
    );
    shot(&b, "04-flag-acked.png")?;
    b.click("#nav-audit")?;
    b.wait_text("#audit", "flag.ack", PAGE_TIMEOUT)?;
    b.wait_text("#audit", "lab-operator", PAGE_TIMEOUT)?;
    shot(&b, "05-audit-log.png")?;
    b.goto(&format!("http://{API}/ui/#/tenant/globex"))?;
    b.wait_text("#tenant-state", "active", PAGE_TIMEOUT)?;
    b.wait_text("#tenant-flags", &format!("#{id}"), PAGE_TIMEOUT)?;
    ensure!(
        b.count("#suspend")? == 0,
        "an operator sees the admin's suspend button"
    );
    shot(&b, "06-tenant.png")?;
    no_console_errors(&b)?;

    // A viewer: no write buttons, and a forged write from the page is refused.
    b.click("#sign-out")?;
    b.wait_for("#token", PAGE_TIMEOUT)?;
    sign_in(&b, token::VIEWER)?;
    b.wait_for(&row, PAGE_TIMEOUT)?;
    for css in ["input.pick", "#bulk-ack", "#bulk-dismiss"] {
        ensure!(b.count(css)? == 0, "a viewer sees {css}");
    }
    b.goto(&format!("http://{API}/ui/#/flag/{id}"))?;
    b.wait_text("#flag-state", "acked", PAGE_TIMEOUT)?;
    for css in ["#ack", "#dismiss", "#review-reason"] {
        ensure!(b.count(css)? == 0, "a viewer sees {css}");
    }
    shot(&b, "07-viewer-flag.png")?;
    no_console_errors(&b)?;
    let forged = b.exec_async(
        "const done = arguments[arguments.length - 1];
         fetch('/api/v1/flags/' + arguments[0] + '/dismiss', {method: 'POST',
           headers: {'Authorization': 'Bearer ' + sessionStorage.getItem('warden.token'),
                     'Content-Type': 'application/json'},
           body: JSON.stringify({reason: 'forged'})})
         .then(r => r.json().then(j => done([r.status, j.error])))
         .catch(e => done([0, String(e)]));",
        json!([id]),
    )?;
    ensure!(forged[0] == 403, "a viewer's forged dismiss: {forged}");
    let f = flag(&lab, id)?;
    ensure!(
        f["state"] == "acked",
        "the forged dismiss moved the flag: {f}"
    );
    drop(b);
    drop(daemon);
    Ok(())
}

/// The queue's node filter goes to the server: this daemon has no `daemon.fleet`, so its
/// flags name no node (no Node column) and a node filter keeps none; cleared, the queue
/// has as many flags as before (from its first page: a filter change starts there).
fn node_filter(b: &Browser) -> Result<()> {
    let heads = b.text("#queue thead")?;
    ensure!(
        !heads.contains("Node"),
        "a Node column without a fleet: {heads}"
    );
    let before = b.text("#page-range")?;
    let total = before.rsplit(" of ").next().unwrap_or_default().to_owned();
    console::set_filter(b, "#f-node", "node8")?;
    b.wait_text("#page-range", "0–0 of 0", PAGE_TIMEOUT)?;
    ensure!(b.count("#queue-empty")? == 1, "rows under a node filter");
    console::set_filter(b, "#f-node", "")?;
    b.wait_text("#page-range", &format!("1–50 of {total}"), PAGE_TIMEOUT)?;
    Ok(())
}

#[test]
fn a_queue_of_ten_thousand_flags_is_paged_and_filtered_by_the_server_and_bulk_dismissed(
) -> Result<()> {
    let lab = StandardLab::build("cq")?;
    let daemon = start(&lab)?;
    let db = lab.rundir()?.join("state").join(warden_store::DB_FILE);
    let seeded = console::seed_flags(&lab.node, &db, console::MANY)?;
    let profile = lab.rundir()?.join("chromium");
    let b = Browser::start(&lab.node, DRIVER_PORT, &profile)?;
    // The bench's measurement (`warden-bench console`), once, on the debug daemon.
    console::open_console(&b, lab.api())?;
    let first = console::sign_in_timed(&b, token::OPERATOR, &seeded)?;
    shot(&b, "08-queue-10000.png")?;
    let kind_change = console::change_filter_timed(&b, "#f-kind", "spam", "Kind", seeded.spam)?;
    let state_change =
        console::change_filter_timed(&b, "#f-state", "acked", "State", seeded.spam_acked)?;
    let api = console::time_api(&lab.node, lab.api(), token::VIEWER, &seeded, 5)?;
    b.click("#page-next")?;
    b.wait_text(
        "#page-range",
        &format!("51–100 of {}", seeded.spam_acked),
        PAGE_TIMEOUT,
    )?;
    shot(&b, "09-queue-filtered.png")?;

    // Two selected, dismissed with one reason: two requests, two audit entries.
    let picked: Vec<String> = b
        .exec(
            "const boxes = [...document.querySelectorAll('input.pick')].slice(0, 2);
             boxes.forEach((c) => c.click());
             return boxes.map((c) => c.value);",
            json!([]),
        )?
        .as_array()
        .context("picked ids")?
        .iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    ensure!(picked.len() == 2, "picked {picked:?}");
    b.type_into("#bulk-reason", "duplicate reports")?;
    b.click("#bulk-dismiss")?;
    b.wait_text("#notice", "Dismissed 2 of 2.", PAGE_TIMEOUT)?;
    b.wait_text(
        ".count[data-state='dismissed']",
        "dismissed 2",
        PAGE_TIMEOUT,
    )?;
    for id in &picked {
        let f = flag(&lab, id.parse()?)?;
        ensure!(
            f["state"] == "dismissed" && f["state_reason"] == "duplicate reports",
            "flag {id} after the bulk dismiss: {f}"
        );
    }
    let dismissals: usize = ["acme", "globex", "initech"]
        .iter()
        .map(|t| audit_entries(&lab, "flag.dismiss", t).map(|e| e.len()))
        .sum::<Result<usize>>()?;
    ensure!(
        dismissals == 2,
        "{dismissals} audit entries for 2 dismissals"
    );
    shot(&b, "10-queue-bulk-dismissed.png")?;
    node_filter(&b)?;
    no_console_errors(&b)?;
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "queue of {} flags in the browser: first page {:.0} ms from the sign-in click \
         (fetch and render {:.0} ms); kind filter change {kind_change:.0} ms; state filter \
         change {state_change:.0} ms; the server alone, median of 5: GET {} {:.1} ms, GET {} \
         {:.1} ms (debug daemon: `warden-bench console` times a release one)",
        seeded.total,
        first.ms,
        first.fetch_render_ms,
        console::FLAGS_PAGE,
        median(&api.flags_page_ms),
        console::SUMMARY,
        median(&api.summary_ms),
    );
    drop(b);
    drop(daemon);
    Ok(())
}
