//! The xstack build workflow: `cargo xtask setup | build | test | demo | bench`.
//!
//! `setup` is idempotent and every other command runs it first, so a fresh
//! machine needs nothing but this repository and rustup.

use std::{
    env,
    ffi::OsStr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "xstack build workflow")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what building and testing need (idempotent; under 5 s when done).
    Setup,
    /// Build the XDP object (nightly, bpfel-unknown-none) and then `xstack`, which embeds it.
    Build {
        /// Build userspace in release mode.
        #[arg(long)]
        release: bool,
    },
    /// Run every test: unit tests, BPF_PROG_TEST_RUN tests and end-to-end tests.
    Test {
        /// Extra arguments for `cargo test` (e.g. a test name filter).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Bring up a testbed, run the stack, show the round trip, tear it down.
    Demo,
    /// Benchmarks on a fresh testbed: AF_XDP receive rate (copy mode) and bulk TCP throughput, each next to Linux.
    Bench {
        /// Seconds per measurement.
        #[arg(long, default_value_t = 5)]
        seconds: u32,
    },
}

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
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn have(cmd: &str) -> bool {
    env::var_os("PATH")
        .map(|p| env::split_paths(&p).any(|d| d.join(cmd).is_file()))
        .unwrap_or(false)
}

fn run(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    let status = cmd.status().with_context(|| format!("running {shown}"))?;
    if !status.success() {
        bail!("{shown} failed with {status}");
    }
    Ok(())
}

fn output(cmd: &mut Command) -> Result<String> {
    let shown = format!("{cmd:?}");
    let out = cmd.output().with_context(|| format!("running {shown}"))?;
    if !out.status.success() {
        bail!(
            "{shown} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A cargo/rustc command for the nightly toolchain, free of the environment
/// that `cargo run` sets for the stable one.
fn nightly(program: &str) -> Command {
    let mut c = Command::new(program);
    c.arg("+nightly");
    for k in [
        "RUSTC",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTUP_TOOLCHAIN",
        "CARGO",
    ] {
        c.env_remove(k);
    }
    c
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn cargo_home() -> PathBuf {
    env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env::var_os("HOME").unwrap_or_default()).join(".cargo"))
}

fn setup() -> Result<()> {
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

fn bpf_object() -> PathBuf {
    root().join("target/bpf/bpfel-unknown-none/release/stack-ebpf")
}

fn build(release: bool) -> Result<PathBuf> {
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

fn test(args: &[String]) -> Result<()> {
    setup()?;
    let bin = build(false)?;
    if !is_root() {
        bail!("the end-to-end tests create network namespaces and attach XDP: run `sudo -E cargo xtask test`");
    }
    let t0 = Instant::now();
    run(Command::new("cargo")
        .current_dir(root())
        .args(["test", "--workspace"])
        .args(args)
        .env("XSTACK_BPF_OBJ", bpf_object())
        .env("XSTACK_BIN", &bin))?;
    println!(
        "test: all tests passed in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

fn demo() -> Result<()> {
    setup()?;
    let bin = build(false)?;
    if !is_root() {
        bail!(
            "the demo creates network namespaces and attaches XDP: run `sudo -E cargo xtask demo`"
        );
    }
    let name = format!("demo{}", std::process::id() % 10000);
    let xs = |args: &[&str]| {
        let mut c = Command::new(&bin);
        c.args(args);
        c
    };
    println!("\n== 1. testbed up: two namespaces and a veth pair, addresses from 198.18.0.0/15");
    run(&mut xs(&[
        "testbed", "up", "--name", &name, "--queues", "2",
    ]))?;
    let guard = Teardown {
        bin: bin.clone(),
        name: name.clone(),
    };
    let stack_ns = format!("xs-{name}-stack");
    let peer_ns = format!("xs-{name}-peer");
    let stack_if = format!("xs-{name}-s");
    let peer_if = format!("xs-{name}-p");

    println!("\n== 2. xstack serve in {stack_ns}: XDP on {stack_if}, one AF_XDP socket per queue, engine owns 198.18.0.2");
    let mut serve = Command::new("ip")
        .args(["netns", "exec", &stack_ns])
        .arg(&bin)
        .args([
            "serve",
            "--iface",
            &stack_if,
            "--ip",
            "198.18.0.2",
            "--port",
            "8080",
            "--duration",
            "30",
        ])
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .spawn()?;
    let up = wait_for(|| {
        xs(&["stats", "--iface", &stack_if])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if !up {
        let _ = serve.kill();
        bail!("xstack serve did not come up");
    }
    println!(
        "\n== 3. from the Linux kernel in {peer_ns}: arping, ping and a TCP SYN to 198.18.0.2:8080"
    );
    let peer = |prog: &str, args: &[&str]| {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &peer_ns, prog]).args(args);
        c
    };
    run(&mut peer(
        "arping",
        &["-c", "2", "-w", "3", "-I", &peer_if, "198.18.0.2"],
    ))?;
    run(&mut peer(
        "ping",
        &["-c", "3", "-i", "0.2", "-W", "2", "198.18.0.2"],
    ))?;
    // One SYN: connect with a timeout shorter than the kernel's SYN retry (1 s).
    let _ = peer(
        "timeout",
        &["0.5", "bash", "-c", "echo > /dev/tcp/198.18.0.2/8080"],
    )
    .status();
    println!("\n== 4. counters of the running instance (`xstack stats`)");
    run(&mut xs(&["stats", "--iface", &stack_if]))?;
    println!("\n== 5. stop with SIGTERM: clean detach and final counters");
    let _ = Command::new("kill")
        .args(["-TERM", &serve.id().to_string()])
        .status();
    let status = serve.wait()?;
    println!("\n== 6. testbed down");
    drop(guard);
    if !status.success() {
        bail!("xstack serve exited with {status}");
    }
    println!("\ndemo: ARP and ICMP answered by the userspace engine through XDP → AF_XDP → TX, TCP SYNs counted on their queue");
    Ok(())
}

struct Teardown {
    bin: PathBuf,
    name: String,
}

impl Drop for Teardown {
    fn drop(&mut self) {
        let _ = Command::new(&self.bin)
            .args(["testbed", "down", "--name", &self.name])
            .status();
    }
}

fn wait_for(mut f: impl FnMut() -> bool) -> bool {
    for _ in 0..100 {
        if f() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    false
}

fn bench(seconds: u32) -> Result<()> {
    setup()?;
    build(true)?;
    if !is_root() {
        bail!("benchmarks create network namespaces: run `sudo -E cargo xtask bench`");
    }
    run(Command::new(root().join("target/release/xstack"))
        .current_dir(root())
        .args([
            "bench",
            "--seconds",
            &seconds.to_string(),
            "--out",
            "target/bench",
        ]))?;
    run(Command::new(root().join("target/release/xstack"))
        .current_dir(root())
        .args([
            "bench",
            "synflood",
            "--seconds",
            "3",
            "--out",
            "target/synflood",
        ]))?;
    run(Command::new(root().join("target/release/xstack"))
        .current_dir(root())
        .args(["bench", "cookies"]))?;
    for bench in ["rx", "bulk"] {
        run(Command::new(root().join("target/release/xstack"))
            .current_dir(root())
            .args(["bench", bench, "--seconds", &seconds.to_string()]))?;
    }
    Ok(())
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Setup => setup(),
        Cmd::Build { release } => {
            setup()?;
            build(release).map(|p| println!("build: {}", p.display()))
        }
        Cmd::Test { args } => test(&args),
        Cmd::Demo => demo(),
        Cmd::Bench { seconds } => bench(seconds),
    }
}
