//! A userspace delay line: a transparent wire between two interfaces of one namespace
//! that holds every frame for a fixed time, so the lab's links can have WAN round-trip
//! times. The kernel the lab runs on has no netem, so the `delayline` program
//! (`tests/src/bin/delayline.rs`) runs [`DelayLine`] in a namespace of its own.
//!
//! Per direction, one thread receives frames from an AF_PACKET socket, stamps them with
//! CLOCK_MONOTONIC and queues them; a second thread sleeps until each frame is due and
//! sends it out of the other interface. The queue is bounded like a router's buffer: a
//! frame that finds it full is dropped and counted. Frames are forwarded unchanged,
//! MACs included, with their checksum-offload state (the sockets use a virtio-net
//! header, as a veth would hand the frame over) and their VLAN tag (put back from the
//! packet's auxiliary data, where the kernel moves it).
//!
//! A wire carries frames of link size, and so should this one (its queue bound counts
//! frames, and what comes out is what a policer downstream sees): [`prepare_wire`] turns
//! off the receive and segmentation offloads of the delay namespace's interfaces, and
//! the neighbours' ends must not send GSO super-frames ([`no_segmentation_offload`]).
//! Super-frames that come anyway are forwarded as such and counted.

use std::{
    ffi::CString,
    io, mem,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        mpsc, Arc,
    },
    thread,
    time::Duration,
};

use anyhow::{bail, ensure, Context as _, Result};

use crate::lab::{Netns, Proc};

/// Frames a direction holds at most, however small they are.
pub const QUEUE_FRAMES: usize = 100_000;
/// Bytes a direction holds at most (frame bytes, headers included).
pub const QUEUE_BYTES: usize = 64 << 20;
/// Socket buffer sizes: tens of milliseconds of a gigabit link, so a thread that is not
/// scheduled for a while does not lose frames in the kernel.
const SOCKET_BUFFER: libc::c_int = 8 << 20;
/// Timer slack of the sending threads, in nanoseconds.
const TIMER_SLACK_NS: libc::c_ulong = 1_000;
/// How often blocked threads look at the stop flag.
const POLL: Duration = Duration::from_millis(100);
/// The largest frame accepted: a 64 KiB GSO super-frame plus a VLAN tag.
const MAX_FRAME: usize = 65_536 + 64;
/// `struct virtio_net_hdr`, which PACKET_VNET_HDR puts before every frame.
const VNET_HDR_LEN: usize = 10;
const VIRTIO_NET_HDR_F_NEEDS_CSUM: u8 = 1;
const VLAN_TAG_LEN: usize = 4;
/// Destination and source MAC: where a VLAN tag goes.
const MAC_ADDRS_LEN: usize = 12;
/// The line the program prints once both sockets are bound.
pub const READY: &str = "delayline ready";

/// What a [`DelayLine`] connects and how long it holds frames.
#[derive(Clone, Debug)]
pub struct Config {
    pub if_a: String,
    pub if_b: String,
    /// One-way delay, the same in both directions.
    pub delay: Duration,
    /// Queue bound per direction, in frames.
    pub queue_frames: usize,
    /// Queue bound per direction, in bytes.
    pub queue_bytes: usize,
}

impl Config {
    /// `if_a` <-> `if_b` with `delay` each way and the default queue bounds.
    pub fn new(if_a: &str, if_b: &str, delay: Duration) -> Config {
        Config {
            if_a: if_a.to_owned(),
            if_b: if_b.to_owned(),
            delay,
            queue_frames: QUEUE_FRAMES,
            queue_bytes: QUEUE_BYTES,
        }
    }
}

/// Counters of one direction, shared by its two threads.
#[derive(Debug, Default)]
struct Counters {
    forwarded: AtomicU64,
    forwarded_bytes: AtomicU64,
    /// Dropped on arrival because the queue was full.
    dropped: AtomicU64,
    /// Dropped because the kernel refused to send them (e.g. the peer's backlog was full).
    send_errors: AtomicU64,
    /// Received larger than [`MAX_FRAME`] and dropped.
    truncated: AtomicU64,
    /// GSO super-frames received (and forwarded as such): a neighbour has TSO/GSO on.
    gso: AtomicU64,
    /// Frames and bytes now queued; the receiver adds, the sender subtracts.
    queued: AtomicUsize,
    queued_bytes: AtomicUsize,
    peak_queued: AtomicUsize,
}

