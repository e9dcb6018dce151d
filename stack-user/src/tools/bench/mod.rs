//! Every benchmark, run from the `xstack` binary: `xstack bench` (xstack vs
//! the kernel: load generators and servers), `xstack bench synflood`,
//! `cookies`, `soak`, `concurrency` (kept-alive connections held, and
//! their memory, vs the kernel), `rx` (AF_XDP receive rate vs the kernel), `bulk` (bulk
//! TCP throughput vs the kernel), `engine` (alias `tcp-mem`: two TCP engines in memory) and
//! `timer` (the timing wheel vs a binary heap). `family` is the
//! `--family 4|6|both` the kernel comparisons take.

pub mod bulk;
pub mod concurrency;
pub mod cookies;
pub mod engine;
pub mod family;
pub mod kernel;
pub mod rx;
pub mod soak;
pub mod synflood;
pub mod timer;
pub mod victim;

/// Writes `value` as pretty JSON to `OUT/name` (creating OUT); returns the
/// path. Every benchmark `cargo xtask bench` runs writes its figures so.
pub fn write_json(
    out: &std::path::Path,
    name: &str,
    value: &impl serde::Serialize,
) -> anyhow::Result<std::path::PathBuf> {
    use anyhow::Context;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let path = out.join(name);
    std::fs::write(&path, serde_json::to_string_pretty(value)? + "\n")
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}
