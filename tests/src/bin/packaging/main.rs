//! `netclaw-packaging OUT_DIR` (`cargo run -p netclaw-tests --bin netclaw-packaging`, run by
//! `.ci/deb`): writes the man pages (`OUT_DIR/man/*.1`) and the bash, zsh and
//! fish completions (`OUT_DIR/completions/`) of `netclaw`, `netclaw-daemon` and
//! `netclaw-operator-agent` from their clap definitions, for the Debian package (`.ci/deb`).

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap_complete::Shell;

/// The three programs' command-line definitions, in the order their pages are written.
fn commands() -> Vec<clap::Command> {
    vec![
        netclaw_cli::args::command(),
        <netclaw_daemon::Args as clap::CommandFactory>::command(),
        <netclaw_operator_agent::Args as clap::CommandFactory>::command(),
    ]
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args_os().skip(1);
    let (Some(out), None) = (args.next(), args.next()) else {
        anyhow::bail!("usage: netclaw-packaging OUT_DIR");
    };
    let written = generate(Path::new(&out))?;
    for path in written {
        println!("{}", path.display());
    }
    Ok(())
}

/// Writes every page and completion file under `out`; returns their paths.
fn generate(out: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let man = out.join("man");
    let completions = out.join("completions");
    for dir in [&man, &completions] {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut written = Vec::new();
    let programs: Vec<String> = commands().iter().map(|c| c.get_name().to_owned()).collect();
    for cmd in commands() {
        man_pages(cmd, &man, &programs, &mut written)?;
    }
    let mut cli = netclaw_cli::args::command();
    for (shell, file) in [
        (Shell::Bash, "netclaw"),
        (Shell::Zsh, "_netclaw"),
        (Shell::Fish, "netclaw.fish"),
    ] {
        let path = completions.join(file);
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut cli, "netclaw", &mut buf);
        std::fs::write(&path, buf).with_context(|| format!("writing {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

/// A page for `cmd` and, git-style (`netclaw-pki-rotate.1`), for each of its subcommands. A
/// subcommand whose page name is a program's (`netclaw daemon` against `netclaw-daemon`) gets no
/// page of its own: the parent's page lists it and its subcommands have theirs.
fn man_pages(
    mut cmd: clap::Command,
    dir: &Path,
    programs: &[String],
    written: &mut Vec<PathBuf>,
) -> anyhow::Result<()> {
    cmd.build();
    page(&cmd, dir, written)?;
    subcommand_pages(&cmd, dir, programs, written)
}

fn subcommand_pages(
    cmd: &clap::Command,
    dir: &Path,
    programs: &[String],
    written: &mut Vec<PathBuf>,
) -> anyhow::Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        if sub.get_name() == "help" {
            continue;
        }
        let name = sub.get_display_name().unwrap_or(sub.get_name());
        if !programs.iter().any(|p| p == name) {
            page(sub, dir, written)?;
        }
        subcommand_pages(sub, dir, programs, written)?;
    }
    Ok(())
}

fn page(cmd: &clap::Command, dir: &Path, written: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let man = clap_mangen::Man::new(cmd.clone());
    let path = dir.join(man.get_filename());
    let mut buf = Vec::new();
    man.render(&mut buf)?;
    std::fs::write(&path, buf).with_context(|| format!("writing {}", path.display()))?;
    written.push(path);
    Ok(())
}

#[cfg(test)]
mod tests;
