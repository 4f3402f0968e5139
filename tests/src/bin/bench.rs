//! The benchmark: the operator agent against direct access and against stunnel4, nginx and HAProxy.
//! Run with `cargo run --release -p netclaw-tests --bin bench`; writes `docs/benchmarks.md`.
//!
//! Flags: `--quick` (short windows, prints the report instead of writing it), `--out PATH`,
//! `--profile` / `--no-profile` (default: profile the agent with perf when a target is missed),
//! `--agent PATH` (benchmark another agent build, to compare a change), `--rounds N` (rounds per
//! cell, to firm up a quick comparison).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use netclaw_tests::bench::{report, suite, Options};

/// Hand-written findings appended to the generated report.
const FINDINGS: &str = include_str!("../bench/findings.md");

fn main() -> Result<()> {
    let mut options = Options::full();
    let mut quick = false;
    let mut out: Option<PathBuf> = None;
    let mut profile = None;
    let mut agent: Option<PathBuf> = None;
    let mut rounds: Option<usize> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => quick = true,
            "--out" => out = Some(args.next().context("--out needs a path")?.into()),
            "--agent" => agent = Some(args.next().context("--agent needs a path")?.into()),
            "--rounds" => {
                let n = args.next().context("--rounds needs a number")?;
                match n.parse::<usize>() {
                    Ok(n) if n > 0 => rounds = Some(n),
                    _ => bail!("--rounds needs a whole number of at least 1, not {n:?}"),
                }
            }
            "--profile" => profile = Some(true),
            "--no-profile" => profile = Some(false),
            "-h" | "--help" => {
                println!(
                    "usage: bench [--quick] [--out PATH] [--profile|--no-profile] [--agent PATH] [--rounds N]\n\
                     Measures the operator agent against direct access, stunnel4, nginx and HAProxy and \
                     writes docs/benchmarks.md (with --quick: prints it). --agent runs another \
                     netclaw-operator-agent binary (to compare a change); --rounds sets the rounds \
                     per cell (5, or 1 with --quick)."
                );
                return Ok(());
            }
            other => bail!("unknown argument {other:?}; see --help"),
        }
    }
    if quick {
        options = Options::quick();
    }
    if let Some(n) = rounds {
        options.rounds = n;
    }
    if profile.is_some() {
        options.profile = profile;
    }
    options.agent = agent;
    let results = suite::run(options)?;
    let text = report::render(&results, FINDINGS);
    let out = out
        .or_else(|| (!quick).then(|| netclaw_tests::workspace_root().join("docs/benchmarks.md")));
    match out {
        Some(path) => {
            std::fs::write(&path, &text).with_context(|| format!("writing {}", path.display()))?;
            eprintln!(
                "bench: wrote {} ({:.0} s)",
                path.display(),
                results.wall.as_secs_f64()
            );
        }
        None => print!("{text}"),
    }
    Ok(())
}
