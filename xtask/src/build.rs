//! `cargo xtask build`: the XDP object (nightly, `bpfel-unknown-none`,
//! `-Z build-std=core`), then `xstack` (stable), which embeds it.

use std::{path::PathBuf, process::Command};

use anyhow::Result;

use crate::util::{nightly, root, run};

/// Where the XDP object is built.
pub fn bpf_object() -> PathBuf {
    root().join("target/bpf/bpfel-unknown-none/release/stack-ebpf")
}

/// Builds both halves; returns the path of the `xstack` binary.
pub fn build(release: bool) -> Result<PathBuf> {
    let root = root();
    println!("build: XDP program (nightly, bpfel-unknown-none)");
    let rustflags = [
        "--cfg=bpf_target_arch=\"x86_64\"",
        "-Cdebuginfo=2",
        "-Clink-arg=--btf",
    ]
    .join("\x1f");
    run(nightly("cargo")
        .current_dir(&root)
        .args(["build", "--package", "stack-ebpf", "--bin", "stack-ebpf"])
        .args([
            "--target",
            "bpfel-unknown-none",
            "-Z",
            "build-std=core",
            "--release",
        ])
        .args(["--target-dir", "target/bpf"])
        .env("CARGO_ENCODED_RUSTFLAGS", rustflags)
        .env_remove("RUSTFLAGS"))?;
    let obj = bpf_object();
    println!("build: xstack (embeds {})", obj.display());
    let mut c = Command::new("cargo");
    c.current_dir(&root)
        .args(["build", "--package", "stack-user", "--bin", "xstack"])
        .env("XSTACK_BPF_OBJ", &obj);
    if release {
        c.arg("--release");
    }
    run(&mut c)?;
    Ok(root
        .join("target")
        .join(if release { "release" } else { "debug" })
        .join("xstack"))
}
