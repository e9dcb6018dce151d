//! The neighbour caches: IPv4 → MAC learned from ARP (RFC 826), IPv6 →
//! MAC learned from neighbour discovery (RFC 4861), both also from
//! received frames; the hold queue (both families, one bound) for segments
//! whose next hop is not yet resolved, and the ARP requests and neighbour
//! solicitations that resolve it. NS/NA handling is in `ipv6.rs`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{FrameSink, Interface};
use crate::time::Instant;
use crate::wire::{
    arp::{self, ArpRepr},
    ethernet::{self, EthernetRepr, Mac},
    WireError,
};

/// Segments waiting for ARP to resolve their next hop, at most this many.
const HOLD_MAX: usize = 256;

impl Interface {
    pub(super) fn hold(
        &mut self,
        now: Instant,
        dst: IpAddr,
        frame: Vec<u8>,
        tx: &mut dyn FrameSink,
    ) {
        if self.held.len() >= HOLD_MAX {
            self.stats.tx_no_neighbor += 1;
        } else {
            self.stats.tx_held_for_arp += 1;
            self.held.push((dst, frame));
        }
        let dst = match dst {
            IpAddr::V4(d) => d,
            IpAddr::V6(d) => return self.solicit_if_due(now, d, tx),
        };
        let due = self
            .arp_pending
            .get(&dst)
            .is_none_or(|t| now.saturating_since(*t) >= std::time::Duration::from_secs(1));
        if due {
            self.arp_pending.insert(dst, now);
            self.send_arp_request(dst, tx);
        }
    }

    fn send_arp_request(&mut self, target: Ipv4Addr, tx: &mut dyn FrameSink) {
        let Some(spa) = self.config.addrs.first().copied() else {
            return;
        };
        let req = ArpRepr {
            op: arp::OP_REQUEST,
            sha: self.config.mac,
            spa,
            tha: Mac::default(),
            tpa: target,
        };
        let eth_out = EthernetRepr {
            dst: Mac::BROADCAST,
            src: self.config.mac,
            ethertype: ethernet::ETHERTYPE_ARP,
        };
        let sent = tx.send(&mut |buf| {
            if eth_out.emit(buf).is_err() || req.emit(&mut buf[ethernet::HEADER_LEN..]).is_err() {
                return 0;
            }
            let len = ethernet::HEADER_LEN + arp::PACKET_LEN;
            buf[len..60].fill(0);
            60
        });
        self.count_sent(sent, |s| s.arp_requests_out += 1);
    }

    /// Sends held frames whose next hop is now known.
    pub(super) fn flush_held(&mut self, tx: &mut dyn FrameSink) {
        if self.held.is_empty() {
            return;
        }
        let held = std::mem::take(&mut self.held);
        for (dst, mut frame) in held {
            let mac = match dst {
                IpAddr::V4(d) => self.neighbors.get(&d),
                IpAddr::V6(d) => self.neighbors6.get(&d),
            };
            match mac {
                Some(mac) => {
                    frame[0..6].copy_from_slice(&mac.0);
                    let sent = tx.send(&mut |buf| {
                        let n = frame.len().min(buf.len());
                        buf[..n].copy_from_slice(&frame[..n]);
                        n.max(60).min(buf.len())
                    });
                    self.count_sent(sent, |_| {});
                }
                None => self.held.push((dst, frame)),
            }
        }
    }

    /// Sends a neighbour solicitation for `dst` unless one went out less
    /// than a second ago (RFC 4861 §7.2.2, RetransTimer 1 s).
    fn solicit_if_due(&mut self, now: Instant, dst: Ipv6Addr, tx: &mut dyn FrameSink) {
        let due = self
            .nd_pending
            .get(&dst)
            .is_none_or(|t| now.saturating_since(*t) >= std::time::Duration::from_secs(1));
        if due {
            // Bounded like the hold queue: a scan of unresolvable next
            // hops cannot grow it without limit.
            if self.nd_pending.len() >= HOLD_MAX {
                self.nd_pending
                    .retain(|_, t| now.saturating_since(*t) < std::time::Duration::from_secs(1));
            }
            if self.nd_pending.len() < HOLD_MAX {
                self.nd_pending.insert(dst, now);
                self.send_neighbor_solicit(dst, tx);
            }
        }
    }

    /// Remembers `ip` at `mac` (RFC 4861 §7.2.3/§7.2.5), unicast MACs only.
    pub(super) fn learn6(&mut self, ip: Ipv6Addr, mac: Mac) {
        if mac.0[0] & 1 == 0 && !ip.is_unspecified() && !ip.is_multicast() {
            self.neighbors6.insert(ip, mac);
            self.nd_pending.remove(&ip);
        }
    }

    /// RFC 826 merge: remember the sender of anything addressed to us.
    pub(super) fn learn(&mut self, ip: Ipv4Addr, mac: Mac) {
        if mac.0[0] & 1 == 0 && !ip.is_unspecified() {
            self.neighbors.insert(ip, mac);
            self.arp_pending.remove(&ip);
        }
    }

    /// RFC 826, "Packet Reception": answer requests for our addresses.
    pub(super) fn handle_arp(
        &mut self,
        eth: &EthernetRepr,
        payload: &[u8],
        tx: &mut dyn FrameSink,
    ) -> Result<(), WireError> {
        let req = ArpRepr::parse(payload)?;
        if !self.owns(req.tpa) {
            self.stats.arp_ignored += 1;
            return Ok(());
        }
        self.learn(req.spa, req.sha);
        if req.op == arp::OP_REPLY {
            self.stats.arp_replies_in += 1;
            self.flush_held(tx);
            return Ok(());
        }
        if req.op != arp::OP_REQUEST {
            self.stats.arp_ignored += 1;
            return Ok(());
        }
        self.stats.arp_requests += 1;
        let reply = ArpRepr {
            op: arp::OP_REPLY,
            sha: self.config.mac,
            spa: req.tpa,
            tha: req.sha,
            tpa: req.spa,
        };
        let eth_out = EthernetRepr {
            dst: eth.src,
            src: self.config.mac,
            ethertype: ethernet::ETHERTYPE_ARP,
        };
        let sent = tx.send(&mut |buf| {
            let len = ethernet::HEADER_LEN + arp::PACKET_LEN;
            if eth_out.emit(buf).is_err() || reply.emit(&mut buf[ethernet::HEADER_LEN..]).is_err() {
                return 0;
            }
            // Pad to the Ethernet minimum of 60 bytes (without FCS).
            let padded = len.max(60).min(buf.len());
            buf[len..padded].fill(0);
            padded
        });
        self.count_sent(sent, |s| s.arp_replies += 1);
        Ok(())
    }
}