/// What one direction did, as reported on exit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DirectionStats {
    /// `IF_A->IF_B`.
    pub name: String,
    pub forwarded: u64,
    pub forwarded_bytes: u64,
    pub dropped: u64,
    pub send_errors: u64,
    pub truncated: u64,
    /// GSO super-frames received (0 unless a neighbour has TSO/GSO on).
    pub gso: u64,
    /// Most frames queued at once.
    pub peak_queued: usize,
    /// Frames still queued when the line stopped (neither forwarded nor dropped).
    pub in_flight: usize,
}

impl std::fmt::Display for DirectionStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: forwarded {} frames ({} bytes), dropped {} (queue full), {} send errors, \
             {} truncated, {} GSO super-frames, peak queue {} frames, {} in flight at exit",
            self.name,
            self.forwarded,
            self.forwarded_bytes,
            self.dropped,
            self.send_errors,
            self.truncated,
            self.gso,
            self.peak_queued,
            self.in_flight
        )
    }
}

/// A frame waiting for its time: the virtio-net header followed by the frame.
struct Frame {
    due_ns: u64,
    data: Vec<u8>,
}

/// A running delay line. Dropping it without [`DelayLine::stop`] leaves its threads
/// running until the process exits.
pub struct DelayLine {
    stop: Arc<AtomicBool>,
    failed: Arc<AtomicBool>,
    names: [String; 2],
    counters: [Arc<Counters>; 2],
    threads: Vec<thread::JoinHandle<Result<()>>>,
}

impl DelayLine {
    /// Opens and binds both sockets, then starts the four threads. Once it returns,
    /// every frame that arrives is forwarded. Needs CAP_NET_RAW.
    pub fn start(config: &Config) -> Result<DelayLine> {
        ensure!(
            config.if_a != config.if_b,
            "delay line needs two different interfaces"
        );
        let delay_ns = u64::try_from(config.delay.as_nanos()).context("delay too long")?;
        let a = Arc::new(PacketSocket::open(&config.if_a)?);
        let b = Arc::new(PacketSocket::open(&config.if_b)?);
        let stop = Arc::new(AtomicBool::new(false));
        let failed = Arc::new(AtomicBool::new(false));
        let names = [
            format!("{}->{}", config.if_a, config.if_b),
            format!("{}->{}", config.if_b, config.if_a),
        ];
        let counters = [Arc::default(), Arc::default()];
        let mut threads = Vec::new();
        for (i, (from, to)) in [(&a, &b), (&b, &a)].into_iter().enumerate() {
            let (tx, rx) = mpsc::channel();
            let receiver = Receiver {
                socket: Arc::clone(from),
                queue: tx,
                counters: Arc::clone(&counters[i]),
                stop: Arc::clone(&stop),
                delay_ns,
                queue_frames: config.queue_frames,
                queue_bytes: config.queue_bytes,
            };
            let sender = Sender {
                socket: Arc::clone(to),
                queue: rx,
                counters: Arc::clone(&counters[i]),
                stop: Arc::clone(&stop),
            };
            let name = &names[i];
            threads.push(spawn(format!("rx {name}"), &failed, move || {
                receiver.run()
            })?);
            threads.push(spawn(format!("tx {name}"), &failed, move || sender.run())?);
        }
        Ok(DelayLine {
            stop,
            failed,
            names,
            counters,
            threads,
        })
    }

