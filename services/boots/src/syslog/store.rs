//! Parsed syslog lines, kept per machine within byte budgets.
//!
//! A sender chooses how big each line is (up to `max_message`, and a JSON body decodes into a
//! value several times its text), so retention is counted in the bytes each line really holds
//! ([`LogEntry::cost`]: its strings, the decoded JSON, the store's bookkeeping) plus each
//! machine's key, never in lines. Three budgets apply ([`Budget`]): per machine, in total,
//! and for unknown senders (lines kept under an IP because no Hardware has it) together. The
//! oldest lines go first. Unknown senders fill only their own, smaller budget: when the total
//! is reached their lines go before any known machine's, so a flood from addresses nobody
//! registered cannot push a provisioning machine's boot log out.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::mem::size_of;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;

/// Whom a line belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MachineKey {
    /// The Hardware whose interface has the sender's address.
    Hardware {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// No Hardware has the sender's address.
    Address(IpAddr),
}

impl MachineKey {
    /// Whether the sender is unknown (no Hardware has its address).
    pub fn is_unknown(&self) -> bool {
        matches!(self, MachineKey::Address(_))
    }

    /// Bytes a machine's place in the store holds besides its lines: the key's strings, the
    /// key itself, its map slot and queue (an estimate that errs high).
    fn cost(&self) -> usize {
        let strings = match self {
            MachineKey::Hardware { namespace, name } => namespace.capacity() + name.capacity(),
            MachineKey::Address(_) => 0,
        };
        size_of::<Machine>() + size_of::<Arc<MachineKey>>() + ARC_COUNTS + 32 + strings
    }
}

impl fmt::Display for MachineKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MachineKey::Hardware { namespace, name } => write!(f, "{namespace}/{name}"),
            MachineKey::Address(ip) => write!(f, "{ip}"),
        }
    }
}

/// One received line.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogEntry {
    /// When boots received it (RFC 3339, UTC).
    pub received: String,
    /// Sender address.
    pub source: IpAddr,
    /// Facility name (`kern`, `daemon`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub facility: Option<&'static str>,
    /// Severity name (`err`, `info`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub severity: Option<&'static str>,
    /// The sender's timestamp, when the line had one (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    /// HOSTNAME field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// APP-NAME / TAG.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// PROCID.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub procid: Option<String>,
    /// MSGID (RFC 5424).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub msgid: Option<String>,
    /// The message text (the whole line when nothing parsed).
    pub message: String,
    /// The message decoded, when it is a JSON object.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub json: Option<serde_json::Value>,
}

/// Reference counts in front of an `Arc`'s value.
const ARC_COUNTS: usize = 2 * size_of::<usize>();

/// Bytes a line holds besides its heap data: the entry, its `Arc`, its slot in the machine's
/// queue and (twice, for entries the lazy arrival queue has not yet compacted away) in the
/// arrival queue.
const LINE_OVERHEAD: usize = size_of::<LogEntry>()
    + ARC_COUNTS
    + size_of::<Stored>()
    + 2 * size_of::<(u64, Arc<MachineKey>)>();

impl LogEntry {
    /// Bytes this entry holds while stored: its strings, the decoded JSON (estimated) and the
    /// store's bookkeeping for one line.
    pub fn cost(&self) -> usize {
        let opt = |s: &Option<String>| s.as_ref().map_or(0, String::capacity);
        LINE_OVERHEAD
            + self.received.capacity()
            + opt(&self.timestamp)
            + opt(&self.hostname)
            + opt(&self.app)
            + opt(&self.procid)
            + opt(&self.msgid)
            + self.message.capacity()
            + self.json.as_ref().map_or(0, json_cost)
    }
}

/// Heap bytes of a decoded JSON value plus its own size (an estimate that errs high: map
/// entries are charged a tree node's share on top of the key and value).
fn json_cost(v: &serde_json::Value) -> usize {
    use serde_json::Value;
    size_of::<Value>()
        + match v {
            Value::Null | Value::Bool(_) | Value::Number(_) => 0,
            Value::String(s) => s.capacity(),
            Value::Array(a) => {
                (a.capacity() - a.len()) * size_of::<Value>()
                    + a.iter().map(json_cost).sum::<usize>()
            }
            Value::Object(m) => m
                .iter()
                .map(|(k, v)| size_of::<String>() + 16 + k.capacity() + json_cost(v))
                .sum(),
        }
}

