//! The security team's console (`/ui/`) in a real browser: headless Chromium, driven
//! over WebDriver inside the lab's node namespace, against the real daemon. A real nmap
//! scan raises a flag that appears in the open queue without a reload; the operator
//! opens it, sees its evidence and frames, acknowledges it with a note, and finds the
//! entry in the audit log; a viewer sees no write buttons and a forged write from the
//! page is refused with 403. Each page is saved as a screenshot under
//! `target/console-screenshots/`. A queue of 10,000 flags is paged and filtered by the
//! server, two of them dismissed at once with one reason (two audit entries), and the
//! times the page took are printed (timings are reported, not asserted).

use std::{path::PathBuf, time::Duration};

use anyhow::{ensure, Context as _, Result};
use serde_json::{json, Value};
use warden_tests::{
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

/// Flags the queue test writes: every 4th a `spam`, every 10th acked, the rest open.
const MANY: u32 = 10_000;

/// Writes [`MANY`] flags into the running daemon's database in one transaction.
fn seed_many(lab: &StandardLab) -> Result<()> {
    let db = lab.rundir()?.join("state").join(warden_store::DB_FILE);
    let now = warden_policy::time::system_clock();
    let sql = format!(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {MANY})
         INSERT INTO flags (tenant, kind, state, first_seen, last_seen, policy_generation,
                            thresholds, figures, top_targets)
         SELECT CASE i % 3 WHEN 0 THEN 'acme' WHEN 1 THEN 'globex' ELSE 'initech' END,
                CASE i % 4 WHEN 0 THEN 'scan' WHEN 1 THEN 'flood_out' WHEN 2 THEN 'spam'
                           ELSE 'proxy' END,
                CASE WHEN i % 10 = 0 THEN 'acked' ELSE 'open' END,
                {now} - {MANY} + i, {now} - {MANY} + i, 1, '{{}}', '{{}}', '[]' FROM n;"
    );
    let db = db.to_str().context("database path is not UTF-8")?;
    lab.node.exec_timeout(
        &["sqlite3", "-cmd", ".timeout 10000", db, &sql],
        Duration::from_secs(120),
    )?;
    Ok(())
}

/// In the page: changes the select or input `css` to `value` and waits for the queue to load
/// again; the milliseconds from the change to the new rows in the page.
pub(crate) const CHANGE_AND_TIME: &str = "
    const [css, value, done] = arguments;
    const body = document.getElementById('queue-body');
    const loads = Number(body.dataset.loads);
    const t0 = performance.now();
    const select = document.querySelector(css);
    select.value = value;
    select.dispatchEvent(new Event('change'));
    (function wait() {
      if (Number(body.dataset.loads) > loads) {
        requestAnimationFrame(() => done(performance.now() - t0));
      } else {
        setTimeout(wait, 1);
      }
    })();";

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
    b.exec_async(CHANGE_AND_TIME, json!(["#f-node", "node8"]))?;
    b.wait_text("#page-range", "0–0 of 0", PAGE_TIMEOUT)?;
    ensure!(b.count("#queue-empty")? == 1, "rows under a node filter");
    b.exec_async(CHANGE_AND_TIME, json!(["#f-node", ""]))?;
    b.wait_text("#page-range", &format!("1–50 of {total}"), PAGE_TIMEOUT)?;
    Ok(())
}

#[test]
fn a_queue_of_ten_thousand_flags_is_paged_and_filtered_by_the_server_and_bulk_dismissed(
) -> Result<()> {
    let lab = StandardLab::build("cq")?;
    let daemon = start(&lab)?;
    seed_many(&lab)?;
    let profile = lab.rundir()?.join("chromium");
    let b = Browser::start(&lab.node, DRIVER_PORT, &profile)?;
    b.goto(&format!("http://{API}/ui/"))?;
    b.type_into("#token", token::OPERATOR)?;
    b.exec("window.wardenT0 = performance.now(); return 1;", json!([]))?;
    b.click("#sign-in-button")?;
    b.wait_text("#page-range", &format!("1–50 of {MANY}"), PAGE_TIMEOUT)?;
    // An upper bound: it includes WebDriver's polling.
    let first = b.exec("return performance.now() - window.wardenT0;", json!([]))?;
    let fetch_render = b.exec(
        "return Number(document.getElementById('queue-body').dataset.renderMs);",
        json!([]),
    )?;
    ensure!(b.count("#queue tbody tr")? == 50, "a first page of 50 rows");
    b.wait_text(
        ".count[data-state='acked']",
        &format!("acked {}", MANY / 10),
        PAGE_TIMEOUT,
    )?;
    b.wait_text(
        ".count[data-state='open']",
        &format!("open {}", MANY - MANY / 10),
        PAGE_TIMEOUT,
    )?;
    shot(&b, "08-queue-10000.png")?;

    let kind_change = b.exec_async(CHANGE_AND_TIME, json!(["#f-kind", "spam"]))?;
    b.wait_text(
        "#page-range",
        &format!("1–50 of {}", MANY / 4),
        PAGE_TIMEOUT,
    )?;
    let rows = b.text("#queue")?;
    ensure!(
        !rows.contains("flood_out") && !rows.contains("proxy"),
        "the kind filter let other kinds through: {rows}"
    );
    let state_change = b.exec_async(CHANGE_AND_TIME, json!(["#f-state", "acked"]))?;
    // Every 4th and every 10th: every 20th.
    b.wait_text(
        "#page-range",
        &format!("1–50 of {}", MANY / 20),
        PAGE_TIMEOUT,
    )?;
    b.click("#page-next")?;
    b.wait_text(
        "#page-range",
        &format!("51–100 of {}", MANY / 20),
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
    println!(
        "queue of {MANY} flags in the browser: first page {first} ms from sign-in (fetch and \
         render {fetch_render} ms); kind filter change {kind_change} ms; state filter change \
         {state_change} ms"
    );
    drop(b);
    drop(daemon);
    Ok(())
}