    /// True once a thread has failed; [`DelayLine::stop`] then returns its error.
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }

    /// Counters so far, per direction (a->b, b->a).
    pub fn stats(&self) -> [DirectionStats; 2] {
        [0, 1].map(|i| {
            let c = &self.counters[i];
            DirectionStats {
                name: self.names[i].clone(),
                forwarded: c.forwarded.load(Ordering::Relaxed),
                forwarded_bytes: c.forwarded_bytes.load(Ordering::Relaxed),
                dropped: c.dropped.load(Ordering::Relaxed),
                send_errors: c.send_errors.load(Ordering::Relaxed),
                truncated: c.truncated.load(Ordering::Relaxed),
                gso: c.gso.load(Ordering::Relaxed),
                peak_queued: c.peak_queued.load(Ordering::Relaxed),
                in_flight: c.queued.load(Ordering::Relaxed),
            }
        })
    }

    /// Stops the threads (within about [`POLL`]; queued frames are discarded and
    /// reported as in flight) and returns the final counters, or the first thread's error.
    pub fn stop(mut self) -> Result<[DirectionStats; 2]> {
        self.stop.store(true, Ordering::Relaxed);
        let mut first_error = None;
        for handle in mem::take(&mut self.threads) {
            let name = handle.thread().name().unwrap_or("delay line").to_owned();
            let outcome = match handle.join() {
                Ok(outcome) => outcome,
                Err(_) => Err(anyhow::anyhow!("panicked")),
            };
            if let Err(err) = outcome {
                first_error.get_or_insert(err.context(format!("thread {name}")));
            }
        }
        match first_error {
            Some(err) => Err(err),
            None => Ok(self.stats()),
        }
    }
}

fn spawn(
    name: String,
    failed: &Arc<AtomicBool>,
    body: impl FnOnce() -> Result<()> + Send + 'static,
) -> Result<thread::JoinHandle<Result<()>>> {
    let failed = Arc::clone(failed);
    thread::Builder::new()
        .name(name.clone())
        .spawn(move || {
            let outcome = body();
            if outcome.is_err() {
                failed.store(true, Ordering::Relaxed);
            }
            outcome
        })
        .with_context(|| format!("starting thread {name}"))
}

struct Receiver {
    socket: Arc<PacketSocket>,
    queue: mpsc::Sender<Frame>,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    delay_ns: u64,
    queue_frames: usize,
    queue_bytes: usize,
}

