//! boots' syslog receiver on datagrams from the network: each one parsed into a line
//! (`syslog::store::parse`: RFC 5424, else RFC 3164, JSON bodies decoded) and kept in a
//! `LogStore` with small byte budgets, so retention and eviction run too. Nothing may panic,
//! and after every line the budgets hold: the total, the unknown senders' share, each machine's
//! lines, and the arrival queues stay bounded.
//!
//! Input: datagrams separated by `0xFF` (never valid UTF-8, so rare in real lines). The first
//! byte of each picks the sender: the low three bits the address (10.0.0.x, or its IPv4-mapped
//! IPv6 form when bit 4 is set), bit 3 whether a Hardware owns it. The rest is the datagram.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};

use libfuzzer_sys::fuzz_target;
use tinkerbell_boots::syslog::store::{self, Budget, LogStore, MachineKey};

/// Longest line kept (the receiver's `max_message`); small, so the budgets below fill fast.
const MAX: usize = 512;
const BUDGET: Budget = Budget {
    per_machine: 6 * 1024,
    total: 16 * 1024,
    unknown: 6 * 1024,
};

fuzz_target!(|data: &[u8]| {
    let logs = LogStore::new(BUDGET);
    for record in data.split(|&b| b == 0xff) {
        let Some((&sel, datagram)) = record.split_first() else {
            continue;
        };
        let v4 = Ipv4Addr::new(10, 0, 0, sel & 7);
        let peer = if sel & 16 != 0 {
            IpAddr::V6(v4.to_ipv6_mapped())
        } else {
            IpAddr::V4(v4)
        };
        let ip = store::canonical(peer);
        assert_eq!(
            ip,
            IpAddr::V4(v4),
            "IPv4-mapped senders are kept under their IPv4 address"
        );
        let key = if sel & 8 != 0 {
            MachineKey::Hardware {
                namespace: "default".into(),
                name: format!("m{}", sel & 7),
            }
        } else {
            MachineKey::Address(ip)
        };
        let entry = store::parse(datagram, ip, MAX);
        assert_eq!(entry.source, ip);
        if let Some(j) = &entry.json {
            assert!(j.is_object(), "only JSON objects are kept as json");
        }
        logs.push(key, entry);

        let b = logs.budget();
        assert!(
            logs.bytes() <= b.total,
            "total budget: {} > {}",
            logs.bytes(),
            b.total
        );
        assert!(
            logs.unknown_bytes() <= b.unknown,
            "unknown budget: {} > {}",
            logs.unknown_bytes(),
            b.unknown
        );
        assert_eq!(logs.bytes(), logs.known_bytes() + logs.unknown_bytes());
        let machines = logs.machines();
        let mut lines = 0;
        for (k, n) in &machines {
            let kept = logs.lines(k, None);
            assert_eq!(kept.len(), *n);
            assert!(*n > 0, "a machine without lines is dropped");
            let cost: usize = kept.iter().map(|e| e.cost()).sum();
            assert!(
                cost <= b.per_machine,
                "{k}: {cost} bytes over the per-machine budget"
            );
            lines += n;
        }
        assert_eq!(lines, logs.len());
        // Lazily skipped arrival-queue entries are compacted past 2 × lines + 64 per pool.
        assert!(
            logs.order_len() <= 2 * logs.len() + 2 * 65,
            "arrival queues grew: {}",
            logs.order_len()
        );
    }
});
