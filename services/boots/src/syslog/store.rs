//! Parsed syslog lines, kept per machine with bounded retention.

use std::collections::{HashMap, VecDeque};
use std::fmt;
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

#[derive(Debug, Default)]
struct Inner {
    machines: HashMap<MachineKey, VecDeque<(u64, Arc<LogEntry>)>>,
    /// Arrival order over all machines; entries already evicted per machine are skipped
    /// lazily and compacted when the queue gets long.
    order: VecDeque<(u64, MachineKey)>,
    next: u64,
    len: usize,
    evicted: u64,
}

impl Inner {
    fn live(&self, seq: u64, key: &MachineKey) -> bool {
        self.machines
            .get(key)
            .and_then(|q| q.front())
            .is_some_and(|(front, _)| *front <= seq)
    }

    fn pop_machine_front(&mut self, key: &MachineKey) {
        if let Some(q) = self.machines.get_mut(key) {
            q.pop_front();
            self.len -= 1;
            self.evicted += 1;
            if q.is_empty() {
                self.machines.remove(key);
            }
        }
    }
}

/// Lines per machine, bounded per machine and in total.
#[derive(Debug)]
pub struct LogStore {
    per_machine: usize,
    total: usize,
    inner: Mutex<Inner>,
}

impl LogStore {
    /// An empty store.
    pub fn new(per_machine: usize, total: usize) -> LogStore {
        LogStore {
            per_machine: per_machine.max(1),
            total: total.max(1),
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Store a line; the oldest lines go when a limit is reached.
    pub fn push(&self, key: MachineKey, entry: LogEntry) {
        let mut g = self.lock();
        let seq = g.next;
        g.next += 1;
        g.machines
            .entry(key.clone())
            .or_default()
            .push_back((seq, Arc::new(entry)));
        g.order.push_back((seq, key.clone()));
        g.len += 1;
        if g.machines.get(&key).map_or(0, VecDeque::len) > self.per_machine {
            g.pop_machine_front(&key);
        }
        while g.len > self.total {
            let Some((s, k)) = g.order.pop_front() else {
                break;
            };
            if g.live(s, &k) {
                g.pop_machine_front(&k);
            }
        }
        if g.order.len() > 2 * self.total {
            let order = std::mem::take(&mut g.order);
            g.order = order.into_iter().filter(|(s, k)| g.live(*s, k)).collect();
        }
    }

    /// The newest `limit` lines of a machine (all when `None`), oldest first.
    pub fn lines(&self, key: &MachineKey, limit: Option<usize>) -> Vec<Arc<LogEntry>> {
        let g = self.lock();
        let Some(q) = g.machines.get(key) else {
            return Vec::new();
        };
        let skip = limit.map_or(0, |l| q.len().saturating_sub(l));
        q.iter().skip(skip).map(|(_, e)| e.clone()).collect()
    }

    /// Every machine with stored lines, and how many.
    pub fn machines(&self) -> Vec<(MachineKey, usize)> {
        let g = self.lock();
        let mut v: Vec<_> = g
            .machines
            .iter()
            .map(|(k, q)| (k.clone(), q.len()))
            .collect();
        v.sort();
        v
    }

    /// Find a machine by what a user types: `name` (in `namespace` when given, else in any
    /// namespace when unambiguous) or an IP address.
    pub fn resolve(&self, name: &str, namespace: Option<&str>) -> Option<MachineKey> {
        let g = self.lock();
        let mut found = g.machines.keys().filter(|k| match k {
            MachineKey::Hardware {
                namespace: ns,
                name: n,
            } => n == name && namespace.is_none_or(|want| want == ns),
            MachineKey::Address(_) => false,
        });
        if let Some(first) = found.next() {
            return if found.next().is_none() {
                Some(first.clone())
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
        self.lock().len
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Lines dropped by the retention limits so far.
    pub fn evicted(&self) -> u64 {
        self.lock().evicted
    }

    /// Queue length including lazily-skipped entries (tests: bounded memory).
    pub fn order_len(&self) -> usize {
        self.lock().order.len()
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

    #[test]
    fn retention_per_machine_and_total() {
        let s = LogStore::new(3, 5);
        for i in 0..10u8 {
            s.push(hw("a"), parse(format!("a{i}").as_bytes(), ip(1), 100));
        }
        let a: Vec<String> = s
            .lines(&hw("a"), None)
            .iter()
            .map(|e| e.message.clone())
            .collect();
        assert_eq!(a, ["a7", "a8", "a9"]);
        for i in 0..3u8 {
            s.push(hw("b"), parse(format!("b{i}").as_bytes(), ip(2), 100));
        }
        // Total 5: the oldest of a goes first.
        assert_eq!(s.len(), 5);
        let a: Vec<String> = s
            .lines(&hw("a"), None)
            .iter()
            .map(|e| e.message.clone())
            .collect();
        assert_eq!(a, ["a8", "a9"]);
        assert_eq!(s.lines(&hw("b"), Some(2)).len(), 2);
        assert_eq!(s.lines(&hw("b"), Some(2))[0].message, "b1");
        assert_eq!(s.evicted(), 8);
    }

    #[test]
    fn flood_of_sources_keeps_memory_bounded() {
        let s = LogStore::new(10, 100);
        for i in 0..10_000u32 {
            let src = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
            s.push(MachineKey::Address(src), parse(b"x", src, 100));
            s.push(hw("chatty"), parse(b"y", ip(1), 100));
        }
        assert_eq!(s.len(), 100);
        assert!(s.machines().len() <= 100);
        assert!(s.order_len() <= 200, "order queue {}", s.order_len());
    }

    #[test]
    fn resolve_by_name_namespace_or_ip() {
        let s = LogStore::new(10, 100);
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