impl Receiver {
    fn run(self) -> Result<()> {
        let mut buf = vec![0u8; VNET_HDR_LEN + MAX_FRAME];
        let c = &self.counters;
        while !self.stop.load(Ordering::Relaxed) {
            let received = match self.socket.recv(&mut buf) {
                Ok(Some(received)) => received,
                Ok(None) => continue,
                Err(err) => {
                    return Err(err).context(format!("receiving on {}", self.socket.ifname))
                }
            };
            let now = now_ns();
            if received.truncated {
                c.truncated.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            if received.gso {
                c.gso.fetch_add(1, Ordering::Relaxed);
            }
            // Only this thread adds to the queue, so the check cannot be overtaken.
            let queued = c.queued.load(Ordering::Relaxed);
            let bytes = c.queued_bytes.load(Ordering::Relaxed);
            if queued >= self.queue_frames || bytes + received.size() > self.queue_bytes {
                c.dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let data = received.frame(&buf);
            c.queued.fetch_add(1, Ordering::Relaxed);
            c.queued_bytes.fetch_add(data.len(), Ordering::Relaxed);
            c.peak_queued.fetch_max(queued + 1, Ordering::Relaxed);
            let frame = Frame {
                due_ns: now + self.delay_ns,
                data,
            };
            if self.queue.send(frame).is_err() {
                bail!("the sending thread is gone");
            }
        }
        Ok(())
    }
}

struct Sender {
    socket: Arc<PacketSocket>,
    queue: mpsc::Receiver<Frame>,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
}

impl Sender {
    fn run(self) -> Result<()> {
        // The default slack (50 us) would add up to 0.1 ms per round trip for nothing.
        // SAFETY: prctl(PR_SET_TIMERSLACK) only changes this thread's timer slack.
        unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, TIMER_SLACK_NS, 0, 0, 0) };
        let c = &self.counters;
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            let frame = match self.queue.recv_timeout(POLL) {
                Ok(frame) => frame,
                Err(mpsc::RecvTimeoutError::Timeout) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(()),
            };
            // Due times only grow (one delay, frames in arrival order), so sleeping for
            // the head of the queue keeps the order.
            if !sleep_until(frame.due_ns, &self.stop) {
                return Ok(());
            }
            c.queued.fetch_sub(1, Ordering::Relaxed);
            c.queued_bytes
                .fetch_sub(frame.data.len(), Ordering::Relaxed);
            match self.socket.send(&frame.data) {
                Ok(()) => {
                    c.forwarded.fetch_add(1, Ordering::Relaxed);
                    let len = frame.data.len() - VNET_HDR_LEN;
                    c.forwarded_bytes.fetch_add(len as u64, Ordering::Relaxed);
                }
                Err(_) => {
                    // A full backlog or an interface going away mid-teardown: the frame
                    // is lost, as on a wire.
                    c.send_errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

/// CLOCK_MONOTONIC in nanoseconds.
fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid out-pointer; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Sleeps until CLOCK_MONOTONIC reaches `due_ns`, in steps of at most [`POLL`] so a
/// long delay still notices `stop`. False if stopped.
fn sleep_until(due_ns: u64, stop: &AtomicBool) -> bool {
    loop {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        let now = now_ns();
        if now >= due_ns {
            return true;
        }
        let until = due_ns.min(now + POLL.as_nanos() as u64);
        let ts = libc::timespec {
            tv_sec: (until / 1_000_000_000) as libc::time_t,
            tv_nsec: (until % 1_000_000_000) as libc::c_long,
        };
        // SAFETY: ts is valid; an absolute sleep needs no remainder. EINTR just loops.
        unsafe {
            libc::clock_nanosleep(
                libc::CLOCK_MONOTONIC,
                libc::TIMER_ABSTIME,
                &ts,
                std::ptr::null_mut(),
            )
        };
    }
}

/// An AF_PACKET socket bound to one interface, receiving everything that arrives on
/// it (promiscuously) and sending raw frames out of it.
struct PacketSocket {
    fd: OwnedFd,
    ifname: String,
}

/// One received frame, still in the receive buffer.
struct Received {
    /// Frame bytes after the virtio-net header.
    len: usize,
    truncated: bool,
    /// A GSO super-frame (the virtio-net header has a gso_type).
    gso: bool,
    /// (TPID, TCI) of a tag the kernel took off the frame.
    vlan: Option<(u16, u16)>,
}

impl Received {
    /// Length of [`Received::frame`]'s result.
    fn size(&self) -> usize {
        let tag = if self.vlan.is_some() { VLAN_TAG_LEN } else { 0 };
        VNET_HDR_LEN + self.len + tag
    }

    /// The frame to queue: header and frame, with the VLAN tag put back where it was.
    fn frame(&self, buf: &[u8]) -> Vec<u8> {
        let frame = &buf[VNET_HDR_LEN..VNET_HDR_LEN + self.len];
        let Some((tpid, tci)) = self.vlan else {
            return buf[..VNET_HDR_LEN + self.len].to_vec();
        };
        let mut data = Vec::with_capacity(self.size());
        data.extend_from_slice(&buf[..VNET_HDR_LEN]);
        if data[0] & VIRTIO_NET_HDR_F_NEEDS_CSUM != 0 {
            // csum_start counts from the frame's start, which the tag moves.
            let start = u16::from_le_bytes([data[6], data[7]]).wrapping_add(VLAN_TAG_LEN as u16);
            data[6..8].copy_from_slice(&start.to_le_bytes());
        }
        data.extend_from_slice(&frame[..MAC_ADDRS_LEN]);
        data.extend_from_slice(&tpid.to_be_bytes());
        data.extend_from_slice(&tci.to_be_bytes());
        data.extend_from_slice(&frame[MAC_ADDRS_LEN..]);
        data
    }
}

impl PacketSocket {
    fn open(ifname: &str) -> Result<PacketSocket> {
        let cname = CString::new(ifname).context("interface name contains NUL")?;
        // SAFETY: cname is a valid C string.
        let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) };
        if ifindex == 0 {
            return Err(io::Error::last_os_error()).context(format!("no interface {ifname}"));
        }
        // Protocol 0 receives nothing until bind, so no other interface's frame slips in.
        // SAFETY: plain socket(2).
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error()).context("AF_PACKET socket (needs CAP_NET_RAW)");
        }
        let socket = PacketSocket {
            // SAFETY: fd is a fresh descriptor that nothing else owns.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            ifname: ifname.to_owned(),
        };
        socket.set_int(
            libc::SOL_PACKET,
            libc::PACKET_VNET_HDR,
            1,
            "PACKET_VNET_HDR",
        )?;
        socket.set_int(libc::SOL_PACKET, libc::PACKET_AUXDATA, 1, "PACKET_AUXDATA")?;
        // Our own transmissions would come back as PACKET_OUTGOING; not even copying
        // them saves a copy per forwarded frame. recv() still checks, for old kernels.
        let _ = socket.set_int(libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, 1, "");
        for (force, plain, what) in [
            (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF, "SO_RCVBUF"),
            (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF, "SO_SNDBUF"),
        ] {
            // FORCE passes net.core.*mem_max but needs CAP_NET_ADMIN; without it the
            // plain option still gets as much as the sysctl allows.
            if socket
                .set_int(libc::SOL_SOCKET, force, SOCKET_BUFFER, what)
                .is_err()
            {
                socket.set_int(libc::SOL_SOCKET, plain, SOCKET_BUFFER, what)?;
            }
        }
        let timeout = libc::timeval {
            tv_sec: 0,
            tv_usec: POLL.as_micros() as libc::suseconds_t,
        };
        socket.set(libc::SOL_SOCKET, libc::SO_RCVTIMEO, &timeout, "SO_RCVTIMEO")?;
        // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
        let mut addr: libc::sockaddr_ll = unsafe { mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
        addr.sll_ifindex = ifindex as i32;
        // SAFETY: addr is a valid sockaddr_ll of the length given.
        let rc = unsafe {
            libc::bind(
                socket.fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_ll).cast(),
                mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error()).context(format!("binding to {ifname}"));
        }
        // Frames on a wire are addressed to the far end, not to this interface.
        // SAFETY: packet_mreq is plain data; all-zero is a valid value.
        let mut mreq: libc::packet_mreq = unsafe { mem::zeroed() };
        mreq.mr_ifindex = ifindex as i32;
        mreq.mr_type = libc::PACKET_MR_PROMISC as u16;
        socket.set(
            libc::SOL_PACKET,
            libc::PACKET_ADD_MEMBERSHIP,
            &mreq,
            "PACKET_ADD_MEMBERSHIP",
        )?;
        Ok(socket)
    }

