//! The console's review queue with many flags, measured the same way by the Tier 2
//! browser test (`tests/tier2/console.rs`, which prints the figures) and by the bench
//! (`warden-bench`, which judges them against their bars): flags written straight into a
//! running daemon's database, the queue's first page timed from the sign-in click to
//! the frame that shows its rows, a filter change timed from the change to the frame
//! that shows the new rows, and the two API routes the page calls timed alone, so a
//! reader can tell the browser's share from the server's.
//!
//! Every timed step is checked: the first page shows rows 1-50 of every flag and the
//! counts per state, a filter change shows the number of flags that match and only
//! them; a figure of a page that showed something else is never returned.

use std::{
    net::SocketAddr,
    path::Path,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{bail, ensure, Context as _, Result};
use serde_json::{json, Value};

use crate::{http, lab::Netns, webdriver::Browser};

/// Flags the queue cases write (issue 21: "with 10,000 flags in the store").
pub const MANY: u32 = 10_000;
/// Rows of the queue's first page (the console's default page size).
pub const PAGE: u32 = 50;
/// How long one timed step may take before the page is given up on (below WebDriver's
/// script timeout of 30 s, so the page's own report of what it shows comes back).
const STEP_LIMIT_MS: u32 = 20_000;
/// How long the seeding may take.
const SEED_TIMEOUT: Duration = Duration::from_secs(120);

/// What [`seed_flags`] wrote: how many flags each filter of the cases must find.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seeded {
    pub total: u32,
    /// Of kind `spam`.
    pub spam: u32,
    /// In state `acked` (the rest are `open`).
    pub acked: u32,
    /// Both.
    pub spam_acked: u32,
}

impl Seeded {
    /// Flag `i` (1-based, in insertion order) is of kind `spam` when `i % 4 == 2` and
    /// acked when `i % 10 == 0`: the same rule as [`seed_flags`]'s SQL.
    pub fn of(total: u32) -> Seeded {
        let spam = |i: &u32| i % 4 == 2;
        let acked = |i: &u32| i.is_multiple_of(10);
        Seeded {
            total,
            spam: (1..=total).filter(spam).count() as u32,
            acked: (1..=total).filter(acked).count() as u32,
            spam_acked: (1..=total).filter(|i| spam(i) && acked(i)).count() as u32,
        }
    }
}

/// Writes `total` flags into the running daemon's database `db` in one transaction,
/// with `sqlite3` run in `node` (the daemon's namespace): tenants acme, globex and
/// initech in turn, kinds scan, flood_out, spam and proxy in turn, every 10th acked,
/// the rest open, one a second up to now (newest last).
pub fn seed_flags(node: &Netns, db: &Path, total: u32) -> Result<Seeded> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("the clock is before 1970")?
        .as_secs();
    let sql = format!(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {total})
         INSERT INTO flags (tenant, kind, state, first_seen, last_seen, policy_generation,
                            thresholds, figures, top_targets)
         SELECT CASE i % 3 WHEN 0 THEN 'acme' WHEN 1 THEN 'globex' ELSE 'initech' END,
                CASE i % 4 WHEN 0 THEN 'scan' WHEN 1 THEN 'flood_out' WHEN 2 THEN 'spam'
                           ELSE 'proxy' END,
                CASE WHEN i % 10 = 0 THEN 'acked' ELSE 'open' END,
                {now} - {total} + i, {now} - {total} + i, 1, '{{}}', '{{}}', '[]' FROM n;"
    );
    let db = db.to_str().context("database path is not UTF-8")?;
    node.exec_timeout(
        &["sqlite3", "-cmd", ".timeout 10000", db, &sql],
        SEED_TIMEOUT,
    )
    .with_context(|| format!("writing {total} flags into {db}"))?;
    Ok(Seeded::of(total))
}

/// The console at `http://{api}/ui/`, freshly loaded with no session: the sign-in form.
pub fn open_console(b: &Browser, api: SocketAddr) -> Result<()> {
    let url = format!("http://{api}/ui/");
    b.goto(&url)?;
    // The token lives in the tab's sessionStorage: forgotten, so the next load asks.
    b.exec("sessionStorage.clear(); return 1;", json!([]))?;
    b.goto("about:blank")?;
    b.goto(&url)?;
    b.wait_for("#token", Duration::from_secs(20))?;
    Ok(())
}

/// The first page of the queue, as the browser showed it.
#[derive(Clone, Copy, Debug)]
pub struct FirstPage {
    /// Sign-in click to the frame that shows the first page's rows, ms.
    pub ms: f64,
    /// The page's own account of its two API calls and the render (its
    /// `data-render-ms`), ms: part of [`FirstPage::ms`].
    pub fetch_render_ms: f64,
}

