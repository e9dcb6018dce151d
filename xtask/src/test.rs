//! `cargo xtask test`: set-up, build, then every test of the workspace
//! (unit, BPF_PROG_TEST_RUN and end-to-end), after the layering check
//! (`cargo xtask layers`).

use std::{process::Command, time::Instant};

use anyhow::{bail, Result};

use crate::{
    build::{bpf_object, build},
    setup::setup,
    util::{is_root, root, run},
};

pub fn test(args: &[String]) -> Result<()> {
    // The cheapest check first: no module imports a higher layer.
    crate::layers::layers()?;
    setup()?;
    let bin = build(false)?;
    if !is_root() {
        bail!("the end-to-end tests create network namespaces and attach XDP: run `sudo -E cargo xtask test`");
    }
    // The end-to-end tests of tests/tests/examples.rs run the examples of
    // the application API.
    run(Command::new("cargo")
        .current_dir(root())
        .args(["build", "--package", "stack-user", "--examples"])
        .env("XSTACK_BPF_OBJ", bpf_object()))?;
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
