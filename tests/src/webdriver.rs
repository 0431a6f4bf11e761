//! A small W3C WebDriver client for the console tests: ChromeDriver and headless
//! Chromium run inside a lab namespace (so the browser reaches the daemon's API on the
//! namespace's loopback), and every WebDriver call goes over [`crate::http`] from a
//! thread that joined the namespace. The session is deleted and the driver's process
//! group killed on drop, also when a test fails.

use std::{
    net::SocketAddr,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use base64::Engine as _;
use serde_json::{json, Value};

use crate::{
    http::{request_in_netns, request_in_netns_within},
    lab::{Netns, Proc},
    wait::eventually,
};

/// The key of an element reference in WebDriver's JSON.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// How long the driver may take to start and a page to load.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// How long one WebDriver call may take (a session start launches Chromium).
const CALL_TIMEOUT: Duration = Duration::from_secs(90);

/// The browser ChromeDriver starts (Debian's `chromium`).
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// The driver, looked up on `PATH` (Debian's `chromium-driver`).
pub const CHROMEDRIVER: &str = "chromedriver";

/// Fails, naming `cargo xtask setup`, unless Chromium and ChromeDriver are installed.
pub fn check_installed() -> Result<()> {
    let on_path = std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| dir.join(CHROMEDRIVER).is_file())
    });
    let missing: Vec<&str> = [
        (Path::new(CHROMIUM).is_file(), CHROMIUM),
        (on_path, "chromedriver on PATH"),
    ]
    .into_iter()
    .filter_map(|(found, what)| (!found).then_some(what))
    .collect();
    if !missing.is_empty() {
        bail!(
            "headless Chromium is not installed (no {}): run `cargo xtask setup`, which \
             installs Debian's chromium and chromium-driver",
            missing.join(", no ")
        );
    }
    Ok(())
}

/// Headless Chromium in namespace `ns`, driven through ChromeDriver.
pub struct Browser {
    ns: String,
    driver: SocketAddr,
    session: String,
    _process: Proc,
}