/// In the page: clicks sign-in and waits for the queue's first load; the ms from the
/// click to the frame after it, the page's own fetch-and-render ms, or what the page
/// shows when it never loaded.
const SIGN_IN_AND_TIME: &str = "
    const [limit, done] = arguments;
    const t0 = performance.now();
    document.getElementById('sign-in-button').click();
    (function wait() {
      const body = document.getElementById('queue-body');
      if (body && Number(body.dataset.loads) >= 1) {
        requestAnimationFrame(() => setTimeout(() =>
          done([performance.now() - t0, Number(body.dataset.renderMs), null]), 0));
      } else if (performance.now() - t0 > limit) {
        done([null, null, document.body.innerText.slice(0, 2000)]);
      } else {
        setTimeout(wait, 1);
      }
    })();";

/// In the page: sets the select `css` to `value` and waits for the queue to load
/// again; the ms from the change to the frame after the new rows, or what the page
/// shows when it never loaded.
const CHANGE_AND_TIME: &str = "
    const [css, value, limit, done] = arguments;
    const body = document.getElementById('queue-body');
    const loads = Number(body.dataset.loads);
    const t0 = performance.now();
    const select = document.querySelector(css);
    select.value = value;
    select.dispatchEvent(new Event('change'));
    (function wait() {
      if (Number(body.dataset.loads) > loads) {
        requestAnimationFrame(() => setTimeout(() =>
          done([performance.now() - t0, null]), 0));
      } else if (performance.now() - t0 > limit) {
        done([null, document.body.innerText.slice(0, 2000)]);
      } else {
        setTimeout(wait, 1);
      }
    })();";

/// The distinct texts of the queue's column headed `head`, or null without a queue.
const COLUMN: &str = "
    const t = document.getElementById('queue');
    if (!t) return null;
    const i = [...t.querySelectorAll('thead th')].findIndex(
      (th) => th.textContent.trim() === arguments[0]);
    if (i < 0) return null;
    return [...new Set([...t.querySelectorAll('tbody tr')].map(
      (r) => r.cells[i].textContent.trim()))];";

/// A figure in ms from a timing script's reply, or its account of the page.
fn figure(reply: &Value, what: &str) -> Result<f64> {
    match reply[0].as_f64() {
        Some(ms) => Ok(ms),
        None => bail!(
            "{what}: the queue did not load within {STEP_LIMIT_MS} ms; the page shows:\n{}",
            reply.as_array().and_then(|a| a.last()).unwrap_or(reply)
        ),
    }
}

/// Types `token` into the open sign-in form and times the sign-in click to the first
/// page of the queue, then checks that page: rows 1-50 of every flag, 50 rows, and the
/// counts per state.
pub fn sign_in_timed(b: &Browser, token: &str, seeded: &Seeded) -> Result<FirstPage> {
    b.type_into("#token", token)?;
    let reply = b.exec_async(SIGN_IN_AND_TIME, json!([STEP_LIMIT_MS]))?;
    let ms = figure(&reply, "signing in")?;
    let fetch_render_ms = reply[1]
        .as_f64()
        .with_context(|| format!("no fetch-and-render time in the page: {reply}"))?;
    expect_range(b, seeded.total)?;
    let rows = b.count("#queue tbody tr")?;
    ensure!(
        rows == PAGE.min(seeded.total) as usize,
        "the first page has {rows} rows, not {PAGE}"
    );
    for (state, n) in [
        ("acked", seeded.acked),
        ("open", seeded.total - seeded.acked),
    ] {
        let text = b.text(&format!(".count[data-state='{state}']"))?;
        let words: Vec<&str> = text.split_whitespace().collect();
        ensure!(
            words == [state, n.to_string().as_str()],
            "the count of {state} flags shows {text:?}, not {n}"
        );
    }
    Ok(FirstPage {
        ms,
        fetch_render_ms,
    })
}

/// Times setting the queue's filter select `css` (`#f-kind`, `#f-state`) to `value`,
/// then checks that the page shows rows 1-50 of `matching` flags, each with `value`
/// in its column `column`.
pub fn change_filter_timed(
    b: &Browser,
    css: &str,
    value: &str,
    column: &str,
    matching: u32,
) -> Result<f64> {
    let ms = set_filter(b, css, value)?;
    expect_range(b, matching)?;
    let shown = b.exec(COLUMN, json!([column]))?;
    ensure!(
        shown == json!([value]),
        "after setting {css} to {value}, the queue's {column} column shows {shown}"
    );
    Ok(ms)
}

