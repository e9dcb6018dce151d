//! ICMP (RFC 792): echo replies for the stack's own addresses.

use super::{FrameSink, Interface};
use crate::wire::{
    ethernet::{self, EthernetRepr},
    icmp::{self, IcmpRepr},
    ipv4::{self, Ipv4Repr},
    WireError,
};

impl Interface {
    /// RFC 792, "Echo or Echo Reply Message": swap addresses, type 0, same
    /// identifier, sequence and data.
    pub(super) fn handle_icmp(
        &mut self,
        eth: &EthernetRepr,
        ip: &Ipv4Repr,
        body: &[u8],
        tx: &mut dyn FrameSink,
    ) -> Result<(), WireError> {
        let msg = IcmpRepr::parse(body)?;
        if msg.kind != icmp::ECHO_REQUEST || msg.code != 0 {
            self.stats.icmp_other += 1;
            return Ok(());
        }
        self.stats.icmp_echo_requests += 1;
        let reply = IcmpRepr {
            kind: icmp::ECHO_REPLY,
            ..msg
        };
        self.ident = self.ident.wrapping_add(1);
        let ip_out = Ipv4Repr {
            src: ip.dst,
            dst: ip.src,
            protocol: ipv4::PROTO_ICMP,
            ttl: 64,
            tos: ip.tos,
            ident: self.ident,
            dont_frag: false,
            payload_len: reply.len(),
        };
        let eth_out = EthernetRepr {
            dst: eth.src,
            src: self.config.mac,
            ethertype: ethernet::ETHERTYPE_IPV4,
        };
        let sent = tx.send(&mut |buf| {
            let ip_off = ethernet::HEADER_LEN;
            let icmp_off = ip_off + ipv4::HEADER_LEN;
            let len = icmp_off + reply.len();
            if buf.len() < len
                || eth_out.emit(buf).is_err()
                || ip_out.emit(&mut buf[ip_off..]).is_err()
                || reply.emit(&mut buf[icmp_off..]).is_err()
            {
                return 0;
            }
            let padded = len.max(60).min(buf.len());
            buf[len..padded].fill(0);
            padded
        });
        self.count_sent(sent, |s| s.icmp_echo_replies += 1);
        Ok(())
    }
}
