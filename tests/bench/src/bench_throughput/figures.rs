//! The figures: the compute-scaling reference, a run's summed rate, medians, CPU share
//! and per-pair ratios.

pub(super) use crate::util::median;
use std::{sync::Barrier, time::Instant};

use anyhow::Result;

use super::{lab::pin_thread, Run};

/// Runs of the compute-scaling reference.
pub(super) const SCALING_RUNS: usize = 5;

/// `rounds` of CPU-bound integer work: 8 independent multiply-add chains (enough in
/// flight to fill a core's integer units), nothing beyond the first-level cache.
pub(super) fn compute_work(rounds: u64) -> u64 {
    let mut x = [1u64, 2, 3, 4, 5, 6, 7, 8];
    for i in 0..std::hint::black_box(rounds) {
        for (k, v) in x.iter_mut().enumerate() {
            *v = v.wrapping_mul(3 + 2 * k as u64).wrapping_add(i);
        }
    }
    x.iter().fold(0, |a, v| a ^ v)
}

/// Seconds `compute_work(rounds)` takes on each of `cpus` at once (the slowest).
pub(super) fn timed_work(cpus: &[usize], rounds: u64) -> Result<f64> {
    let barrier = Barrier::new(cpus.len());
    std::thread::scope(|s| {
        let handles: Vec<_> = cpus
            .iter()
            .map(|&cpu| {
                let barrier = &barrier;
                s.spawn(move || -> Result<f64> {
                    pin_thread(cpu)?;
                    barrier.wait();
                    let t = Instant::now();
                    std::hint::black_box(compute_work(rounds));
                    Ok(t.elapsed().as_secs_f64())
                })
            })
            .collect();
        let mut slowest: f64 = 0.0;
        for h in handles {
            let t = h
                .join()
                .map_err(|_| anyhow::anyhow!("a compute thread panicked"))??;
            slowest = slowest.max(t);
        }
        Ok(slowest)
    })
}

/// Work done per second by CPUs 0 and 1 together over CPU 0 alone (2.0: two whole
/// cores); median of [`SCALING_RUNS`] interleaved (one, two) runs.
pub(super) fn compute_scaling() -> Result<f64> {
    // Rounds for about 0.3 s on one CPU, whatever the build's optimisation.
    let probe = 1_000_000;
    let t = timed_work(&[0], probe)?.max(1e-6);
    let rounds = ((probe as f64) * 0.3 / t).clamp(probe as f64, 1e10) as u64;
    let mut ratios = Vec::new();
    for _ in 0..SCALING_RUNS {
        let one = timed_work(&[0], rounds)?;
        let two = timed_work(&[0, 1], rounds)?;
        ratios.push(2.0 * one / two);
    }
    Ok(median(&ratios))
}

/// Mpps of a run: the sum over the generator threads (thread i on CPU i feeds receive
/// queue i modulo the queues) of its queue's arrivals over its own seconds.
pub(super) fn summed_rate(per_queue: &[u64], thread_seconds: &[f64]) -> f64 {
    thread_seconds
        .iter()
        .enumerate()
        .map(|(cpu, s)| per_queue[cpu % per_queue.len()] as f64 / s)
        .sum::<f64>()
        / 1e6
}

/// Medians of one side: (Mpps, packets arrived, refused by the rings, seconds).
pub(super) fn side_medians(runs: &[Run]) -> (f64, f64, f64, f64) {
    let col = |f: fn(&Run) -> f64| median(&runs.iter().map(f).collect::<Vec<_>>());
    (
        col(Run::mpps),
        col(|r| r.arrived as f64),
        col(|r| r.lost as f64),
        col(|r| r.seconds),
    )
}

/// Median CPU share of the generator threads over a side's runs.
pub(super) fn cpu_share(runs: &[Run]) -> f64 {
    median(&runs.iter().map(|r| r.cpu_share).collect::<Vec<_>>())
}

/// Median of the per-pair ratios case / baseline.
pub(super) fn pair_ratio(case: &[Run], base: &[Run]) -> f64 {
    let r: Vec<f64> = case
        .iter()
        .zip(base)
        .map(|(c, b)| c.mpps() / b.mpps())
        .collect();
    median(&r)
}
