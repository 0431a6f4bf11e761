//! The daemon's log: tracing to standard error, as text or JSON (`daemon.log_format`).
//!
//! The format is in the policy, which is read after logging starts (its own errors must
//! be logged), so both formatters are installed and a switch picks one per event: lines
//! before the policy is read are text, every line after follows `daemon.log_format`.
//!
//! Default filter (without `RUST_LOG`): `info` for Warden, `warn` for aya and the HTTP
//! stack, whose debug output would otherwise drown Warden's own lines.

use std::sync::atomic::{AtomicBool, Ordering};

use tracing_subscriber::filter::{dynamic_filter_fn, EnvFilter};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::Layer as _;
use warden_policy::LogFormat;

/// The filter used when `RUST_LOG` is not set.
pub const DEFAULT_FILTER: &str = "info,aya=warn,aya_obj=warn,aya_log=warn,hyper=warn,\
hyper_util=warn,reqwest=warn,rustls=warn,h2=warn,tower=warn";

static JSON: AtomicBool = AtomicBool::new(false);

/// The filter: `RUST_LOG` when set (an invalid one is reported and the default used).
pub fn filter() -> EnvFilter {
    match std::env::var("RUST_LOG") {
        Ok(text) if !text.trim().is_empty() => EnvFilter::try_new(&text).unwrap_or_else(|e| {
            eprintln!("warden: RUST_LOG `{text}` is invalid ({e}); using `{DEFAULT_FILTER}`");
            EnvFilter::new(DEFAULT_FILTER)
        }),
        _ => EnvFilter::new(DEFAULT_FILTER),
    }
}

/// Installs the daemon's subscriber (text until [`set_format`] says otherwise).
pub fn init() {
    use std::io::IsTerminal as _;
    let text = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal, never into journald or files.
        .with_ansi(std::io::stderr().is_terminal())
        .with_filter(dynamic_filter_fn(|_, _| !JSON.load(Ordering::Relaxed)));
    let json = tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        // Spans opened before the switch were never seen by this layer: no span fields.
        .with_current_span(false)
        .with_span_list(false)
        .with_writer(std::io::stderr)
        // Asked per event (not cached per callsite), so the switch takes effect at once.
        .with_filter(dynamic_filter_fn(|_, _| JSON.load(Ordering::Relaxed)));
    tracing_subscriber::registry()
        .with(filter())
        .with(text)
        .with(json)
        .init();
}

/// Switches every later line to `format`.
pub fn set_format(format: LogFormat) {
    JSON.store(format == LogFormat::Json, Ordering::Relaxed);
}