    fn set_int(&self, level: i32, name: i32, value: libc::c_int, what: &str) -> Result<()> {
        self.set(level, name, &value, what)
    }

    fn set<T>(&self, level: i32, name: i32, value: &T, what: &str) -> Result<()> {
        // SAFETY: value points to a T of the size given.
        let rc = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                level,
                name,
                (value as *const T).cast(),
                mem::size_of::<T>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error())
                .context(format!("setting {what} on {}", self.ifname));
        }
        Ok(())
    }

    /// The next frame that arrived on the interface (not one sent from it), or None
    /// after [`POLL`] without one. The virtio-net header lands in `buf[..10]`.
    fn recv(&self, buf: &mut [u8]) -> Result<Option<Received>> {
        // SAFETY: all of these are plain data; all-zero is a valid value.
        let mut addr: libc::sockaddr_ll = unsafe { mem::zeroed() };
        let mut control = [0u64; 16];
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: as above, plain data.
        let mut msg: libc::msghdr = unsafe { mem::zeroed() };
        msg.msg_name = (&mut addr as *mut libc::sockaddr_ll).cast();
        msg.msg_namelen = mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = mem::size_of_val(&control);
        // SAFETY: msg points at live buffers of the lengths it states.
        let n = unsafe { libc::recvmsg(self.fd.as_raw_fd(), &mut msg, 0) };
        if n < 0 {
            let err = io::Error::last_os_error();
            return match err.raw_os_error() {
                Some(libc::EAGAIN | libc::EINTR) => Ok(None),
                // The interface went down (the lab being torn down, or not up yet):
                // reported once, and the socket receives again when it comes back.
                Some(libc::ENETDOWN) => {
                    thread::sleep(Duration::from_millis(10));
                    Ok(None)
                }
                _ => Err(err.into()),
            };
        }
        if addr.sll_pkttype == libc::PACKET_OUTGOING {
            return Ok(None);
        }
        let n = n as usize;
        ensure!(
            n >= VNET_HDR_LEN,
            "frame shorter than its virtio-net header"
        );
        let mut vlan = None;
        // SAFETY: msg's control buffer was filled by the kernel; the CMSG macros walk it
        // within msg_controllen.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
            while !cmsg.is_null() {
                if (*cmsg).cmsg_level == libc::SOL_PACKET
                    && (*cmsg).cmsg_type == libc::PACKET_AUXDATA
                {
                    let aux: libc::tpacket_auxdata =
                        std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                    if aux.tp_status & libc::TP_STATUS_VLAN_VALID != 0 {
                        let tpid = if aux.tp_status & libc::TP_STATUS_VLAN_TPID_VALID != 0 {
                            aux.tp_vlan_tpid
                        } else {
                            0x8100
                        };
                        vlan = Some((tpid, aux.tp_vlan_tci));
                    }
                }
                cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
            }
        }
        let len = n - VNET_HDR_LEN;
        Ok(Some(Received {
            len,
            truncated: msg.msg_flags & libc::MSG_TRUNC != 0,
            gso: buf[1] != 0,
            // The tag goes after the MAC addresses, which any real frame has.
            vlan: vlan.filter(|_| len >= MAC_ADDRS_LEN),
        }))
    }

    /// Sends one virtio-net header + frame out of the interface.
    fn send(&self, data: &[u8]) -> io::Result<()> {
        loop {
            // SAFETY: data is a live buffer of the length given.
            let n = unsafe { libc::send(self.fd.as_raw_fd(), data.as_ptr().cast(), data.len(), 0) };
            if n >= 0 {
                return Ok(());
            }
            let err = io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EINTR) {
                return Err(err);
            }
        }
    }
}

