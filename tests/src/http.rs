//! Minimal HTTP/1.1 client that connects from inside a network namespace.
//!
//! The daemon under test listens on a loopback address inside a lab namespace. Rather
//! than plumbing an interface into the root namespace (which the lab never touches),
//! the request runs on a short-lived thread that has joined the namespace with
//! `setns(2)`: sockets it creates belong to that namespace.

use std::{
    fs::File,
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    os::fd::AsRawFd as _,
    path::PathBuf,
    time::Duration,
};

use anyhow::{bail, Context as _, Result};

/// A response: status code and body.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub body: String,
    /// The status line and headers, as received.
    pub head: String,
}

/// Sends `method path` with an optional body to `addr` from inside netns `ns`
/// (a name under /run/netns, as `ip netns add` makes them).
pub fn request_in_netns(
    ns: &str,
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    token: Option<&str>,
) -> Result<Response> {
    request_in_netns_within(ns, addr, method, path, body, token, READ_TIMEOUT)
}

/// How long [`request`] waits for a reply.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// [`request_in_netns`] waiting up to `read_timeout` for the reply (a browser that
/// starts, a page that loads).
pub fn request_in_netns_within(
    ns: &str,
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    token: Option<&str>,
    read_timeout: Duration,
) -> Result<Response> {
    let (method, path) = (method.to_string(), path.to_string());
    let body = body.map(str::to_string);
    let token = token.map(str::to_string);
    in_netns(ns, move || {
        request_within(
            addr,
            &method,
            &path,
            body.as_deref(),
            token.as_deref(),
            read_timeout,
        )
    })
}

/// Runs `f` on a short-lived thread that has joined netns `ns` (a name under
/// /run/netns): the sockets it creates are that namespace's. Several requests timed
/// inside one `f` pay the thread and `setns` once, outside the timing.
pub fn in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    let ns_path = PathBuf::from("/run/netns").join(ns);
    std::thread::spawn(move || -> Result<T> {
        let file =
            File::open(&ns_path).with_context(|| format!("opening {}", ns_path.display()))?;
        // SAFETY: setns on this thread only; the fd is valid for the call.
        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            bail!(
                "setns({}): {}",
                ns_path.display(),
                std::io::Error::last_os_error()
            );
        }
        f()
    })
    .join()
    .map_err(|_| anyhow::anyhow!("namespace thread panicked"))?
}

/// GET `path` from `addr` inside netns `ns`; fails unless the status is 200.
pub fn get_in_netns(ns: &str, addr: SocketAddr, path: &str) -> Result<String> {
    let r = request_in_netns(ns, addr, "GET", path, None, None)?;
    if r.status != 200 {
        bail!("GET {path}: status {}: {}", r.status, r.body);
    }
    Ok(r.body)
}

/// Sends one request on a fresh connection (`Connection: close`) and reads the reply.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    token: Option<&str>,
) -> Result<Response> {
    request_within(addr, method, path, body, token, READ_TIMEOUT)
}

/// [`request`] waiting up to `read_timeout` for the reply.
pub fn request_within(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    token: Option<&str>,
    read_timeout: Duration,
) -> Result<Response> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .with_context(|| format!("connecting to {addr}"))?;
    s.set_read_timeout(Some(read_timeout))?;
    let body = body.unwrap_or("");
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let raw = read_reply(&mut s).with_context(|| format!("reading reply to {method} {path}"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, rest) = text
        .split_once("\r\n\r\n")
        .context("reply without header end")?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line in {head:?}"))?;
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked {
        dechunk(rest)?
    } else {
        rest.to_string()
    };
    Ok(Response {
        status,
        body,
        head: head.to_string(),
    })
}

/// Reads a reply: up to its `Content-Length` when it has one (a server that keeps the
/// connection open despite `Connection: close`, as ChromeDriver does, is not waited
/// for), else to the end of the connection.
fn read_reply(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 << 10];
    loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Ok(raw);
        }
        raw.extend_from_slice(&buf[..n]);
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
            let length = head.lines().find_map(|l| {
                l.strip_prefix("content-length:")
                    .and_then(|v| v.trim().parse::<usize>().ok())
            });
            if length.is_some_and(|len| raw.len() >= end + 4 + len) {
                return Ok(raw);
            }
        }
    }
}

impl Response {
    /// The value of header `name` (case-insensitive), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

fn dechunk(mut s: &str) -> Result<String> {
    let mut out = String::new();
    loop {
        let (size, rest) = s.split_once("\r\n").context("truncated chunk header")?;
        let n = usize::from_str_radix(size.trim(), 16).context("bad chunk size")?;
        if n == 0 {
            return Ok(out);
        }
        out.push_str(rest.get(..n).context("truncated chunk")?);
        s = rest.get(n + 2..).context("truncated chunk trailer")?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies_are_joined() {
        assert_eq!(
            dechunk("3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n").unwrap(),
            "abcde"
        );
    }
}
