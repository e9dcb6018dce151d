//! Arbitrary bytes into the IPv6, ICMPv6 and neighbour discovery parsers:
//! they must never panic; an accepted packet's upper layer lies inside it,
//! and an accepted NS/NA re-emits into one that parses back equal.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xstack::wire::{
    icmpv6::{Icmpv6Repr, NdpRepr, NDP_LEN},
    ipv6::Ipv6Repr,
};

fuzz_target!(|data: &[u8]| {
    let Ok((ip, payload)) = Ipv6Repr::parse(data) else {
        return;
    };
    assert_eq!(payload.len(), ip.payload_len);
    assert!(payload.len() + 40 <= data.len());
    let Ok(msg) = Icmpv6Repr::parse(ip.src, ip.dst, payload) else {
        return;
    };
    if let Ok(Some(nd)) = NdpRepr::parse(ip.hop_limit, &msg) {
        let mut out = [0u8; NDP_LEN];
        let n = nd.emit(ip.src, ip.dst, &mut out).expect("room for NS/NA");
        let again = Icmpv6Repr::parse(ip.src, ip.dst, &out[..n]).expect("re-emitted NS/NA verifies");
        assert_eq!(NdpRepr::parse(255, &again), Ok(Some(nd)));
    }
});
