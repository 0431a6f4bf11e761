//! One API connection: HTTP/1.1 by hyper, with a watchdog that closes it at the first
//! deadline of `daemon.api_limits` that passes. Its I/O ([`Metered`]), its service
//! ([`Tracked`]) and its bodies ([`Reported`]) tell its [`Activity`] where the request
//! cycle is; all of them are polled in the connection's own task, and the watchdog is
//! polled after them on every wake-up, so it always sees the latest state.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::{
    body::Body,
    http::{Request, Response},
    Router,
};
use http_body::{Body as _, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;
use tokio::time::Instant;

use super::Closed;
use warden_policy::ApiLimits;

/// Largest read buffer of a connection, and so the largest request header: the
/// memory a connection can make the daemon hold while it sends its header slowly.
const MAX_READ_BUFFER: usize = 64 << 10;

/// The timeouts of `daemon.api_limits`.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub header: Duration,
    pub idle: Duration,
    pub body: Duration,
}

impl From<&ApiLimits> for Timeouts {
    fn from(l: &ApiLimits) -> Self {
        Timeouts {
            header: l.header_timeout,
            idle: l.idle_timeout,
            body: l.body_timeout,
        }
    }
}

/// Where a connection is in its request cycle, as its reads, the service and the bodies
/// report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No request under way since then: the accept, or the end of the last response.
    Idle(Instant),
    /// A request's first bytes arrived then; its header is not complete.
    Head(Instant),
    /// The service has the request; its body is still arriving, since the header, when
    /// `body_since` is set.
    Busy { body_since: Option<Instant> },
}

#[derive(Debug, Clone, Copy)]
struct ActivityState {
    phase: Phase,
    /// Since when the socket has refused response bytes (its send buffer full).
    write_blocked: Option<Instant>,
}

/// What a connection is doing, shared by its I/O, its service and its bodies (all polled
/// in the connection's own task), and read by its watchdog after each poll.
#[derive(Debug)]
pub struct Activity(Mutex<ActivityState>);

impl Activity {
    pub fn new(now: Instant) -> Activity {
        Activity(Mutex::new(ActivityState {
            phase: Phase::Idle(now),
            write_blocked: None,
        }))
    }

