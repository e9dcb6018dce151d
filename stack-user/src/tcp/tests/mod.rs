//! Tests of the engine: packet-level tests grouped per state (one test per
//! behaviour, smoltcp style), and a two-engine harness with virtual time
//! and seeded impairments (quinn-proto `Pair` style).

pub(crate) mod harness;
mod util;

mod ack_policy;
mod close_wait;
mod established;
mod fin_wait;
mod flow_control;
mod ipv6;
mod lifecycle;
mod listen;
mod recovery;
mod syn_received;
mod syn_sent;
mod time_wait;

use super::tcb::Tcb;

/// The control block without its heap buffers must stay small so that
/// millions of connections fit in memory.
#[test]
fn control_block_is_small() {
    let size = std::mem::size_of::<Tcb>();
    println!("size_of::<Tcb>() = {size} bytes (buffers on the heap)");
    assert!(size <= 512, "Tcb is {size} bytes");
}
