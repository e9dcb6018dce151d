//! `cargo xtask setup`: installs what building and testing need, idempotently
//! (rust-src for the nightly, bpf-linker against the nightly's LLVM, bpffs,
//! Debian packages).

use std::{
    env,
    ffi::OsStr,
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{bail, Context, Result};

use crate::util::{cargo_home, have, is_root, nightly, output, run};

/// Debian packages the tests, demo and benchmarks use.
const DEB_PACKAGES: &[(&str, &str)] = &[
    ("ip", "iproute2"),
    ("ping", "iputils-ping"),
    ("arping", "iputils-arping"),
    ("ethtool", "ethtool"),
    ("tcpdump", "tcpdump"),
    ("setpriv", "util-linux"),
    ("mount", "mount"),
    ("curl", "curl"),
    ("wrk", "wrk"),
    ("nft", "nftables"),
    ("tshark", "tshark"),
    ("promtool", "prometheus"),
];

pub fn setup() -> Result<()> {
    let t0 = Instant::now();
    // 1. The nightly toolchain's rust-src, for -Z build-std=core.
    let sysroot = output(nightly("rustc").args(["--print", "sysroot"])).context(
        "the nightly toolchain is needed for the XDP program: `rustup toolchain install nightly`",
    )?;
    let sysroot = PathBuf::from(sysroot.trim());
    if !sysroot.join("lib/rustlib/src/rust/library/core").exists() {
        println!("setup: adding rust-src to the nightly toolchain");
        run(Command::new("rustup").args([
            "component",
            "add",
            "rust-src",
            "--toolchain",
            "nightly",
        ]))?;
    }

    // 2. bpf-linker built against the nightly's own LLVM.
    let vv = output(nightly("rustc").arg("-vV"))?;
    let llvm = vv
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .context("cannot read the LLVM version from `rustc +nightly -vV`")?
        .trim()
        .to_string();
    let major = llvm.split('.').next().unwrap_or("").to_string();
    let wanted = format!("llvm-{major}");
    let stamp = cargo_home().join("bin/.xstack-bpf-linker");
    let linker_ok =
        have("bpf-linker") && std::fs::read_to_string(&stamp).is_ok_and(|s| s.trim() == wanted);
    if !linker_ok {
        println!("setup: building bpf-linker against the nightly's LLVM {llvm} (about a minute)");
        let libdir = sysroot.join("lib");
        let lib = std::fs::read_dir(&libdir)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| {
                p.file_name().and_then(OsStr::to_str).is_some_and(|n| {
                    n.starts_with("libLLVM.so.")
                        || (n.starts_with("libLLVM-") && n.ends_with(".so"))
                })
            })
            .with_context(|| format!("no libLLVM in {}", libdir.display()))?;
        let prefix = env::temp_dir().join(format!("xstack-llvm-{major}"));
        std::fs::create_dir_all(prefix.join("lib"))?;
        let link = prefix.join("lib/libLLVM.so");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&lib, &link)?;
        run(Command::new("cargo")
            .args([
                "install",
                "bpf-linker",
                "--version",
                "^0.13",
                "--locked",
                "--force",
            ])
            .args(["--no-default-features", "--features", &wanted])
            .env("LLVM_PREFIX", &prefix)
            .env(
                "RUSTFLAGS",
                format!("-C link-arg=-Wl,-rpath,{}", libdir.display()),
            )
            .env_remove("RUSTUP_TOOLCHAIN")
            .env_remove("RUSTC"))?;
        std::fs::write(&stamp, &wanted)?;
    }

    // 3. bpffs.
    if is_root() && !Path::new("/sys/fs/bpf").exists() {
        std::fs::create_dir_all("/sys/fs/bpf")?;
    }
    if is_root() && !is_bpffs("/sys/fs/bpf") {
        println!("setup: mounting bpffs at /sys/fs/bpf");
        run(Command::new("mount").args(["-t", "bpf", "bpf", "/sys/fs/bpf"]))?;
    }

    // 4. Debian packages.
    let missing: Vec<&str> = DEB_PACKAGES
        .iter()
        .filter(|(bin, _)| !have(bin))
        .map(|(_, pkg)| *pkg)
        .collect();
    if !missing.is_empty() {
        if !is_root() {
            bail!(
                "missing packages {missing:?}; run `sudo apt-get install {}`",
                missing.join(" ")
            );
        }
        println!("setup: installing {}", missing.join(" "));
        run(Command::new("apt-get").args(["update", "-qq"]))?;
        run(Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"))?;
    }
    println!("setup: done in {:.2} s", t0.elapsed().as_secs_f64());
    Ok(())
}

fn is_bpffs(path: &str) -> bool {
    std::fs::read_to_string("/proc/mounts")
        .map(|m| {
            m.lines().any(|l| {
                let mut f = l.split_whitespace();
                let (_, mp, fs) = (f.next(), f.next(), f.next());
                mp == Some(path) && fs == Some("bpf")
            })
        })
        .unwrap_or(false)
}
