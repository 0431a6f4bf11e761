//! Crafted frames sent as they are from a lab namespace, and counted where they arrive:
//! what a tenant can put on the wire that no socket API builds (VLAN stacks, ND-shaped
//! ICMPv6 with data, ARP of other hardware types, link-local unicast).
//!
//! Every crafted frame carries [`MARKER`] and its sequence number somewhere in its
//! payload; a [`Counter`] on the receiving interface counts the distinct sequence
//! numbers it sees, so nothing else on the wire (ND, MLD, a retransmit) is counted and
//! a frame delivered twice counts once.

use std::{
    collections::BTreeSet,
    fs::File,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};

use crate::lab::Netns;

/// What every crafted frame carries, followed by its 4-byte sequence number.
pub const MARKER: [u8; 8] = *b"WRDNMARK";

/// The marker and sequence number `seq`, to put into a frame's payload.
pub fn marked(seq: u32) -> [u8; 12] {
    let mut m = [0; 12];
    m[..8].copy_from_slice(&MARKER);
    m[8..].copy_from_slice(&seq.to_be_bytes());
    m
}

/// The sequence numbers of the markers in `frame`.
fn markers(frame: &[u8]) -> impl Iterator<Item = u32> + '_ {
    frame
        .windows(12)
        .filter(|w| w[..8] == MARKER)
        .map(|w| u32::from_be_bytes([w[8], w[9], w[10], w[11]]))
}

/// Runs `f` on a thread that has joined `ns`'s network namespace.
fn in_netns<T: Send + 'static>(
    ns: &Netns,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> JoinHandle<Result<T>> {
    let path = PathBuf::from("/run/netns").join(ns.name());
    thread::spawn(move || -> Result<T> {
        let file = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
        // SAFETY: joins the namespace on this thread only; the fd is valid for the call.
        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            bail!(
                "setns {}: {}",
                path.display(),
                std::io::Error::last_os_error()
            );
        }
        f()
    })
}

/// An AF_PACKET socket bound to `ifindex` of the calling thread's namespace, receiving
/// every protocol, with a receive timeout of `timeout`.
pub(crate) fn packet_socket(ifindex: u32, timeout: Duration) -> Result<OwnedFd> {
    let proto = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: plain socket(2); the result is checked.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            i32::from(proto),
        )
    };
    if fd < 0 {
        bail!(
            "packet socket (needs CAP_NET_RAW): {}",
            std::io::Error::last_os_error()
        );
    }
    // SAFETY: `fd` is a fresh descriptor this function owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_ll is plain data; all-zero is a valid start.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = proto;
    sll.sll_ifindex = ifindex as i32;
    // SAFETY: binds with a valid sockaddr_ll of the size passed.
    let rc = unsafe {
        libc::bind(
            sock.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if rc != 0 {
        bail!(
            "binding the packet socket: {}",
            std::io::Error::last_os_error()
        );
    }
    let tv = libc::timeval {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_usec: timeout.subsec_micros() as libc::suseconds_t,
    };
    // SAFETY: sets a socket option from a valid timeval of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as u32,
        )
    };
    if rc != 0 {
        bail!("SO_RCVTIMEO: {}", std::io::Error::last_os_error());
    }
    Ok(sock)
}

/// Sends `frames` as they are out of `ifname` in `ns`, `gap` apart (bounded by their
/// number). Returns how many the kernel took.
pub fn send(ns: &Netns, ifname: &str, frames: Vec<Vec<u8>>, gap: Duration) -> Result<usize> {
    let ifindex = ns.ifindex(ifname)?;
    in_netns(ns, move || -> Result<usize> {
        let sock = packet_socket(ifindex, Duration::from_secs(1))?;
        let mut sent = 0;
        for f in &frames {
            // SAFETY: sends from a buffer valid for its length on a bound socket.
            let n = unsafe { libc::send(sock.as_raw_fd(), f.as_ptr().cast(), f.len(), 0) };
            if n < 0 {
                bail!(
                    "sending a {}-byte frame: {}",
                    f.len(),
                    std::io::Error::last_os_error()
                );
            }
            sent += 1;
            if !gap.is_zero() {
                thread::sleep(gap);
            }
        }
        Ok(sent)
    })
    .join()
    .map_err(|_| anyhow::anyhow!("sending thread panicked"))?
}

/// Counts the marked frames arriving on one interface until stopped.
pub struct Counter {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<BTreeSet<u32>>>>,
}

impl Counter {
    /// Starts counting on `ifname` in `ns` (every frame the interface receives). Stops
    /// by itself after `limit`.
    pub fn start(ns: &Netns, ifname: &str, limit: Duration) -> Result<Counter> {
        let ifindex = ns.ifindex(ifname)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = in_netns(ns, move || -> Result<BTreeSet<u32>> {
            let sock = packet_socket(ifindex, Duration::from_millis(50))?;
            let _ = ready_tx.send(());
            let mut seen = BTreeSet::new();
            let mut buf = vec![0u8; 65_536];
            let deadline = Instant::now() + limit;
            while !flag.load(Ordering::SeqCst) && Instant::now() < deadline {
                // SAFETY: receives into a buffer valid for its length.
                let n =
                    unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
                if n > 0 {
                    seen.extend(markers(&buf[..n as usize]));
                }
            }
            Ok(seen)
        });
        ready_rx
            .recv_timeout(Duration::from_secs(5))
            .context("the counter did not open its socket")?;
        Ok(Counter {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops counting after `linger` (for frames still on their way) and returns the
    /// sequence numbers seen.
    pub fn finish(mut self, linger: Duration) -> Result<BTreeSet<u32>> {
        thread::sleep(linger);
        self.stop.store(true, Ordering::SeqCst);
        self.thread
            .take()
            .context("counter already finished")?
            .join()
            .map_err(|_| anyhow::anyhow!("counting thread panicked"))?
    }
}

impl Drop for Counter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_are_found_anywhere_and_read_with_their_sequence() {
        let mut f = vec![0u8; 30];
        f.extend_from_slice(&marked(7));
        f.extend_from_slice(&[1, 2, 3]);
        f.extend_from_slice(&marked(70_000));
        assert_eq!(markers(&f).collect::<Vec<_>>(), [7, 70_000]);
        assert_eq!(markers(&[0u8; 40]).count(), 0);
    }
}
