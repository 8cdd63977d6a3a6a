//! `raftmq-sim`: run one seed, or sweep a range of seeds.
//!
//! Every seed runs in a fresh process. Inside one process, tokio numbers
//! tasks from a global counter, and the order in which a crashed host's
//! tasks are dropped follows those numbers; a second run in the same process
//! would then see connection resets in another order. A fresh process per
//! seed makes `--seed N` replay exactly what a sweep saw.

use std::collections::BTreeMap;
use std::ops::Range;
use std::process::{Command, ExitCode};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::Parser;
use raftmq_node::planted::Bug;
use raftmq_sim::trace::Trace;
use raftmq_sim::{run, Report};
use serde_json::{json, Value};

#[derive(Parser)]
#[command(
    name = "raftmq-sim",
    version,
    about = "Deterministic simulation of a raftmq cluster under faults"
)]
struct Cli {
    /// Run this one seed, then again in a fresh process to check that the
    /// trace hash is the same.
    #[arg(long, conflicts_with = "seeds")]
    seed: Option<u64>,
    /// Sweep seeds A..B (B excluded), each in its own process.
    #[arg(long, value_parser = parse_range)]
    seeds: Option<Range<u64>>,
    /// In a sweep, run every Nth seed twice to check determinism.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    determinism_every: u64,
    /// Seeds run at once in a sweep.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=64))]
    jobs: u64,
    /// Print every event of the run to stderr as it happens.
    #[arg(long)]
    trace: bool,
    /// Print JSON (one object per seed, then a summary) instead of text.
    #[arg(long)]
    json: bool,
    /// Switch on a deliberate bug, to see a checker catch it (needs a build
    /// with `--features planted-bugs`).
    #[arg(long, value_parser = bug_parser())]
    plant: Option<Bug>,
    /// Run the seed once and print its JSON report (what sweeps call).
    #[arg(long, hide = true, requires = "seed")]
    once: bool,
}

fn parse_range(text: &str) -> Result<Range<u64>, String> {
    let (from, to) = text.split_once("..").ok_or("expected A..B")?;
    let from: u64 = from.parse().map_err(|_| format!("bad start {from:?}"))?;
    let to: u64 = to.parse().map_err(|_| format!("bad end {to:?}"))?;
    if from >= to {
        return Err(format!("empty range {text}"));
    }
    Ok(from..to)
}

/// The planted bugs by name, listed in `--help` from `Bug::ALL`.
fn bug_parser() -> impl TypedValueParser<Value = Bug> {
    PossibleValuesParser::new(Bug::ALL.map(Bug::name))
        .map(|name: String| Bug::from_name(&name).expect("every possible value names a bug"))
}

#[cfg(feature = "planted-bugs")]
fn plant(bug: Bug) -> Result<(), String> {
    raftmq_node::planted::plant(bug);
    Ok(())
}

#[cfg(not(feature = "planted-bugs"))]
fn plant(bug: Bug) -> Result<(), String> {
    Err(format!(
        "this build has no planted bugs; build with --features planted-bugs to plant {}",
        bug.name()
    ))
}

fn main() -> ExitCode {
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .init();
    }
    let cli = Cli::parse();
    if let Some(bug) = cli.plant {
        if let Err(e) = plant(bug) {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    }
    match (cli.seed, cli.seeds.clone()) {
        (Some(seed), _) if cli.once => {
            let report = run(seed, trace(&cli));
            println!("{}", report_json(&report));
            ExitCode::SUCCESS
        }
        (Some(seed), _) => single(&cli, seed),
        (None, Some(seeds)) => sweep(&cli, seeds),
        (None, None) => single(&cli, 42),
    }
}

fn trace(cli: &Cli) -> Trace {
    if cli.trace {
        Trace::echoing()
    } else {
        Trace::default()
    }
}

/// Runs `seed` here, then in a child process, and compares.
fn single(cli: &Cli, seed: u64) -> ExitCode {
    let started = Instant::now();
    let here = Ok(report_json(&run(seed, trace(cli))));
    let (report, problems) = judge(seed, here, Some(child(seed, cli.plant)));
    print_seed(&report, &problems, cli.json);
    summary(
        cli,
        1,
        u64::from(!problems.is_empty()),
        seconds(&report),
        started.elapsed(),
    )
}

/// Runs every seed of `seeds` in child processes, `--jobs` at a time: each
/// worker takes the next seed as soon as it is free, so one long seed does
/// not hold the others up. Reports print in seed order.
fn sweep(cli: &Cli, seeds: Range<u64>) -> ExitCode {
    let started = Instant::now();
    let (first, count) = (seeds.start, seeds.end - seeds.start);
    let queue = Arc::new(Mutex::new(seeds));
    let (done_tx, done) = mpsc::channel();
    for _ in 0..cli.jobs {
        let (queue, done_tx) = (queue.clone(), done_tx.clone());
        let (plant, every) = (cli.plant, cli.determinism_every);
        std::thread::spawn(move || {
            while let Some(seed) = next_seed(&queue) {
                let recheck = (seed - first).is_multiple_of(every);
                let runs = (child(seed, plant), recheck.then(|| child(seed, plant)));
                if done_tx.send((seed, runs)).is_err() {
                    return;
                }
            }
        });
    }
    drop(done_tx);
    let (mut failed, mut simulated) = (0, 0.0);
    let mut early = BTreeMap::new();
    let mut to_print = first;
    for (seed, runs) in done {
        early.insert(seed, runs);
        while let Some((first_run, second)) = early.remove(&to_print) {
            let (report, problems) = judge(to_print, first_run, second);
            simulated += seconds(&report);
            failed += u64::from(!problems.is_empty());
            print_seed(&report, &problems, cli.json);
            to_print += 1;
        }
    }
    summary(cli, count, failed, simulated, started.elapsed())
}