/// The canonical form of an address (IPv4-mapped IPv6 → IPv4).
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// Parse one datagram (RFC 5424, else RFC 3164), truncated to `max` bytes.
pub fn parse(bytes: &[u8], source: IpAddr, max: usize) -> LogEntry {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(max)]);
    let text = text.trim_end_matches(['\n', '\r', '\0']);
    let m = syslog_loose::parse_message(text, syslog_loose::Variant::Either);
    let message = m.msg.trim().to_string();
    let json = serde_json::from_str::<serde_json::Value>(&message)
        .ok()
        .filter(serde_json::Value::is_object);
    LogEntry {
        received: jiff::Timestamp::now().to_string(),
        source,
        facility: m.facility.map(|f| f.as_str()),
        severity: m.severity.map(|s| s.as_str()),
        timestamp: m.timestamp.map(|t| t.to_rfc3339()),
        hostname: m.hostname.map(str::to_string),
        app: m.appname.map(str::to_string),
        procid: m.procid.map(|p| p.to_string()),
        msgid: m.msgid.map(str::to_string),
        message: if message.is_empty() {
            text.to_string()
        } else {
            message
        },
        json,
    }
}

/// Byte budgets of a [`LogStore`] (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Bytes kept per machine (known or not), key included.
    pub per_machine: usize,
    /// Bytes kept in total, over every machine.
    pub total: usize,
    /// Bytes kept for unknown senders together (part of `total`).
    pub unknown: usize,
}

#[derive(Debug)]
struct Stored {
    seq: u64,
    entry: Arc<LogEntry>,
    cost: usize,
}

#[derive(Debug)]
struct Machine {
    key: Arc<MachineKey>,
    lines: VecDeque<Stored>,
    /// The key's cost and every stored line's.
    bytes: usize,
}

/// Known machines, or unknown senders: what their budget counts.
#[derive(Debug, Default)]
struct Pool {
    /// Arrival order in this pool; entries already evicted per machine are skipped lazily
    /// and compacted when the queue gets long.
    order: VecDeque<(u64, Arc<MachineKey>)>,
    bytes: usize,
    lines: usize,
}

#[derive(Debug, Default)]
struct Inner {
    machines: HashMap<Arc<MachineKey>, Machine>,
    known: Pool,
    unknown: Pool,
    next: u64,
    evicted: u64,
    evicted_bytes: u64,
}

impl Inner {
    fn pool(&mut self, unknown: bool) -> &mut Pool {
        if unknown {
            &mut self.unknown
        } else {
            &mut self.known
        }
    }

    fn live(&self, seq: u64, key: &MachineKey) -> bool {
        self.machines
            .get(key)
            .and_then(|m| m.lines.front())
            .is_some_and(|front| front.seq <= seq)
    }

    /// Evict a machine's oldest line; the machine goes with its last line.
    fn pop_machine_front(&mut self, key: &MachineKey) {
        let Some(m) = self.machines.get_mut(key) else {
            return;
        };
        let Some(old) = m.lines.pop_front() else {
            return;
        };
        m.bytes -= old.cost;
        let mut freed = old.cost;
        if m.lines.is_empty() {
            freed += m.bytes;
            self.machines.remove(key);
        }
        let pool = self.pool(key.is_unknown());
        pool.bytes -= freed;
        pool.lines -= 1;
        self.evicted += 1;
        self.evicted_bytes += freed as u64;
    }

    /// Evict the oldest line of a pool. False when the pool is empty.
    fn evict_oldest(&mut self, unknown: bool) -> bool {
        while let Some((seq, key)) = self.pool(unknown).order.pop_front() {
            if self.live(seq, &key) {
                self.pop_machine_front(&key);
                return true;
            }
        }
        false
    }

    /// Drop the skipped entries of a pool's arrival queue once they outnumber the live ones.
    fn compact(&mut self, unknown: bool) {
        let pool = self.pool(unknown);
        if pool.order.len() <= 2 * pool.lines + 64 {
            return;
        }
        let order = std::mem::take(&mut pool.order);
        let order = order
            .into_iter()
            .filter(|(seq, key)| self.live(*seq, key))
            .collect();
        self.pool(unknown).order = order;
    }
}

/// Lines per machine, within a [`Budget`].
#[derive(Debug)]
pub struct LogStore {
    budget: Budget,
    inner: Mutex<Inner>,
}

