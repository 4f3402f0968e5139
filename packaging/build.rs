//! Copies the three binaries' `main.rs` into `OUT_DIR` without their inner doc comments, so that
//! `src/main.rs` can `include!` them inside a module and reach their private clap types.
//!
//! Interim: once the CLI's clap types are public in `netclaw_cli` (a `command()` function), the
//! CLI's copy goes; the daemon's and the agent's `Args` are one `--config` flag each.

use std::path::Path;

fn main() {
    let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    for (name, src) in [
        ("netclaw", "../cli/src/main.rs"),
        ("netclaw_daemon", "../daemon/src/main.rs"),
        ("netclaw_operator_agent", "../operator-agent/src/main.rs"),
    ] {
        println!("cargo:rerun-if-changed={src}");
        let text = std::fs::read_to_string(src).expect("read a binary's main.rs");
        // Without the inner doc comments (not allowed in `include!`) and the unit tests (they run
        // in their own crate).
        let body: String = text
            .lines()
            .take_while(|l| l.trim() != "#[cfg(test)]")
            .filter(|l| !l.trim_start().starts_with("//!"))
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(Path::new(&out).join(format!("{name}_main.rs")), body)
            .expect("write to OUT_DIR");
    }
}