/// Readies an interface of the delay namespace to be one end of the wire: no IPv6 (so
/// the namespace's own stack sends nothing; it has no addresses and forwards nothing
/// either), no receive or segmentation offloads (so the sockets see frames of link
/// size and can send them back), and up.
pub fn prepare_wire(ns: &Netns, ifname: &str) -> Result<()> {
    ns.disable_ipv6(ifname)?;
    ns.exec(&[
        "ethtool", "-K", ifname, "gro", "off", "lro", "off", "gso", "off", "tso", "off",
    ])
    .with_context(|| format!("turning off offloads of {ifname} in {}", ns.name()))?;
    ns.up(ifname)
}

/// Stops a neighbour's end of a delayed link from sending GSO super-frames, which the
/// delay line could not send on as link-size frames.
pub fn no_segmentation_offload(ns: &Netns, ifname: &str) -> Result<()> {
    ns.exec(&["ethtool", "-K", ifname, "tso", "off", "gso", "off"])
        .with_context(|| format!("turning off TSO/GSO of {ifname} in {}", ns.name()))
        .map(drop)
}

/// Starts the `delayline` program in `ns` between `if_a` and `if_b` ([`prepare_wire`]d),
/// `delay` (to the microsecond) each way; waits until it forwards. Stopped on drop.
pub fn spawn_in(ns: &Netns, if_a: &str, if_b: &str, delay: Duration) -> Result<Proc> {
    let binary = binary()?;
    let binary = binary.to_str().context("delayline path is not UTF-8")?;
    let delay = format!("{:.3}", delay.as_secs_f64() * 1000.0);
    let mut proc = ns.spawn(&[binary, if_a, if_b, &delay])?;
    proc.wait_log(READY, Duration::from_secs(10))
        .with_context(|| format!("delayline {if_a} {if_b} in {} did not start", ns.name()))?;
    Ok(proc)
}

