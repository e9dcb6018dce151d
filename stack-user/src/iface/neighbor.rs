//! The neighbour cache: IPv4 → MAC learned from ARP (RFC 826) and from
//! received frames, the hold queue for segments whose next hop is not yet
//! resolved, and the ARP requests and replies that resolve it.

use std::net::Ipv4Addr;

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
        dst: Ipv4Addr,
        frame: Vec<u8>,
        tx: &mut dyn FrameSink,
    ) {
        if self.held.len() >= HOLD_MAX {
            self.stats.tx_no_neighbor += 1;
        } else {
            self.stats.tx_held_for_arp += 1;
            self.held.push((dst, frame));
        }
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
            match self.neighbors.get(&dst) {
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