fn next_seed(queue: &Mutex<Range<u64>>) -> Option<u64> {
    queue.lock().unwrap_or_else(|p| p.into_inner()).next()
}

type ChildRun = Result<Value, String>;

/// A seed's report and its problems: its violations, and a trace hash that
/// differs in the second run if there was one.
fn judge(seed: u64, first: ChildRun, second: Option<ChildRun>) -> (Value, Vec<String>) {
    let (report, mut problems) = match first {
        Ok(report) => {
            let problems = problems(&report);
            (report, problems)
        }
        Err(e) => (json!({"seed": seed}), vec![e]),
    };
    match second {
        Some(Ok(again)) if again["trace_hash"] != report["trace_hash"] => problems.push(format!(
            "not deterministic: trace hash {} then {}",
            report["trace_hash"], again["trace_hash"]
        )),
        Some(Err(e)) => problems.push(e),
        _ => {}
    }
    (report, problems)
}

/// Runs one seed in a fresh process and reads its JSON report.
fn child(seed: u64, bug: Option<Bug>) -> ChildRun {
    let exe = std::env::current_exe().map_err(|e| format!("finding own binary: {e}"))?;
    let plant = bug
        .map(|bug| vec!["--plant", bug.name()])
        .unwrap_or_default();
    let output = Command::new(exe)
        .args(["--seed", &seed.to_string(), "--once"])
        .args(plant)
        .output()
        .map_err(|e| format!("running seed {seed}: {e}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(format!(
            "seed {seed} crashed ({}): {}",
            output.status,
            crash_cause(&stderr)
        ));
    }
    serde_json::from_slice(&output.stdout).map_err(|e| format!("seed {seed}: bad report: {e}"))
}

/// What a crashed run's stderr says went wrong: its first panic (the place
/// and the message under it), which a backtrace would push out of the
/// tail; else the last lines.
fn crash_cause(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().collect();
    match lines.iter().position(|line| line.contains("panicked at")) {
        Some(at) => lines[at..]
            .iter()
            .take(2)
            .copied()
            .collect::<Vec<_>>()
            .join(" "),
        None => {
            let tail: Vec<&str> = lines.iter().rev().take(20).rev().copied().collect();
            tail.join(" | ")
        }
    }
}

fn report_json(report: &Report) -> Value {
    json!({
        "seed": report.seed,
        "passed": report.passed(),
        "trace_hash": format!("{:016x}", report.trace_hash),
        "events": report.events,
        "simulated_s": report.simulated.as_secs_f64(),
        "wall_s": report.wall.as_secs_f64(),
        "faults": report.faults,
        "confirmed": report.confirmed,
        "delivered": report.delivered,
        "violations": report.violations,
        "recent": report.recent,
    })
}

fn problems(report: &Value) -> Vec<String> {
    report["violations"]
        .as_array()
        .map(|v| {
            v.iter()
                .filter_map(|p| p.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn seconds(report: &Value) -> f64 {
    report["simulated_s"].as_f64().unwrap_or(0.0)
}

fn print_seed(report: &Value, problems: &[String], json: bool) {
    let seed = &report["seed"];
    if json {
        let mut line = report.clone();
        line["passed"] = json!(problems.is_empty());
        line["violations"] = json!(problems);
        println!("{line}");
    } else {
        println!(
            "seed {seed}: {} trace {}, {} events, {:.1} simulated s in {:.2} wall s, {} faults, {} confirmed, {} delivered",
            if problems.is_empty() { "ok" } else { "FAILED" },
            report["trace_hash"].as_str().unwrap_or("?"),
            report["events"],
            seconds(report),
            report["wall_s"].as_f64().unwrap_or(0.0),
            report["faults"],
            report["confirmed"],
            report["delivered"],
        );
    }
    if problems.is_empty() {
        return;
    }
    eprintln!("seed {seed} failed:");
    for problem in problems {
        eprintln!("  - {problem}");
    }
    eprintln!("last events:");
    for event in report["recent"].as_array().into_iter().flatten() {
        eprintln!("  {}", event.as_str().unwrap_or_default());
    }
    eprintln!("replay: cargo run --release -p raftmq-sim -- --seed {seed} --trace");
}

fn summary(cli: &Cli, count: u64, failed: u64, simulated: f64, wall: Duration) -> ExitCode {
    let speed = simulated / wall.as_secs_f64().max(1e-9);
    if cli.json {
        println!(
            "{}",
            json!({"seeds": count, "failed": failed, "simulated_s": simulated, "wall_s": wall.as_secs_f64(), "simulated_per_wall_s": speed})
        );
    } else {
        println!(
            "{count} seeds, {failed} failed; {simulated:.0} simulated s in {:.1} wall s ({speed:.1} simulated s per wall s)",
            wall.as_secs_f64()
        );
    }
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::crash_cause;

    #[test]
    fn a_crash_is_named_by_its_first_panic() {
        let stderr = "warming up\n\
            thread 'main' (15494) panicked at openraft/src/vote/vote.rs:33:25:\n\
            internal error: two incomparable leaders can not be both committed\n\
            stack backtrace:\n   0: rust_begin_unwind\n\
            thread 'main' (15494) panicked at tokio/src/runtime.rs:722:40:\n\
            RefCell already borrowed\n";
        assert_eq!(
            crash_cause(stderr),
            "thread 'main' (15494) panicked at openraft/src/vote/vote.rs:33:25: \
             internal error: two incomparable leaders can not be both committed"
        );
        assert_eq!(crash_cause("a\nb\nKilled"), "a | b | Killed");
    }
}