impl Browser {
    /// Starts ChromeDriver on 127.0.0.1:`port` in `ns` and opens a session of headless
    /// Chromium (as root it needs `--no-sandbox`) with its profile under `profile`.
    pub fn start(ns: &Netns, port: u16, profile: &Path) -> Result<Browser> {
        check_installed()?;
        let process = ns.spawn(&[
            CHROMEDRIVER,
            &format!("--port={port}"),
            "--allowed-ips=127.0.0.1",
        ])?;
        let driver: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let ready = eventually(START_TIMEOUT, || {
            let r = request_in_netns(ns.name(), driver, "GET", "/status", None, None)?;
            Ok(serde_json::from_str::<Value>(&r.body)?["value"]["ready"] == true)
        });
        if let Err(e) = ready {
            bail!("chromedriver did not start: {e:#}\n{}", process.log());
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-dev-shm-usage", "--no-first-run", "--window-size=1280,2400",
                    "--disable-crash-reporter", "--disable-breakpad",
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
            "goog:loggingPrefs": {"browser": "ALL"},
        }}});
        let r = call(ns.name(), driver, "POST", "/session", Some(&caps))
            .with_context(|| format!("opening a Chromium session\n{}", process.log()))?;
        let session = r["sessionId"]
            .as_str()
            .with_context(|| format!("no session id in {r}"))?
            .to_owned();
        Ok(Browser {
            ns: ns.name().to_owned(),
            driver,
            session,
            _process: process,
        })
    }

    fn cmd(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
        let path = format!("/session/{}{path}", self.session);
        call(&self.ns, self.driver, method, &path, body)
    }

    /// Loads `url` and waits for it.
    pub fn goto(&self, url: &str) -> Result<()> {
        self.cmd("POST", "/url", Some(&json!({ "url": url })))
            .map(drop)
            .with_context(|| format!("loading {url}"))
    }

    /// Runs `script` (a function body; `arguments` are `args`) in the page: its result.
    pub fn exec(&self, script: &str, args: Value) -> Result<Value> {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(&json!({ "script": script, "args": args })),
        )
    }

    /// Runs `script` as an async function body whose last argument is the callback to
    /// call with the result.
    pub fn exec_async(&self, script: &str, args: Value) -> Result<Value> {
        self.cmd(
            "POST",
            "/execute/async",
            Some(&json!({ "script": script, "args": args })),
        )
    }

    /// The element `css` selects, if there is one now.
    pub fn find(&self, css: &str) -> Result<Option<String>> {
        let r = self.cmd(
            "POST",
            "/elements",
            Some(&json!({"using": "css selector", "value": css})),
        )?;
        Ok(r.as_array()
            .and_then(|a| a.first())
            .and_then(|e| e[ELEMENT].as_str())
            .map(str::to_owned))
    }

    /// How many elements `css` selects now.
    pub fn count(&self, css: &str) -> Result<usize> {
        let r = self.cmd(
            "POST",
            "/elements",
            Some(&json!({"using": "css selector", "value": css})),
        )?;
        Ok(r.as_array().map_or(0, Vec::len))
    }

    /// The element `css` selects, waited for up to `timeout`.
    pub fn wait_for(&self, css: &str, timeout: Duration) -> Result<String> {
        eventually(timeout, || self.find(css))
            .with_context(|| format!("no element {css:?} within {timeout:?}\n{}", self.report()))
    }

    /// Clicks the element `css` selects (waited for).
    pub fn click(&self, css: &str) -> Result<()> {
        let id = self.wait_for(css, START_TIMEOUT)?;
        self.cmd("POST", &format!("/element/{id}/click"), Some(&json!({})))
            .map(drop)
            .with_context(|| format!("clicking {css:?}"))
    }

    /// Types `text` into the element `css` selects (waited for).
    pub fn type_into(&self, css: &str, text: &str) -> Result<()> {
        let id = self.wait_for(css, START_TIMEOUT)?;
        self.cmd(
            "POST",
            &format!("/element/{id}/value"),
            Some(&json!({ "text": text })),
        )
        .map(drop)
        .with_context(|| format!("typing into {css:?}"))
    }

    /// The rendered text of the element `css` selects (waited for).
    pub fn text(&self, css: &str) -> Result<String> {
        let id = self.wait_for(css, START_TIMEOUT)?;
        let v = self.cmd("GET", &format!("/element/{id}/text"), None)?;
        Ok(v.as_str().unwrap_or_default().to_owned())
    }

    /// Waits up to `timeout` until the text of `css` contains `needle`; the text.
    pub fn wait_text(&self, css: &str, needle: &str, timeout: Duration) -> Result<String> {
        eventually(timeout, || {
            let Some(id) = self.find(css)? else {
                return Ok(None);
            };
            let v = self.cmd("GET", &format!("/element/{id}/text"), None)?;
            let text = v.as_str().unwrap_or_default().to_owned();
            Ok(text.contains(needle).then_some(text))
        })
        .with_context(|| {
            format!(
                "{css:?} did not show {needle:?} within {timeout:?}\n{}",
                self.report()
            )
        })
    }

    /// The page's address now.
    pub fn url(&self) -> Result<String> {
        Ok(self
            .cmd("GET", "/url", None)?
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }

    /// Saves a PNG screenshot of the page at `path`.
    pub fn screenshot(&self, path: &Path) -> Result<()> {
        let v = self.cmd("GET", "/screenshot", None)?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().context("screenshot is not a string")?)
            .context("screenshot is not base64")?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        std::fs::write(path, png).with_context(|| format!("writing {}", path.display()))
    }

    /// The browser's console messages since the last call (errors of the page's scripts
    /// and of its requests, CSP violations).
    pub fn console_log(&self) -> Result<Vec<String>> {
        let v = self.cmd("POST", "/se/log", Some(&json!({"type": "browser"})))?;
        Ok(v.as_array()
            .map(|a| {
                a.iter()
                    .map(|e| format!("{} {}", e["level"], e["message"]))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// What a failed wait shows: the address, the page's text and console messages.
    fn report(&self) -> String {
        let url = self.url().unwrap_or_else(|e| format!("<{e:#}>"));
        let body = self
            .exec("return document.body.innerText;", json!([]))
            .map(|v| v.as_str().unwrap_or_default().to_owned())
            .unwrap_or_else(|e| format!("<{e:#}>"));
        let log = self
            .console_log()
            .map(|l| l.join("\n"))
            .unwrap_or_else(|e| format!("<{e:#}>"));
        format!("at {url}\n--- page text ---\n{body}\n--- console ---\n{log}")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Closes Chromium; the driver's process group is killed by its own guard after.
        let _ = self.cmd("DELETE", "", None);
    }
}

/// One WebDriver call: its `value`, or the error WebDriver names.
fn call(
    ns: &str,
    driver: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<Value> {
    let started = Instant::now();
    let text = body.map(Value::to_string);
    let r = request_in_netns_within(
        ns,
        driver,
        method,
        path,
        text.as_deref(),
        None,
        CALL_TIMEOUT,
    )
    .with_context(|| format!("WebDriver {method} {path}"))?;
    let v: Value = serde_json::from_str(&r.body)
        .with_context(|| format!("WebDriver {method} {path}: not JSON: {}", r.body))?;
    if r.status != 200 {
        bail!(
            "WebDriver {method} {path} after {:?}: {} {}: {}",
            started.elapsed(),
            r.status,
            v["value"]["error"],
            v["value"]["message"]
        );
    }
    Ok(v["value"].clone())
}