impl LogStore {
    /// An empty store.
    pub fn new(budget: Budget) -> LogStore {
        let total = budget.total.max(1);
        LogStore {
            budget: Budget {
                per_machine: budget.per_machine.max(1),
                total,
                unknown: budget.unknown.clamp(1, total),
            },
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Store a line; the oldest lines go when a budget is exceeded (the new line itself when
    /// it alone is over the per-machine budget).
    pub fn push(&self, key: MachineKey, entry: LogEntry) {
        let unknown = key.is_unknown();
        let cost = entry.cost();
        let mut g = self.lock();
        let g = &mut *g;
        let seq = g.next;
        g.next += 1;
        let m = g.machines.entry(Arc::new(key)).or_insert_with_key(|key| {
            let bytes = key.cost();
            Machine {
                key: key.clone(),
                lines: VecDeque::new(),
                bytes,
            }
        });
        let added = if m.lines.is_empty() {
            m.bytes + cost
        } else {
            cost
        };
        m.lines.push_back(Stored {
            seq,
            entry: Arc::new(entry),
            cost,
        });
        m.bytes += cost;
        let key = m.key.clone();
        let over = m.bytes > self.budget.per_machine;
        let pool = g.pool(unknown);
        pool.order.push_back((seq, key.clone()));
        pool.bytes += added;
        pool.lines += 1;
        if over {
            while g
                .machines
                .get(&*key)
                .is_some_and(|m| m.bytes > self.budget.per_machine)
            {
                g.pop_machine_front(&key);
            }
        }
        if unknown {
            while g.unknown.bytes > self.budget.unknown && g.evict_oldest(true) {}
        }
        // Unknown senders' lines go first; a known machine's only when none are left, so an
        // unknown sender never pushes a known machine's line out.
        while g.known.bytes + g.unknown.bytes > self.budget.total
            && (g.evict_oldest(true) || (!unknown && g.evict_oldest(false)))
        {}
        g.compact(false);
        g.compact(true);
    }

    /// The newest `limit` lines of a machine (all when `None`), oldest first.
    pub fn lines(&self, key: &MachineKey, limit: Option<usize>) -> Vec<Arc<LogEntry>> {
        let g = self.lock();
        let Some(m) = g.machines.get(key) else {
            return Vec::new();
        };
        let skip = limit.map_or(0, |l| m.lines.len().saturating_sub(l));
        m.lines.iter().skip(skip).map(|s| s.entry.clone()).collect()
    }

    /// Every machine with stored lines, and how many.
    pub fn machines(&self) -> Vec<(MachineKey, usize)> {
        let g = self.lock();
        let mut v: Vec<_> = g
            .machines
            .iter()
            .map(|(k, m)| (MachineKey::clone(k), m.lines.len()))
            .collect();
        v.sort();
        v
    }

    /// Find a machine by what a user types: `name` (in `namespace` when given, else in any
    /// namespace when unambiguous) or an IP address.
    pub fn resolve(&self, name: &str, namespace: Option<&str>) -> Option<MachineKey> {
        let g = self.lock();
        let mut found = g.machines.keys().filter(|k| match &***k {
            MachineKey::Hardware {
                namespace: ns,
                name: n,
            } => n == name && namespace.is_none_or(|want| want == ns),
            MachineKey::Address(_) => false,
        });
        if let Some(first) = found.next() {
            return if found.next().is_none() {
                Some(MachineKey::clone(first))
            } else {
                None
            };
        }
        let ip: IpAddr = name.parse().ok()?;
        let key = MachineKey::Address(canonical(ip));
        g.machines.contains_key(&key).then_some(key)
    }

    /// Lines stored.
    pub fn len(&self) -> usize {
        let g = self.lock();
        g.known.lines + g.unknown.lines
    }

    /// Bytes stored (lines and machine keys, as [`Budget`] counts them).
    pub fn bytes(&self) -> usize {
        let g = self.lock();
        g.known.bytes + g.unknown.bytes
    }

    /// Bytes stored for known machines.
    pub fn known_bytes(&self) -> usize {
        self.lock().known.bytes
    }

    /// Bytes stored for unknown senders.
    pub fn unknown_bytes(&self) -> usize {
        self.lock().unknown.bytes
    }

    /// The budgets in force.
    pub fn budget(&self) -> Budget {
        self.budget
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Lines dropped by the budgets so far.
    pub fn evicted(&self) -> u64 {
        self.lock().evicted
    }

    /// Bytes freed by the budgets so far (lines, and the keys of machines that went).
    pub fn evicted_bytes(&self) -> u64 {
        self.lock().evicted_bytes
    }

    /// Arrival queue lengths including lazily-skipped entries (tests: bounded memory).
    pub fn order_len(&self) -> usize {
        let g = self.lock();
        g.known.order.len() + g.unknown.order.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn ip(n: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, n))
    }

    fn hw(name: &str) -> MachineKey {
        MachineKey::Hardware {
            namespace: "default".into(),
            name: name.into(),
        }
    }

    #[test]
    fn parses_rfc5424_and_rfc3164() {
        let e = parse(
            b"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog 1234 ID47 - An application event\n",
            ip(1),
            8192,
        );
        assert_eq!(e.facility, Some("local4"));
        assert_eq!(e.severity, Some("notice"));
        assert_eq!(e.hostname.as_deref(), Some("mymachine.example.com"));
        assert_eq!(e.app.as_deref(), Some("evntslog"));
        assert_eq!(e.procid.as_deref(), Some("1234"));
        assert_eq!(e.msgid.as_deref(), Some("ID47"));
        assert_eq!(e.message, "An application event");
        assert!(e.timestamp.unwrap().starts_with("2003-10-11T22:14:15.003"));

        let e = parse(
            b"<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick",
            ip(1),
            8192,
        );
        assert_eq!(e.facility, Some("auth"));
        assert_eq!(e.severity, Some("crit"));
        assert_eq!(e.hostname.as_deref(), Some("mymachine"));
        assert_eq!(e.app.as_deref(), Some("su"));
        assert_eq!(e.message, "'su root' failed for lonvick");

        let e = parse(
            br#"<14>1 - host tink-agent - - - {"level":"info","msg":"action done"}"#,
            ip(1),
            8192,
        );
        assert_eq!(e.json.unwrap()["msg"], "action done");

        let e = parse(b"no header at all", ip(1), 8192);
        assert_eq!(e.message, "no header at all");
        let e = parse(&[0xff, 0xfe, b'x'], ip(1), 8192);
        assert!(e.message.contains('x'));
        let e = parse(&[b'a'; 100], ip(1), 64);
        assert_eq!(e.message.len(), 64);
    }

    /// A parsed line with a fixed arrival time, so equal texts cost the same.
    fn entry(text: &str, src: IpAddr) -> LogEntry {
        let mut e = parse(text.as_bytes(), src, 8192);
        e.received = "2026-01-01T00:00:00Z".into();
        e
    }

    fn big() -> Budget {
        Budget {
            per_machine: 1 << 20,
            total: 1 << 24,
            unknown: 1 << 22,
        }
    }

    fn messages(s: &LogStore, key: &MachineKey) -> Vec<String> {
        s.lines(key, None)
            .iter()
            .map(|e| e.message.clone())
            .collect()
    }

    #[test]
    fn retention_per_machine_and_total() {
        // Every line here costs `line`, every machine `key`.
        let line = entry("a0", ip(1)).cost();
        let key = hw("a").cost();
        let s = LogStore::new(Budget {
            per_machine: key + 3 * line,
            total: 2 * key + 5 * line,
            unknown: key + line,
        });
        for i in 0..10u8 {
            s.push(hw("a"), entry(&format!("a{i}"), ip(1)));
        }
        assert_eq!(messages(&s, &hw("a")), ["a7", "a8", "a9"]);
        for i in 0..3u8 {
            s.push(hw("b"), entry(&format!("b{i}"), ip(2)));
        }
        // Total of five lines and two keys: the oldest of a goes first.
        assert_eq!(s.len(), 5);
        assert_eq!(s.bytes(), 2 * key + 5 * line);
        assert_eq!(messages(&s, &hw("a")), ["a8", "a9"]);
        assert_eq!(s.lines(&hw("b"), Some(2)).len(), 2);
        assert_eq!(s.lines(&hw("b"), Some(2))[0].message, "b1");
        assert_eq!(s.evicted(), 8);
        assert_eq!(s.evicted_bytes(), 8 * line as u64);
    }

    #[test]
    fn budgets_count_bytes_not_lines() {
        // A JSON body decodes into a value many times its text; the budget counts that.
        let zeros = vec!["0"; 2000].join(",");
        let heavy_line = format!(r#"{{"a":[{zeros}]}}"#);
        // Parsed afresh each time: a clone's capacities (so its cost) may be smaller.
        let parsed = || entry(&heavy_line, ip(1));
        let heavy = parsed();
        assert!(heavy.json.is_some());
        assert!(
            heavy.cost() > 10 * heavy.message.len(),
            "{} bytes for a {}-byte message",
            heavy.cost(),
            heavy.message.len()
        );
        let light = entry("x", ip(1));
        let s = LogStore::new(Budget {
            per_machine: 256 << 10,
            total: 1 << 20,
            unknown: 256 << 10,
        });
        for _ in 0..100 {
            s.push(hw("a"), parsed());
        }
        assert!(s.bytes() <= 256 << 10, "{} bytes kept", s.bytes());
        assert_eq!(s.len(), ((256 << 10) - hw("a").cost()) / heavy.cost());
        // The same budget holds many more small lines.
        for _ in 0..10_000 {
            s.push(hw("b"), light.clone());
        }
        assert_eq!(
            s.lines(&hw("b"), None).len(),
            ((256 << 10) - hw("b").cost()) / light.cost()
        );
        assert!(s.bytes() <= 1 << 20);
        // A machine's key is part of what it holds.
        let long = MachineKey::Hardware {
            namespace: "default".into(),
            name: "n".repeat(200),
        };
        let s = LogStore::new(big());
        s.push(long.clone(), light.clone());
        assert_eq!(s.bytes(), long.cost() + light.cost());
        assert!(long.cost() > 200);
        // A line bigger than the per-machine budget is not kept at all.
        let s = LogStore::new(Budget {
            per_machine: heavy.cost() / 2,
            ..big()
        });
        s.push(hw("a"), parsed());
        assert_eq!((s.len(), s.bytes(), s.machines().len()), (0, 0, 0));
        assert_eq!(s.evicted_bytes(), (hw("a").cost() + heavy.cost()) as u64);
    }

    #[test]
    fn unknown_senders_cannot_push_known_machines_out() {
        let line = entry("x", ip(1)).cost();
        let key = hw("a").cost();
        let s = LogStore::new(Budget {
            per_machine: key + 100 * line,
            total: 2 * key + 150 * line,
            unknown: 40 * line,
        });
        for _ in 0..100 {
            s.push(hw("a"), entry("x", ip(1)));
        }
        // Strangers, one line each from many addresses, and one chatty one.
        for i in 0..10_000u32 {
            let src = IpAddr::V4(Ipv4Addr::from(0x0a01_0000 + i));
            s.push(MachineKey::Address(src), entry("x", src));
            s.push(MachineKey::Address(ip(200)), entry("x", ip(200)));
        }
        assert_eq!(s.lines(&hw("a"), None).len(), 100, "known lines kept");
        assert!(s.unknown_bytes() <= 40 * line);
        assert!(s.unknown_bytes() > 0);
        assert!(s.bytes() <= 2 * key + 150 * line);
        // A known machine takes the room back from strangers first: b fills exactly what is
        // left once every stranger is gone, and a loses nothing.
        for _ in 0..50 {
            s.push(hw("b"), entry("x", ip(2)));
        }
        assert_eq!(s.lines(&hw("a"), None).len(), 100);
        assert_eq!(s.unknown_bytes(), 0);
        assert_eq!(s.lines(&hw("b"), None).len(), 50);
        assert_eq!(s.bytes(), 2 * key + 150 * line);
    }

    #[test]
    fn flood_of_sources_keeps_memory_bounded() {
        let line = entry("x", ip(1)).cost();
        let s = LogStore::new(Budget {
            per_machine: 10 * line + hw("chatty").cost(),
            total: 100 * line,
            unknown: 50 * line,
        });
        for i in 0..10_000u32 {
            let src = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
            s.push(MachineKey::Address(src), entry("x", src));
            s.push(hw("chatty"), entry("y", ip(1)));
        }
        assert!(s.bytes() <= 100 * line);
        assert!(s.unknown_bytes() <= 50 * line);
        assert_eq!(s.lines(&hw("chatty"), None).len(), 10);
        assert!(s.machines().len() <= 50);
        assert!(
            s.order_len() <= 2 * s.len() + 128,
            "order queue {}",
            s.order_len()
        );
    }

    #[test]
    fn resolve_by_name_namespace_or_ip() {
        let s = LogStore::new(big());
        s.push(hw("a"), parse(b"x", ip(1), 100));
        s.push(
            MachineKey::Hardware {
                namespace: "other".into(),
                name: "a".into(),
            },
            parse(b"x", ip(2), 100),
        );
        s.push(MachineKey::Address(ip(9)), parse(b"x", ip(9), 100));
        assert_eq!(s.resolve("a", None), None, "ambiguous");
        assert_eq!(s.resolve("a", Some("default")), Some(hw("a")));
        assert_eq!(
            s.resolve("10.0.0.9", None),
            Some(MachineKey::Address(ip(9)))
        );
        assert_eq!(s.resolve("nope", None), None);
    }
}
