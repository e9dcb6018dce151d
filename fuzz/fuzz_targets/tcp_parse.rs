//! Arbitrary bytes into the TCP parser: it must never panic, and anything
//! it accepts must re-emit into something it accepts again.
#![no_main]

use std::net::Ipv4Addr;

use libfuzzer_sys::fuzz_target;
use xstack::wire::tcp::{TcpPacket, TcpRepr};

const SRC: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const DST: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

fuzz_target!(|data: &[u8]| {
    let _ = TcpRepr::parse(SRC, DST, data);
    if let Ok(p) = TcpPacket::new_checked(data) {
        let _ = (p.options(), p.payload(), p.verify_checksum(SRC, DST));
    }
    if let Ok(r) = TcpRepr::parse_unchecked(data) {
        let mut out = vec![0u8; r.len()];
        let n = r.emit(SRC, DST, &mut out).expect("room for the segment");
        let again = TcpRepr::parse(SRC, DST, &out[..n]).expect("re-emitted segment parses");
        assert_eq!(again.payload, r.payload);
        assert_eq!((again.seq, again.ack, again.flags), (r.seq, r.ack, r.flags));
    }
});
