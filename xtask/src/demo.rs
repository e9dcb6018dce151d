//! `cargo xtask demo`: testbed up, `xstack serve`, ARP/ping/SYN from the
//! Linux peer, counters, clean stop, testbed down.

use std::{
    path::PathBuf,
    process::{Command, Stdio},
};

use anyhow::{bail, Result};

use crate::{
    build::build,
    setup::setup,
    util::{is_root, run, wait_for},
};

pub fn demo() -> Result<()> {
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
