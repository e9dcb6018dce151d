//! A single-queue stack driven by its caller: XDP + one AF_XDP socket + one
//! [`Engine`], polled in the caller's thread. For clients, tools and
//! benchmarks that open connections themselves; `xstack serve` runs the
//! multi-queue version with one thread per queue.

use std::net::Ipv4Addr;

use anyhow::{Context, Result};

use crate::{
    engine::{App, Engine, EngineConfig},
    sys,
    tcp::{self, TcpConfig},
    xdp::{AttachMode, XdpProgram},
    xsk::{XskConfig, XskSocket},
};

/// What [`Stack::open`] sets up.
#[derive(Clone, Debug)]
pub struct StackConfig {
    /// Interface (its rx queue 0 is used; give it one queue).
    pub iface: String,
    /// The stack's address.
    pub ip: Ipv4Addr,
    /// Ports with a listener running `app`.
    pub listen: Vec<u16>,
    /// Local ports for outgoing connections (owned in XDP, no listener).
    pub client_ports: Vec<u16>,
    /// Application on the listening ports.
    pub app: App,
    /// Body size of `App::Http` responses.
    pub response_bytes: usize,
    /// TCP settings.
    pub tcp: TcpConfig,
    /// AF_XDP settings.
    pub xsk: XskConfig,
}

/// XDP program, socket and engine of one queue.
pub struct Stack {
    engine: Engine,
    sock: XskSocket,
    _prog: XdpProgram,
    epoch: std::time::Instant,
}

impl Stack {
    /// Loads and attaches XDP on `iface`, binds queue 0 and starts an engine.
    pub fn open(config: &StackConfig) -> Result<Stack> {
        let iface = sys::interface(&config.iface)?;
        let mut prog = XdpProgram::load(None)?;
        prog.own_addr(config.ip)?;
        for p in config.listen.iter().chain(&config.client_ports) {
            prog.own_port(config.ip, *p)?;
        }
        let sock = XskSocket::open(&iface.name, 0, &config.xsk)
            .with_context(|| format!("AF_XDP socket on {}", iface.name))?;
        prog.register_socket(0, sock.fd())?;
        prog.attach(&iface.name, AttachMode::Auto)?;
        let engine = Engine::new(EngineConfig {
            mac: iface.mac,
            addrs: vec![config.ip],
            ports: config.listen.clone(),
            app: config.app,
            response_bytes: config.response_bytes,
            tcp: config.tcp.clone(),
            backlog: 1024,
            secret: sys::random_secret(),
        });
        Ok(Stack {
            engine,
            sock,
            _prog: prog,
            epoch: std::time::Instant::now(),
        })
    }

    /// The engine's clock.
    pub fn now(&self) -> tcp::Instant {
        tcp::Instant(self.epoch.elapsed().as_micros() as u64)
    }

    /// One round: completions, fill ring, received frames, timers, the
    /// application, transmissions. Returns the number of frames received.
    pub fn poll(&mut self) -> u32 {
        let now = self.now();
        self.sock.complete();
        self.sock.refill();
        let engine = &mut self.engine;
        let n = self
            .sock
            .receive(64, |frame, tx| engine.handle_frame(now, frame, tx));
        self.sock.transmit_with(|tx| engine.poll(now, tx));
        n
    }

    /// The engine (connect, read, write, close, counters).
    pub fn engine(&mut self) -> &mut Engine {
        &mut self.engine
    }
}