/// The `delayline` program: `$WARDEN_DELAYLINE`, else the workspace's debug build.
pub fn binary() -> Result<PathBuf> {
    let path = match std::env::var_os("WARDEN_DELAYLINE") {
        Some(p) => PathBuf::from(p),
        None => {
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
            target.join("debug/delayline")
        }
    };
    ensure!(
        path.is_file(),
        "delayline binary not found at {} (run `cargo build -p warden-tests --bins` or set \
         WARDEN_DELAYLINE)",
        path.display()
    );
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vlan_tag_the_kernel_took_off_goes_back_after_the_macs_and_moves_csum_start() {
        let mut buf = vec![0u8; VNET_HDR_LEN + 64];
        buf[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM;
        buf[6..8].copy_from_slice(&34u16.to_le_bytes()); // csum_start: TCP header
        buf[8..10].copy_from_slice(&16u16.to_le_bytes()); // csum_offset
        let frame: Vec<u8> = (0..60).collect();
        buf[VNET_HDR_LEN..VNET_HDR_LEN + 60].copy_from_slice(&frame);
        let received = Received {
            len: 60,
            truncated: false,
            gso: false,
            vlan: Some((0x8100, 0x6007)),
        };
        let data = received.frame(&buf);
        assert_eq!(data.len(), received.size());
        assert_eq!(u16::from_le_bytes([data[6], data[7]]), 38);
        assert_eq!(&data[8..10], &16u16.to_le_bytes());
        let out = &data[VNET_HDR_LEN..];
        assert_eq!(&out[..12], &frame[..12]);
        assert_eq!(&out[12..16], &[0x81, 0x00, 0x60, 0x07]);
        assert_eq!(&out[16..], &frame[12..]);
    }

    #[test]
    fn an_untagged_frame_is_queued_exactly_as_received() {
        let mut buf = vec![0u8; VNET_HDR_LEN + 100];
        buf[..VNET_HDR_LEN + 60]
            .iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b = i as u8);
        let received = Received {
            len: 60,
            truncated: false,
            gso: false,
            vlan: None,
        };
        assert_eq!(received.frame(&buf), buf[..VNET_HDR_LEN + 60].to_vec());
        assert_eq!(received.size(), VNET_HDR_LEN + 60);
    }
}

// Named `lab` because these tests need root: `cargo xtask test --skip-privileged` leaves
// out every test whose path contains `lab::`.
#[cfg(test)]
mod lab {
    use std::time::Duration;

    use anyhow::{ensure, Context as _, Result};

    use crate::{
        lab::Netns,
        topology::{addr, LabOptions, StandardLab},
    };

    /// Average round trip of `ping -c 20 -i 0.05` from `ns`, after one ping that
    /// warms the path; fails on any loss.
    fn avg_rtt_ms(ns: &Netns, dest: &str) -> Result<f64> {
        ns.exec(&["ping", "-c", "1", "-W", "2", dest])?;
        let out = ns.exec_timeout(
            &["ping", "-c", "20", "-i", "0.05", "-W", "2", dest],
            Duration::from_secs(20),
        )?;
        let text = String::from_utf8_lossy(&out.stdout);
        ensure!(
            text.contains(" 0% packet loss"),
            "ping lost packets:\n{text}"
        );
        // rtt min/avg/max/mdev = 10.195/10.309/10.634/0.101 ms
        let stats = text
            .lines()
            .find_map(|l| l.split_once(" = ").filter(|(k, _)| k.starts_with("rtt")))
            .with_context(|| format!("no rtt line in:\n{text}"))?
            .1;
        stats
            .split('/')
            .nth(1)
            .and_then(|avg| avg.parse().ok())
            .with_context(|| format!("bad rtt line {stats:?}"))
    }

    #[test]
    fn lab_standard_lab_with_5ms_wan_delay_has_10ms_round_trips() -> Result<()> {
        let lab = StandardLab::build_with(
            "wdt",
            LabOptions {
                wan_delay_ms: Some(5),
            },
        )?;
        // Across wan1, routed by the node (the gateway tenants' path).
        for dest in [addr::EXT_WAN1_V4, addr::EXT_WAN1_V6] {
            let rtt = avg_rtt_ms(&lab.globex, dest)?;
            assert!((9.0..=20.0).contains(&rtt), "globex -> {dest}: {rtt} ms");
        }
        // Across wan0, the node's own (acme's) link.
        let rtt = avg_rtt_ms(&lab.node, addr::EXT_WAN0_V4)?;
        assert!((9.0..=20.0).contains(&rtt), "node -> ext eth0: {rtt} ms");
        Ok(())
    }
}
