//! The generator threads: one run of a side (live frames through `BPF_PROG_TEST_RUN`,
//! arrivals read and checked) and one comparison in interleaved ABBA pairs.

use std::{
    sync::Barrier,
    time::{Duration, Instant},
};

use anyhow::{ensure, Context as _, Result};
use aya::{programs::Xdp, Ebpf, TestRun, TestRunAttrs, TestRunOptions};

use super::{
    figures::summed_rate,
    lab::{enter_netns, ifindex, pin_thread, raise_priority, thread_cpu_seconds, Lab},
    programs::{warden_counts, xdp},
    Comparison, Expect, Run, Rx, Side, BATCH, CHUNK, MIN_OVERLAP, RUN_LIMIT,
};

/// One generator run on the calling thread (already in the generator namespace and
/// pinned to `cpu`): `frames` live frames of `frame` out of `ifindex`.
pub(super) fn generate(
    prog: &Xdp,
    frame: &[u8],
    ifindex: u32,
    cpu: usize,
    frames: u32,
) -> Result<()> {
    let ctx = context(frame, ifindex, cpu);
    let opts = TestRunOptions {
        data_in: Some(frame),
        ctx_in: Some(&ctx),
        repeat: frames,
        attrs: TestRunAttrs::new().xdp_live_frames(BATCH),
        ..Default::default()
    };
    prog.test_run(opts)
        .context("BPF_PROG_TEST_RUN with live frames")?;
    Ok(())
}

/// The `struct xdp_md` of a generator call: data, data_end, data_meta, ingress_ifindex,
/// rx_queue_index, egress_ifindex. The frame is the whole of the data; the context's
/// receive queue is the CPU's (the veth has two).
fn context(frame: &[u8], ifindex: u32, cpu: usize) -> Vec<u8> {
    let words: [u32; 6] = [0, frame.len() as u32, 0, ifindex, (cpu % 2) as u32, 0];
    words.iter().flat_map(|w| w.to_ne_bytes()).collect()
}