/// Sets the queue's filter `css` (a select or an input) to `value` and waits for the
/// queue to load again; the ms from the change to the new rows.
pub fn set_filter(b: &Browser, css: &str, value: &str) -> Result<f64> {
    let reply = b.exec_async(CHANGE_AND_TIME, json!([css, value, STEP_LIMIT_MS]))?;
    figure(&reply, &format!("setting {css} to {value}"))
}

/// The pager says rows 1-50 (or fewer) of `total`.
fn expect_range(b: &Browser, total: u32) -> Result<()> {
    let want = format!("1–{} of {total}", PAGE.min(total));
    let shown = b.text("#page-range")?;
    ensure!(shown == want, "the pager shows {shown:?}, not {want:?}");
    Ok(())
}

/// One run of the browser case: a fresh load of the console, the sign-in timed to
/// the first page, then the kind filter set to `spam` and the state filter to `acked`,
/// each timed.
#[derive(Clone, Copy, Debug)]
pub struct QueueRun {
    pub first_page: FirstPage,
    pub kind_change_ms: f64,
    pub state_change_ms: f64,
}

/// [`open_console`], [`sign_in_timed`] and the two filter changes.
pub fn queue_run(b: &Browser, api: SocketAddr, token: &str, seeded: &Seeded) -> Result<QueueRun> {
    open_console(b, api)?;
    let first_page = sign_in_timed(b, token, seeded)?;
    let kind_change_ms = change_filter_timed(b, "#f-kind", "spam", "Kind", seeded.spam)?;
    let state_change_ms = change_filter_timed(b, "#f-state", "acked", "State", seeded.spam_acked)?;
    Ok(QueueRun {
        first_page,
        kind_change_ms,
        state_change_ms,
    })
}

/// The API routes the queue's page calls, timed alone: ms per request, each on a fresh
/// connection from the daemon's namespace (connect, request, whole reply).
#[derive(Clone, Debug, Default)]
pub struct ApiRuns {
    /// `GET /api/v1/flags?limit=50`.
    pub flags_page_ms: Vec<f64>,
    /// `GET /api/v1/flags/summary`.
    pub summary_ms: Vec<f64>,
}

/// The first page's route.
pub const FLAGS_PAGE: &str = "/api/v1/flags?limit=50";
/// The counts' route.
pub const SUMMARY: &str = "/api/v1/flags/summary";

/// Times [`FLAGS_PAGE`] and [`SUMMARY`] `runs` times each (in turn) against the
/// daemon at `api` in namespace `ns`, checking every reply: 50 flags, and a summary of
/// `seeded.total`.
pub fn time_api(
    ns: &Netns,
    api: SocketAddr,
    token: &str,
    seeded: &Seeded,
    runs: usize,
) -> Result<ApiRuns> {
    let token = token.to_owned();
    let total = u64::from(seeded.total);
    let page = u64::from(PAGE.min(seeded.total));
    http::in_netns(ns.name(), move || {
        let mut out = ApiRuns::default();
        for _ in 0..runs {
            let (ms, v) = timed_get(api, FLAGS_PAGE, &token)?;
            let n = v.as_array().map(Vec::len).unwrap_or_default();
            ensure!(n as u64 == page, "{FLAGS_PAGE} gave {n} flags, not {page}");
            out.flags_page_ms.push(ms);
            let (ms, v) = timed_get(api, SUMMARY, &token)?;
            ensure!(
                v["total"].as_u64() == Some(total),
                "{SUMMARY} counts {} flags, not {total}",
                v["total"]
            );
            out.summary_ms.push(ms);
        }
        Ok(out)
    })
}

fn timed_get(api: SocketAddr, path: &str, token: &str) -> Result<(f64, Value)> {
    let t = Instant::now();
    let r = http::request(api, "GET", path, None, Some(token))?;
    let ms = t.elapsed().as_secs_f64() * 1e3;
    ensure!(r.status == 200, "GET {path}: {} {}", r.status, r.body);
    let v = serde_json::from_str(&r.body).with_context(|| format!("GET {path}: not JSON"))?;
    Ok((ms, v))
}

#[cfg(test)]
mod tests {
    use super::Seeded;

    #[test]
    fn the_seeded_counts_follow_the_rule_of_the_sql() {
        assert_eq!(
            Seeded::of(10_000),
            Seeded {
                total: 10_000,
                spam: 2_500,
                acked: 1_000,
                spam_acked: 500,
            }
        );
        assert_eq!(
            Seeded::of(21),
            Seeded {
                total: 21,
                spam: 5,
                acked: 2,
                spam_acked: 1,
            }
        );
    }
}