    fn with<T>(&self, f: impl FnOnce(&mut ActivityState) -> T) -> T {
        f(&mut self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Bytes arrived: on an idle connection, a request has begun.
    pub(super) fn read(&self, now: Instant) {
        self.with(|s| {
            if let Phase::Idle(_) = s.phase {
                s.phase = Phase::Head(now);
            }
        })
    }

    pub(super) fn write_blocked(&self, now: Instant) {
        self.with(|s| {
            s.write_blocked.get_or_insert(now);
        })
    }

    /// A write or flush succeeded (`sent`: it took bytes). Bytes going out, or a
    /// blocked socket taking them, is progress: an idle connection is idle from its last
    /// byte sent. A flush with nothing waiting is not (hyper flushes on every poll).
    pub(super) fn wrote(&self, now: Instant, sent: bool) {
        self.with(|s| {
            let progressed = sent || s.write_blocked.is_some();
            s.write_blocked = None;
            if let (Phase::Idle(_), true) = (s.phase, progressed) {
                s.phase = Phase::Idle(now);
            }
        })
    }

    /// The header is complete and the service has the request.
    pub(super) fn request(&self, has_body: bool, now: Instant) {
        self.with(|s| {
            s.phase = Phase::Busy {
                body_since: has_body.then_some(now),
            }
        })
    }

    /// The request body ended, or the handler let it go.
    pub(super) fn body_done(&self) {
        self.with(|s| {
            if let Phase::Busy { body_since } = &mut s.phase {
                *body_since = None;
            }
        })
    }

    /// The response has gone to the connection: idle until the next request.
    pub(super) fn response_done(&self, now: Instant) {
        self.with(|s| s.phase = Phase::Idle(now))
    }

    /// The next deadline and why (`None`: the shutdown), or no deadline while the
    /// handler works. A connection whose socket refuses response bytes is sending, not
    /// idle, even after the response body ended (hyper still holds its tail).
    /// `draining`: the server shuts down, so a connection without a request under way
    /// (idle, or with a header still arriving) is closed now.
    pub(super) fn deadline(
        &self,
        t: &Timeouts,
        draining: bool,
    ) -> Option<(Instant, Option<Closed>)> {
        let s = self.with(|s| *s);
        let phase = match s.phase {
            Phase::Idle(_) if s.write_blocked.is_some() => None,
            Phase::Idle(since) | Phase::Head(since) if draining => Some((since, None)),
            Phase::Idle(since) => Some((since + t.idle, Some(Closed::Idle))),
            Phase::Head(since) => Some((since + t.header, Some(Closed::Header))),
            Phase::Busy {
                body_since: Some(since),
            } => Some((since + t.body, Some(Closed::Body))),
            Phase::Busy { body_since: None } => None,
        };
        let send = s
            .write_blocked
            .map(|since| (since + t.idle, Some(Closed::Send)));
        match (phase, send) {
            (Some(a), Some(b)) => Some(if b.0 <= a.0 { b } else { a }),
            (a, b) => a.or(b),
        }
    }
}

/// A connection's socket (or TLS stream) reporting its reads and blocked writes.
struct Metered<S> {
    io: S,
    activity: Arc<Activity>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Metered<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.read(Instant::now());
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> Metered<S> {
    /// Reports a write (`sent`: how many bytes it took) or a flush (`None`).
    fn note<T>(&self, r: &Poll<io::Result<T>>, sent: impl FnOnce(&T) -> Option<usize>) {
        match r {
            Poll::Pending => self.activity.write_blocked(Instant::now()),
            Poll::Ready(Ok(v)) => match sent(v) {
                Some(0) => {}
                n => self.activity.wrote(Instant::now(), n.is_some()),
            },
            Poll::Ready(Err(_)) => {}
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Metered<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, buf);
        self.note(&r, |n| Some(*n));
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.note(&r, |n| Some(*n));
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.io).poll_flush(cx);
        self.note(&r, |()| None);
        r
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Which end of a request a [`Reported`] body is.
#[derive(Debug, Clone, Copy)]
enum Side {
    Request,
    Response,
}

/// A body that reports its end (or its drop) to the connection's [`Activity`].
struct Reported<B> {
    inner: B,
    activity: Arc<Activity>,
    side: Side,
    done: bool,
}

impl<B> Reported<B> {
    fn new(inner: B, activity: Arc<Activity>, side: Side) -> Self {
        Reported {
            inner,
            activity,
            side,
            done: false,
        }
    }

    fn finish(&mut self) {
        if !self.done {
            self.done = true;
            match self.side {
                Side::Request => self.activity.body_done(),
                Side::Response => self.activity.response_done(Instant::now()),
            }
        }
    }
}

impl<B> Drop for Reported<B> {
    fn drop(&mut self) {
        self.finish();
    }
}

impl<B: http_body::Body + Unpin> http_body::Body for Reported<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(r, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            self.finish();
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The router as a hyper service that tells the connection's [`Activity`] when a
/// request's header is in, when its body ends and when its response has gone.
#[derive(Clone)]
struct Tracked {
    app: Router,
    activity: Arc<Activity>,
}

impl hyper::service::Service<Request<Incoming>> for Tracked {
    type Response = Response<Reported<Body>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        self.activity
            .request(!req.body().is_end_stream(), Instant::now());
        let activity = self.activity.clone();
        let req = req.map(|body| Body::new(Reported::new(body, activity.clone(), Side::Request)));
        let app = self.app.clone();
        Box::pin(async move {
            let response = tower::ServiceExt::oneshot(app, req).await?;
            Ok(response.map(|body| Reported::new(body, activity, Side::Response)))
        })
    }
}

/// Resolves when the connection's next deadline passes (see [`Activity::deadline`]).
/// Polled after the connection on every wake-up of the task, so it sees each change the
/// connection made and moves its timer to match.
struct Watchdog<'a> {
    activity: &'a Activity,
    timeouts: &'a Timeouts,
    draining: bool,
    sleep: Pin<&'a mut tokio::time::Sleep>,
}

impl Future for Watchdog<'_> {
    type Output = Option<Closed>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Closed>> {
        let Some((at, why)) = self.activity.deadline(self.timeouts, self.draining) else {
            // The handler works: the next change comes from the connection's own poll.
            return Poll::Pending;
        };
        if self.sleep.deadline() != at {
            self.sleep.as_mut().reset(at);
        }
        self.sleep.as_mut().poll(cx).map(|()| why)
    }
}

/// Serves HTTP/1.1 on `io` until the client or the server ends it, or a deadline
/// passes (then returns which). After `shutdown` turns true the connection ends at once
/// when no request is under way, else once it is answered.
pub async fn drive<S>(
    io: S,
    app: Router,
    activity: Arc<Activity>,
    timeouts: Timeouts,
    mut shutdown: watch::Receiver<bool>,
) -> Option<Closed>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let io = hyper_util::rt::TokioIo::new(Metered {
        io,
        activity: activity.clone(),
    });
    let service = Tracked {
        app,
        activity: activity.clone(),
    };
    // No hyper timer: hyper's header-read timeout restarts with every request and cannot
    // tell an idle connection from a slow header; the watchdog below does both.
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.max_buf_size(MAX_READ_BUFFER);
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let sleep = tokio::time::sleep(timeouts.idle);
    tokio::pin!(sleep);
    let mut draining = *shutdown.borrow_and_update();
    if draining {
        conn.as_mut().graceful_shutdown();
    }
    loop {
        tokio::select! {
            biased;
            done = conn.as_mut() => {
                if let Err(e) = done {
                    tracing::debug!(error = %e, "API connection ended with an error");
                }
                return None;
            }
            _ = shutdown.changed(), if !draining => {
                // Keep-alive off: a request under way is answered, then hyper closes.
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
            why = Watchdog { activity: &activity, timeouts: &timeouts, draining, sleep: sleep.as_mut() } => {
                return why;
            }
        }
    }
}
