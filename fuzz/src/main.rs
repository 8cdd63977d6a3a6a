//! `raftmq-fuzz`: mutation fuzzing of what raftmq decodes from outside,
//! for a bounded time per target. cargo-fuzz needs a nightly toolchain;
//! this runs on stable, in CI, with the same idea: valid inputs mutated a
//! little at a time (`mutate`), fed to the real decoders.
//!
//! ```sh
//! cargo run --release -p raftmq-fuzz -- --secs 3600          # every target, an hour each
//! cargo run --release -p raftmq-fuzz -- machine --seed 7     # one target, another seed
//! ```
//!
//! A panic anywhere in the process (a node's tasks included), a hang, or a
//! broken invariant fails the run; it prints the target, seed and case to
//! run again.

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use rand::rngs::StdRng;
use rand::SeedableRng;

mod disk;
mod machine;
mod mutate;
mod node;
mod requests;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Target {
    /// Command sequences applied to the state machine.
    Machine,
    /// Data directories with a log segment, the snapshot or an import mutated.
    Disk,
    /// Public requests sent to a running node.
    Requests,
}

#[derive(Parser)]
#[command(
    name = "raftmq-fuzz",
    about = "Mutation fuzzing of raftmq's decoders, for a bounded time"
)]
struct Cli {
    /// Targets to run [default: all].
    #[arg(value_enum)]
    targets: Vec<Target>,
    /// Seconds per target.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    secs: u64,
    /// Seed of the inputs: the same seed makes the same inputs.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print one JSON line per target instead of a table.
    #[arg(long)]
    json: bool,
}

/// Panics seen in this process, and the first one's message.
static PANICS: AtomicU64 = AtomicU64::new(0);
static FIRST_PANIC: Mutex<Option<String>> = Mutex::new(None);

fn count_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if PANICS.fetch_add(1, Ordering::SeqCst) == 0 {
            *FIRST_PANIC.lock().unwrap_or_else(|e| e.into_inner()) = Some(info.to_string());
        }
        default(info);
    }));
}

fn panicked() -> Option<String> {
    (PANICS.load(Ordering::SeqCst) > 0).then(|| {
        FIRST_PANIC
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .unwrap_or_default()
    })
}

/// What one target did.
struct Report {
    target: Target,
    cases: u64,
    /// Cases whose input got past decoding (applied, started, sent).
    accepted: u64,
    secs: f64,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RAFTMQ_LOG")
                .unwrap_or_else(|_| "off".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    count_panics();
    let cli = Cli::parse();
    let targets = match cli.targets.is_empty() {
        true => vec![Target::Machine, Target::Disk, Target::Requests],
        false => cli.targets.clone(),
    };
    if !cli.json {
        println!("TARGET    CASES  ACCEPTED  SECONDS");
    }
    for target in targets {
        let budget = Duration::from_secs(cli.secs);
        let seed = cli.seed ^ (target as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let result = run(target, seed, budget).await;
        let failure = match (result, panicked()) {
            (_, Some(panic)) => Some(format!("panicked: {panic}")),
            (Err(failure), None) => Some(failure),
            (Ok(report), None) => {
                print_report(&report, cli.json);
                None
            }
        };
        if let Some(failure) = failure {
            eprintln!("FAILED {target:?} (seed {}): {failure}", cli.seed);
            eprintln!(
                "again: cargo run --release -p raftmq-fuzz -- {} --seed {} --secs {}",
                format!("{target:?}").to_lowercase(),
                cli.seed,
                cli.secs
            );
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

fn print_report(report: &Report, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::json!({
                "target": format!("{:?}", report.target).to_lowercase(),
                "cases": report.cases,
                "accepted": report.accepted,
                "secs": report.secs,
            })
        );
    } else {
        println!(
            "{:<8}  {:>5}  {:>8}  {:>7.1}",
            format!("{:?}", report.target).to_lowercase(),
            report.cases,
            report.accepted,
            report.secs
        );
    }
}

async fn run(target: Target, seed: u64, budget: Duration) -> Result<Report, String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let started = Instant::now();
    let more = || started.elapsed() < budget && PANICS.load(Ordering::SeqCst) == 0;
    let (mut cases, mut accepted) = (0u64, 0u64);
    match target {
        Target::Machine => {
            let log = machine::corpus();
            let encoded = machine::encoded(&log);
            while more() {
                cases += 1;
                let case = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    machine::run(&mut rng, &log, &encoded)
                }));
                match case {
                    Ok(Ok(decoded)) => accepted += decoded as u64,
                    Ok(Err(broken)) => return Err(format!("case {cases}: {broken}")),
                    Err(_) => return Err(format!("case {cases} panicked")),
                }
            }
        }
        Target::Disk => {
            let dir = tempfile::TempDir::new().map_err(|e| e.to_string())?;
            let prepared = dir.path().join("prepared");
            disk::prepare(&prepared).await?;
            if disk::ours(&prepared).is_empty() {
                return Err("the prepared data directory has no files to mutate".to_string());
            }
            let scratch = dir.path().join("case");
            while more() {
                cases += 1;
                match disk::run(&mut rng, &prepared, &scratch).await {
                    Ok(started) => accepted += u64::from(started),
                    Err(failure) => return Err(format!("case {cases}: {failure}")),
                }
            }
        }
        Target::Requests => {
            let dir = tempfile::TempDir::new().map_err(|e| e.to_string())?;
            let running = node::start(dir.path(), 20_000).await?;
            if !running.settle(Duration::from_secs(10)).await {
                return Err("the node did not lead".to_string());
            }
            let mut counted = || {
                cases += 1;
                more()
            };
            accepted = requests::run(&mut rng, &running.addr, &mut counted).await?;
            // Still answering, and its state whole.
            let answered = raftmq_client::Client::connect(vec![running.addr.clone()])
                .map_err(|e| e.to_string())?
                .cluster_status(&running.addr)
                .await;
            let state = running.node.read_state(|state| state.check_invariants());
            running.stop().await;
            answered.map_err(|e| format!("the node stopped answering: {e}"))?;
            state.map_err(|broken| format!("the node's state broke: {broken}"))?;
        }
    }
    Ok(Report {
        target,
        cases,
        accepted,
        secs: started.elapsed().as_secs_f64(),
    })
}