/// Whether this kernel sends live frames at all, asked before any run: one generator
/// call of one frame exactly as a generator thread makes it (in the generator
/// namespace, out of `side`'s veth). `None`: it does. `Some(reason)`: the kernel
/// refuses the live-frames mode with EPERM while the same call without
/// `BPF_F_TEST_XDP_LIVE_FRAMES` runs, so the load cannot be generated and nothing of
/// this part can be measured; the reason names the errno and the kernel. Any other
/// failure (another errno, or the call failing without the flag too) is an error of the
/// bench, returned as such.
pub(super) fn live_frames_refused(ebpf: &Ebpf, lab: &Lab, side: &Side) -> Result<Option<String>> {
    let prog = xdp(ebpf, side.generator)?;
    let gen_if = side.rx.names().0;
    std::thread::scope(|s| {
        s.spawn(|| -> Result<Option<String>> {
            enter_netns(&lab.gen_ns)?;
            let index = ifindex(gen_if)?;
            let Err(live) = generate(prog, &side.frame, index, 0, 1) else {
                return Ok(None);
            };
            let refused = live
                .chain()
                .filter_map(|e| e.downcast_ref::<std::io::Error>())
                .any(|e| e.raw_os_error() == Some(libc::EPERM));
            if !refused {
                return Err(live);
            }
            let ctx = context(&side.frame, index, 0);
            prog.test_run(TestRunOptions {
                data_in: Some(&side.frame),
                ctx_in: Some(&ctx),
                repeat: 1,
                ..Default::default()
            })
            .context(
                "BPF_PROG_TEST_RUN without live frames (after the call with them was \
                 refused with EPERM)",
            )?;
            let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .context("reading /proc/sys/kernel/osrelease")?;
            Ok(Some(format!(
                "this kernel (Linux {}) refuses BPF_PROG_TEST_RUN with \
                 BPF_F_TEST_XDP_LIVE_FRAMES: EPERM (Operation not permitted, os error 1), \
                 while the same call of {} without the flag runs, so no live-frame load \
                 could be generated",
                kernel.trim(),
                side.generator
            )))
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the live-frames probe thread panicked"))?
    })
}

pub(super) struct Bench<'a> {
    pub(super) ebpf: &'a Ebpf,
    pub(super) lab: &'a Lab,
    pub(super) window: Duration,
}

impl Bench<'_> {
    /// One run of `side`: every generator thread sends for the window; returns what
    /// arrived.
    pub(super) fn run(&self, side: &Side) -> Result<Run> {
        let prog = xdp(self.ebpf, side.generator)?;
        let (before, lost_before) = self.lab.counts(side.rx)?;
        let warden_before = warden_counts(self.ebpf)?;
        let nft_before = match side.rx {
            Rx::Nft => self.lab.nft_count()?,
            _ => 0,
        };
        let barrier = Barrier::new(side.threads);
        let gen_if = side.rx.names().0;
        let (started, ended, threads) = std::thread::scope(|s| -> Result<_> {
            let handles: Vec<_> = (0..side.threads)
                .map(|cpu| {
                    let barrier = &barrier;
                    let frame = &side.frame;
                    s.spawn(move || -> Result<(Instant, Instant, f64, u64)> {
                        enter_netns(&self.lab.gen_ns)?;
                        pin_thread(cpu)?;
                        raise_priority()?;
                        let index = ifindex(gen_if)?;
                        barrier.wait();
                        let t = Instant::now();
                        let cpu_before = thread_cpu_seconds()?;
                        let mut sent = 0;
                        let end = loop {
                            generate(prog, frame, index, cpu, CHUNK)?;
                            sent += u64::from(CHUNK);
                            let now = Instant::now();
                            if now.duration_since(t) >= self.window {
                                break now;
                            }
                        };
                        let busy = thread_cpu_seconds()? - cpu_before;
                        Ok((t, end, busy, sent))
                    })
                })
                .collect();
            let mut threads = Vec::new();
            for h in handles {
                threads.push(
                    h.join()
                        .map_err(|_| anyhow::anyhow!("a generator thread panicked"))??,
                );
            }
            let started = threads.iter().map(|t| t.0).min();
            let ended = threads.iter().map(|t| t.1).max();
            Ok((
                started.context("no generator thread")?,
                ended.context("no generator thread")?,
                threads,
            ))
        })?;
        // A thread's time ends when its last call returns: by then its CPU has run the
        // receiving NAPI for every batch it sent (softirq on leaving each batch). Only
        // `ethtool -S` runs after that (a process each, milliseconds), so its time is
        // no run's. Anything still on a ring (at most a ring per queue) is taken off
        // right after: read until the count stands, and count it as `late`.
        let first = self.lab.counts(side.rx)?.0;
        let mut after = first.clone();
        for _ in 0..50 {
            std::thread::sleep(Duration::from_millis(2));
            let now = self.lab.counts(side.rx)?.0;
            if now == after {
                break;
            }
            after = now;
        }
        let late = after.iter().sum::<u64>() - first.iter().sum::<u64>();
        // The threads' rates add up to what the CPUs do together only if they sent
        // together: the time all of them were sending must be nearly all of each one's.
        let overlap = match (
            threads.iter().map(|t| t.1).min(),
            threads.iter().map(|t| t.0).max(),
        ) {
            (Some(first_end), Some(last_start)) => first_end.duration_since(last_start),
            _ => Duration::ZERO,
        };
        let longest = threads
            .iter()
            .map(|(t, end, _, _)| end.duration_since(*t))
            .max()
            .unwrap_or_default();
        ensure!(
            overlap.as_secs_f64() >= MIN_OVERLAP * longest.as_secs_f64(),
            "{}: the generator threads sent together for {overlap:?} of up to {longest:?} \
             (less than {:.0}%): their rates do not add up to a rate of the CPUs together",
            side.label,
            MIN_OVERLAP * 100.0
        );
        let thread_seconds: Vec<f64> = threads
            .iter()
            .map(|(t, end, _, _)| end.duration_since(*t).as_secs_f64())
            .collect();
        let thread_sent: Vec<u64> = threads.iter().map(|t| t.3).collect();
        let share = threads
            .iter()
            .zip(&thread_seconds)
            .map(|((_, _, busy, _), s)| busy / s)
            .sum::<f64>()
            / threads.len() as f64;
        ensure!(
            after.len() == before.len(),
            "{}: the receiver's queues changed during the run",
            side.label
        );
        let per_queue: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
        let seconds = ended.duration_since(started).as_secs_f64();
        ensure!(
            seconds < RUN_LIMIT.as_secs_f64(),
            "{}: a run took {seconds:.1} s (limit {RUN_LIMIT:?}): the receiver stalls",
            side.label
        );
        // Thread i runs on CPU i and feeds receive queue i (the veth picks the queue by
        // the sending CPU): each queue's arrivals are its thread's, and a queue no
        // thread feeds stays still.
        let queue_of = |cpu: usize| cpu % per_queue.len();
        for (q, &n) in per_queue.iter().enumerate() {
            let fed_by = (0..side.threads).find(|&cpu| queue_of(cpu) == q);
            ensure!(
                match fed_by {
                    Some(cpu) => n > 0 && n <= thread_sent[cpu],
                    None => n == 0,
                },
                "{}: receive queue {q} took {n} frames, but its generator thread sent {} \
                 (arrivals per queue {per_queue:?}, sent per thread {thread_sent:?}): the \
                 load did not go to the queue of its CPU",
                side.label,
                fed_by.map_or(0, |cpu| thread_sent[cpu]),
            );
        }
        let mpps = summed_rate(&per_queue, &thread_seconds);
        let (_, lost_after) = self.lab.counts(side.rx)?;
        let run = Run {
            mpps,
            arrived: per_queue.iter().sum(),
            per_queue,
            cpu_share: share,
            lost: lost_after - lost_before,
            seconds,
            thread_seconds,
            thread_sent,
            late,
        };
        let sent: u64 = run.thread_sent.iter().sum();
        ensure!(
            run.arrived > 0 && run.arrived + run.lost <= sent,
            "{}: {sent} frames sent, {} arrived and {} refused by the rings",
            side.label,
            run.arrived,
            run.lost
        );
        let (passed, dropped) = warden_counts(self.ebpf)?;
        let moved = (passed - warden_before.0, dropped - warden_before.1);
        let want = match side.expect {
            Expect::Passed => (run.arrived, 0),
            Expect::Dropped => (0, run.arrived),
            Expect::Other => (0, 0),
        };
        ensure!(
            moved == want,
            "{}: {} frames arrived, but Warden counted {} passed to the metered tenant and \
             {} dropped for bandwidth (expected {} and {}): the run did not take the path \
             it names",
            side.label,
            run.arrived,
            moved.0,
            moved.1,
            want.0,
            want.1
        );
        if side.rx == Rx::Nft {
            let dropped = self.lab.nft_count()? - nft_before;
            ensure!(
                dropped == run.arrived,
                "{}: {} frames arrived, the nftables rule dropped {dropped}",
                side.label,
                run.arrived
            );
        }
        Ok(run)
    }

    /// `pairs` interleaved (baseline, case) runs in ABBA order.
    pub(super) fn compare(&self, c: &Comparison, pairs: u32) -> Result<(Vec<Run>, Vec<Run>)> {
        // Warm-up of both sides, not recorded.
        self.run(&c.baseline)?;
        self.run(&c.case)?;
        let (mut base, mut case) = (Vec::new(), Vec::new());
        for pair in 0..pairs {
            if pair % 2 == 0 {
                base.push(self.run(&c.baseline)?);
                case.push(self.run(&c.case)?);
            } else {
                case.push(self.run(&c.case)?);
                base.push(self.run(&c.baseline)?);
            }
        }
        Ok((case, base))
    }
}
