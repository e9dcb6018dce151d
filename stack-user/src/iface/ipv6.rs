//! IPv6 in the frame layer (RFC 8200): dispatch of owned packets, ICMPv6
//! echo (RFC 4443 §4) and neighbour discovery (RFC 4861 §7): answering
//! solicitations for owned addresses, whether sent to the address or to its
//! solicited-node group (MAC 33:33:ff:…), learning advertisements, and
//! soliciting unresolved next hops (the hold queue is in `neighbor.rs`).

use std::net::Ipv6Addr;

use super::{FrameSink, Interface};
use crate::time::Instant;
use crate::wire::{
    ethernet::{self, EthernetRepr, Mac},
    icmpv6::{self, Icmpv6Repr, NdpRepr, NA_OVERRIDE, NA_SOLICITED},
    ipv6::{self, Ipv6Repr},
    WireError,
};

/// All-nodes multicast (RFC 4291 §2.7.1).
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
/// Hop limit of neighbour discovery (RFC 4861 §7.1: 255, so that a
/// receiver knows it came from the link).
const ND_HOP_LIMIT: u8 = 255;
/// Hop limit of what we originate (Linux's default).
pub(super) const HOP_LIMIT: u8 = 64;

impl Interface {
    /// Whether `dst` is one of our addresses' solicited-node groups.
    fn is_our_solicited_node(&self, dst: Ipv6Addr) -> bool {
        self.config
            .addrs6
            .iter()
            .any(|a| ipv6::solicited_node(*a) == dst)
    }

    pub(super) fn handle_ipv6(
        &mut self,
        now: Instant,
        eth: &EthernetRepr,
        payload: &[u8],
        tx: &mut dyn FrameSink,
    ) -> Result<(), WireError> {
        let (ip, body) = Ipv6Repr::parse(payload)?;
        let unicast = self.owns6(ip.dst);
        if !(unicast || ip.dst == ALL_NODES || self.is_our_solicited_node(ip.dst)) {
            self.stats.ipv6_not_owned += 1;
            return Ok(());
        }
        match ip.next_header {
            ipv6::NH_TCP if unicast => {
                if !self.neighbors6.contains_key(&ip.src) {
                    self.learn6(ip.src, eth.src);
                }
                self.handle_tcp6(now, &ip, body);
                Ok(())
            }
            ipv6::NH_ICMPV6 => self.handle_icmpv6(eth, &ip, unicast, body, tx),
            _ => {
                self.stats.ipv6_other_proto += 1;
                Ok(())
            }
        }
    }

    fn handle_icmpv6(
        &mut self,
        eth: &EthernetRepr,
        ip: &Ipv6Repr,
        unicast: bool,
        body: &[u8],
        tx: &mut dyn FrameSink,
    ) -> Result<(), WireError> {
        let msg = Icmpv6Repr::parse(ip.src, ip.dst, body)?;
        if let Some(nd) = NdpRepr::parse(ip.hop_limit, &msg)? {
            return self.handle_ndp(eth, ip, nd, tx);
        }
        if !unicast || msg.kind != icmpv6::ECHO_REQUEST || msg.code != 0 {
            self.stats.icmpv6_other += 1;
            return Ok(());
        }
        // RFC 4443 §4.2: the reply carries the request's identifier,
        // sequence number and data, from the address it was sent to.
        self.stats.icmpv6_echo_requests += 1;
        let reply = Icmpv6Repr {
            kind: icmpv6::ECHO_REPLY,
            ..msg
        };
        let sent = self.send_icmpv6(eth.src, ip.dst, ip.src, HOP_LIMIT, &reply, tx);
        self.count_sent(sent, |s| s.icmpv6_echo_replies += 1);
        Ok(())
    }

    /// RFC 4861 §7.2.3 (solicitation for an owned target: learn the
    /// solicitor's link-layer address, answer with a solicited, override
    /// advertisement) and §7.2.5 (advertisement: update the entry of a
    /// next hop being resolved or already known, then send what waits).
    fn handle_ndp(
        &mut self,
        eth: &EthernetRepr,
        ip: &Ipv6Repr,
        nd: NdpRepr,
        tx: &mut dyn FrameSink,
    ) -> Result<(), WireError> {
        match nd {
            NdpRepr::Solicit { target, lladdr } => {
                if !self.owns6(target) {
                    self.stats.ndp_ignored += 1;
                    return Ok(());
                }
                // §7.1.1: from the unspecified address (a DAD probe) only
                // to a solicited-node group and without a link-layer option.
                let dad = ip.src.is_unspecified();
                if dad && (lladdr.is_some() || !ip.dst.is_multicast()) {
                    return Err(WireError::NdpInvalid);
                }
                self.stats.ndp_solicits_in += 1;
                if let Some(m) = lladdr {
                    self.learn6(ip.src, m);
                }
                // §7.2.4: a DAD probe is answered to all-nodes, not
                // solicited; otherwise to the solicitor.
                let (dst, dst_mac, flags) = if dad {
                    (ALL_NODES, ipv6::multicast_mac(ALL_NODES), NA_OVERRIDE)
                } else {
                    (
                        ip.src,
                        lladdr.unwrap_or(eth.src),
                        NA_SOLICITED | NA_OVERRIDE,
                    )
                };
                let na = NdpRepr::Advert {
                    flags,
                    target,
                    lladdr: Some(self.config.mac),
                };
                let sent = self.send_ndp(dst_mac, target, dst, &na, tx);
                self.count_sent(sent, |s| s.ndp_adverts_out += 1);
            }
            NdpRepr::Advert { target, lladdr, .. } => {
                let known =
                    self.neighbors6.contains_key(&target) || self.nd_pending.contains_key(&target);
                if self.owns6(target) || !known {
                    self.stats.ndp_ignored += 1;
                    return Ok(());
                }
                self.stats.ndp_adverts_in += 1;
                self.learn6(target, lladdr.unwrap_or(eth.src));
                self.flush_held(tx);
            }
        }
        Ok(())
    }

