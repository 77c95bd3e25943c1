//! Acknowledged writes survive `kill -9` at any moment, and batches are all or nothing.
//!
//! The test re-runs its own binary as a writer child (`crash_child`), which creates objects
//! one by one and in batches of ten and prints `ACK <n>` after each write returned. The parent
//! kills it with SIGKILL at a random point, reopens the store, and checks that every acknowledged
//! write is there and that no batch is partially present. Twenty rounds, each resuming where the
//! last one's durable state ended.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;
use tinkerbell_core::store::embedded::EmbeddedStore;
use tinkerbell_core::store::{HardwareLookup, Kind, Object, Store};

const BATCH: u64 = 10;

fn hardware(i: u64) -> Object {
    let mac = format!(
        "02:00:{:02x}:{:02x}:{:02x}:{:02x}",
        (i >> 24) & 0xff,
        (i >> 16) & 0xff,
        (i >> 8) & 0xff,
        i & 0xff
    );
    Object::from_typed_json(json!({
        "apiVersion": "tinkerbell.org/v1alpha1",
        "kind": "Hardware",
        "metadata": {"name": format!("h-{i}"), "namespace": "default"},
        "spec": {"interfaces": [{"dhcp": {"mac": mac, "ip": {"address": format!("10.{}.{}.{}", (i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff)}}}]}
    }))
    .unwrap()
}

/// Even "write numbers" are single creates of h-<n>; odd ones are batches of ten
/// (h-<n>-0 … h-<n>-9 as templates).
fn batch(n: u64) -> Vec<Object> {
    (0..BATCH)
        .map(|k| {
            Object::from_typed_json(json!({
                "apiVersion": "tinkerbell.org/v1alpha1",
                "kind": "Template",
                "metadata": {"name": format!("b-{n}-{k}"), "namespace": "default"},
                "spec": {"data": format!("batch {n} item {k}")}
            }))
            .unwrap()
        })
        .collect()
}

/// The writer. Only does anything when run by `kill_9_never_loses_an_acknowledged_write`.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var("TINKERBELL_CRASH_DIR") else {
        return;
    };
    let start: u64 = std::env::var("TINKERBELL_CRASH_START")
        .unwrap()
        .parse()
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let s = EmbeddedStore::open(std::path::Path::new(&dir)).unwrap();
        println!("READY");
        for n in start.. {
            if n % 2 == 0 {
                s.create(hardware(n)).await.unwrap();
            } else {
                s.apply_all(batch(n)).await.unwrap();
            }
            println!("ACK {n}");
        }
    });
}

fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_never_loses_an_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("seed {seed}");
    let mut start = 0u64;
    let mut total_acked = 0u64;
    for round in 0..20 {
        let mut child = Command::new(&exe)
            .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
            .env("TINKERBELL_CRASH_DIR", dir.path())
            .env("TINKERBELL_CRASH_START", start.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<u64>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.ends_with("READY") {
                    let _ = tx.send(u64::MAX);
                } else if let Some(n) = line.strip_prefix("ACK ") {
                    let _ = tx.send(n.trim().parse().unwrap());
                }
            }
        });
        // Wait until the child has the store open, then let it write for a random while.
        let ready_by = Instant::now() + Duration::from_secs(30);
        loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(u64::MAX) => break,
                Ok(_) => {}
                Err(_) if Instant::now() < ready_by => {}
                Err(e) => panic!("round {round}: writer never became ready: {e}"),
            }
        }
        let delay = 5 + xorshift(&mut seed) % 120;
        std::thread::sleep(Duration::from_millis(delay));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reader.join().unwrap();
        let acked: Vec<u64> = rx.try_iter().filter(|&n| n != u64::MAX).collect();
        total_acked += acked.len() as u64;

        // Reopen and check.
        let s = EmbeddedStore::open(dir.path()).unwrap();
        for &n in &acked {
            if n % 2 == 0 {
                s.get(Kind::Hardware, "default", &format!("h-{n}"))
                    .await
                    .unwrap_or_else(|e| panic!("round {round}: acknowledged h-{n} lost: {e}"));
            } else {
                for k in 0..BATCH {
                    s.get(Kind::Template, "default", &format!("b-{n}-{k}"))
                        .await
                        .unwrap_or_else(|e| {
                            panic!("round {round}: acknowledged batch {n} item {k} lost: {e}")
                        });
                }
            }
        }
        // No batch is partial, including one that was in flight at the kill.
        let templates = s.list(Kind::Template, None).await.unwrap().items;
        let mut per_batch = std::collections::BTreeMap::<String, u64>::new();
        for t in &templates {
            let name = t.name();
            let b = name.rsplit_once('-').unwrap().0.to_string();
            *per_batch.entry(b).or_default() += 1;
        }
        for (b, count) in per_batch {
            assert_eq!(count, BATCH, "round {round}: batch {b} is partial");
        }
        // Lookups were rebuilt.
        let last_hw = (0..start.max(1) + acked.len() as u64 + 2)
            .rev()
            .find(|n| n % 2 == 0 && acked.contains(n));
        if let Some(n) = last_hw {
            let h = hardware(n);
            let mac = h.as_hardware().unwrap().macs()[0].clone();
            assert!(s.hardware_by_mac(&mac).await.unwrap().is_some());
        }
        // Resume after everything durable (acknowledged or not).
        let hw_max = s
            .list(Kind::Hardware, None)
            .await
            .unwrap()
            .items
            .iter()
            .filter_map(|o| o.name().strip_prefix("h-")?.parse::<u64>().ok())
            .max();
        let batch_max = templates
            .iter()
            .filter_map(|o| {
                o.name()
                    .strip_prefix("b-")?
                    .split('-')
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .max();
        start = hw_max
            .into_iter()
            .chain(batch_max)
            .max()
            .map_or(start, |m| m + 1);
        drop(s);
    }
    eprintln!("{total_acked} acknowledged writes over 20 kills");
    assert!(
        total_acked > 20,
        "the writer should have acknowledged writes ({total_acked})"
    );
}
