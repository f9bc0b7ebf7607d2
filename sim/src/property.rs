//! Property runs: one scenario over many seeds, its invariants checked
//! after each, any failure reported with the command that replays it.
//!
//! Environment variables:
//! - `SIM_SEED=N` runs seed `N` alone, printing its event log as it goes
//!   (the replay of a failure);
//! - `SIM_SEEDS=M` runs `M` seeds instead of the scenario's default (the
//!   soak: `SIM_SEEDS=10000`), from `SIM_FIRST_SEED` (default 0).

use std::time::{Duration, Instant};

use crate::{Report, SimBuilder};

/// What a scenario run says: `Ok` or the invariant that broke.
pub type Verdict = Result<(), String>;

/// A scenario's figures over the seeds it ran.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Seeds run.
    pub seeds: u64,
    /// Simulated time, summed over the seeds.
    pub simulated: Duration,
    /// Wall-clock time the runs took.
    pub wall: Duration,
    /// Events recorded, summed over the seeds.
    pub events: u64,
}

impl Summary {
    /// Simulated seconds per wall-clock second.
    pub fn speedup(&self) -> f64 {
        self.simulated.as_secs_f64() / self.wall.as_secs_f64().max(1e-9)
    }

    /// Seeds per wall-clock minute.
    pub fn seeds_per_minute(&self) -> f64 {
        self.seeds as f64 * 60.0 / self.wall.as_secs_f64().max(1e-9)
    }
}

/// The seeds a run covers: `SIM_SEED` alone, or `SIM_SEEDS` (else
/// `default_count`) from `SIM_FIRST_SEED` (else 0).
pub fn seeds(default_count: u64) -> (std::ops::Range<u64>, bool) {
    let number = |name: &str| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    if let Some(seed) = number("SIM_SEED") {
        return (seed..seed.saturating_add(1), true);
    }
    let first = number("SIM_FIRST_SEED").unwrap_or(0);
    let count = number("SIM_SEEDS").unwrap_or(default_count);
    (first..first.saturating_add(count), false)
}

/// The first failing seed of `seeds`, with its verdict and report.
pub fn find_failure<F>(
    seeds: impl IntoIterator<Item = u64>,
    echo: bool,
    run: F,
) -> (Summary, Option<(u64, String, Report<Verdict>)>)
where
    F: Fn(SimBuilder) -> Report<Verdict>,
{
    let started = Instant::now();
    let mut summary = Summary {
        seeds: 0,
        simulated: Duration::ZERO,
        wall: Duration::ZERO,
        events: 0,
    };
    for seed in seeds {
        let report = run(SimBuilder::new(seed).echo(echo));
        summary.seeds += 1;
        summary.simulated += report.simulated;
        summary.events += report.events;
        let failure = match &report.outcome {
            None => Some("the scenario did not finish (hung)".to_owned()),
            Some(Err(reason)) => Some(reason.clone()),
            Some(Ok(())) => None,
        };
        if let Some(reason) = failure {
            summary.wall = started.elapsed();
            return (summary, Some((seed, reason, report)));
        }
    }
    summary.wall = started.elapsed();
    (summary, None)
}

/// Runs `run` over the seeds of [`seeds`]`(default_count)` and panics at
/// the first whose invariants fail, naming the seed, the broken invariant,
/// the last events and `replay` (the test's command line) with the seed.
pub fn check<F>(scenario: &str, replay: &str, default_count: u64, run: F) -> Summary
where
    F: Fn(SimBuilder) -> Report<Verdict>,
{
    check_share(scenario, replay, default_count, (0, 1), run)
}

/// As [`check`], over share `part` of `parts` of the seeds (every
/// `parts`-th seed from the `part`-th): tests that each take one share run
/// on threads of their own, so one range of seeds uses every core. A
/// single `SIM_SEED` runs in share 0 alone.
pub fn check_share<F>(
    scenario: &str,
    replay: &str,
    default_count: u64,
    (part, parts): (u64, u64),
    run: F,
) -> Summary
where
    F: Fn(SimBuilder) -> Report<Verdict>,
{
    let (range, echo) = seeds(default_count);
    let single = echo.then_some(range.start);
    let parts = parts.max(1);
    let share = range.filter(|seed| match single {
        Some(_) => part == 0,
        None => seed % parts == part,
    });
    let (summary, failure) = find_failure(share, echo, |builder| {
        let report = run(builder);
        if let Some(seed) = single {
            eprintln!(
                "{scenario}: seed {seed}: {} events, log hash {}",
                report.events, report.hash
            );
        }
        report
    });
    if let Some((seed, reason, report)) = failure {
        panic!(
            "{scenario}: seed {seed} failed: {reason}\nlast events:\n  {}\nreplay with: SIM_SEED={seed} {replay}",
            report.tail.join("\n  ")
        );
    }
    eprintln!(
        "{scenario}: {} seeds passed; {:.0} s simulated in {:.1} s ({:.0}x, {:.0} seeds/min, {} events)",
        summary.seeds,
        summary.simulated.as_secs_f64(),
        summary.wall.as_secs_f64(),
        summary.speedup(),
        summary.seeds_per_minute(),
        summary.events
    );
    summary
}