    /// A neighbour discovery copy another queue's worker handled: learn
    /// the solicitor of an owned target, or an advertised next hop this
    /// worker is resolving or knows (and send what waits for it); answer
    /// nothing.
    pub(super) fn learn_ndp(&mut self, eth: &EthernetRepr, payload: &[u8], tx: &mut dyn FrameSink) {
        let Ok((ip, body)) = Ipv6Repr::parse(payload) else {
            return;
        };
        if ip.next_header != ipv6::NH_ICMPV6 {
            return;
        }
        let Ok(msg) = Icmpv6Repr::parse(ip.src, ip.dst, body) else {
            return;
        };
        match NdpRepr::parse(ip.hop_limit, &msg) {
            Ok(Some(NdpRepr::Solicit {
                target,
                lladdr: Some(m),
            })) if self.owns6(target) => self.learn6(ip.src, m),
            Ok(Some(NdpRepr::Advert { target, lladdr, .. }))
                if !self.owns6(target)
                    && (self.neighbors6.contains_key(&target)
                        || self.nd_pending.contains_key(&target)) =>
            {
                self.learn6(target, lladdr.unwrap_or(eth.src));
                self.flush_held(tx);
            }
            _ => {}
        }
    }

    /// RFC 4861 §7.2.2: a solicitation for `target` to its solicited-node
    /// group, from our first IPv6 address, with our link-layer address.
    pub(super) fn send_neighbor_solicit(&mut self, target: Ipv6Addr, tx: &mut dyn FrameSink) {
        let Some(src) = self.config.addrs6.first().copied() else {
            return;
        };
        let group = ipv6::solicited_node(target);
        let ns = NdpRepr::Solicit {
            target,
            lladdr: Some(self.config.mac),
        };
        let sent = self.send_ndp(ipv6::multicast_mac(group), src, group, &ns, tx);
        self.count_sent(sent, |s| s.ndp_solicits_out += 1);
    }

    fn send_ndp(
        &mut self,
        dst_mac: Mac,
        src: Ipv6Addr,
        dst: Ipv6Addr,
        nd: &NdpRepr,
        tx: &mut dyn FrameSink,
    ) -> bool {
        let mut body = [0u8; icmpv6::NDP_LEN];
        let Ok(n) = nd.emit(src, dst, &mut body) else {
            return false;
        };
        self.send_ipv6(dst_mac, src, dst, ND_HOP_LIMIT, &body[..n], tx)
    }

    fn send_icmpv6(
        &mut self,
        dst_mac: Mac,
        src: Ipv6Addr,
        dst: Ipv6Addr,
        hop_limit: u8,
        msg: &Icmpv6Repr,
        tx: &mut dyn FrameSink,
    ) -> bool {
        self.send_icmpv6_frame(dst_mac, src, dst, hop_limit, msg.len(), tx, |b| {
            msg.emit(src, dst, b).is_ok()
        })
    }

    fn send_ipv6(
        &mut self,
        dst_mac: Mac,
        src: Ipv6Addr,
        dst: Ipv6Addr,
        hop_limit: u8,
        icmp: &[u8],
        tx: &mut dyn FrameSink,
    ) -> bool {
        self.send_icmpv6_frame(dst_mac, src, dst, hop_limit, icmp.len(), tx, |b| {
            b.copy_from_slice(icmp);
            true
        })
    }

    /// One ICMPv6 frame: the Ethernet and IPv6 headers, then `body` writes
    /// the `body_len` bytes of the message (false: nothing is sent).
    #[allow(clippy::too_many_arguments)]
    fn send_icmpv6_frame(
        &mut self,
        dst_mac: Mac,
        src: Ipv6Addr,
        dst: Ipv6Addr,
        hop_limit: u8,
        body_len: usize,
        tx: &mut dyn FrameSink,
        body: impl Fn(&mut [u8]) -> bool,
    ) -> bool {
        let mac = self.config.mac;
        tx.send(&mut |buf| {
            let ip_off = ethernet::HEADER_LEN;
            let body_off = ip_off + ipv6::HEADER_LEN;
            let len = body_off + body_len;
            let eth = EthernetRepr {
                dst: dst_mac,
                src: mac,
                ethertype: ethernet::ETHERTYPE_IPV6,
            };
            let ip = Ipv6Repr {
                src,
                dst,
                next_header: ipv6::NH_ICMPV6,
                hop_limit,
                traffic_class: 0,
                payload_len: body_len,
            };
            if buf.len() < len
                || eth.emit(buf).is_err()
                || ip.emit(&mut buf[ip_off..]).is_err()
                || !body(&mut buf[body_off..len])
            {
                return 0;
            }
            len
        })
    }
}
