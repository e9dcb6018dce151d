//! Embeds the XDP object built by `cargo xtask build`.
//!
//! The object is looked up at `$XSTACK_BPF_OBJ`, else at the path where
//! `cargo xtask build` puts it. When it is missing (a plain `cargo build` or
//! `cargo clippy` on stable), an empty object is embedded and `xstack serve`
//! says to run `cargo xtask build`.
use std::{env, fs, path::PathBuf};

fn main() {
    println!("cargo:rerun-if-env-changed=XSTACK_BPF_OBJ");
    let manifest =
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let default = manifest.join("../target/bpf/bpfel-unknown-none/release/stack-ebpf");
    let src = env::var_os("XSTACK_BPF_OBJ")
        .map(PathBuf::from)
        .unwrap_or(default);
    println!("cargo:rerun-if-changed={}", src.display());
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("xstack.bpf.o");
    let bytes = fs::read(&src).unwrap_or_default();
    fs::write(&out, bytes).expect("write OUT_DIR/xstack.bpf.o");
}
