//! Power-status load for bench/rufio.sh: `power_bench OPS PORT[,PORT...]` runs OPS
//! `power_state` calls (each a full session: open, RAKP, status, close) spread over the
//! IPMI BMCs on 127.0.0.1 at the given ports, one caller per BMC, all BMCs at once, and
//! prints one line of `key=value` results.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tinkerbell_rufio::Bmc;
use tinkerbell_rufio::ipmi::{IpmiClient, IpmiConfig};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let ops: usize = args.next().ok_or("usage: power_bench OPS PORTS")?.parse()?;
    let ports: Vec<u16> = args
        .next()
        .ok_or("usage: power_bench OPS PORTS")?
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let user = std::env::var("BMC_USER").unwrap_or_else(|_| "admin".into());
    let password = std::env::var("BMC_PASSWORD").unwrap_or_else(|_| "password".into());
    let in_flight = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let n = ops / ports.len() + usize::from(i < ops % ports.len());
        let mut cfg = IpmiConfig::new("127.0.0.1", &user, password.as_str().into());
        cfg.port = *port;
        cfg.cipher_suite = Some(3);
        cfg.timeout = Duration::from_secs(1);
        let client = IpmiClient::new(cfg)?;
        let (in_flight, peak) = (in_flight.clone(), peak.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(n);
            let mut errors = 0usize;
            for _ in 0..n {
                let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                let t = Instant::now();
                if client.power_state().await.is_err() {
                    errors += 1;
                }
                lat.push(t.elapsed());
                in_flight.fetch_sub(1, Ordering::SeqCst);
            }
            (lat, errors)
        }));
    }
    let mut lat = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await?;
        lat.extend(l);
        errors += e;
    }
    let total = start.elapsed();
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 - 1.0) * p) as usize].as_secs_f64() * 1000.0;
    println!(
        "ops={} bmcs={} errors={errors} total_s={:.3} ops_per_s={:.1} p50_ms={:.2} p99_ms={:.2} peak_concurrency={}",
        lat.len(),
        ports.len(),
        total.as_secs_f64(),
        lat.len() as f64 / total.as_secs_f64(),
        pct(0.5),
        pct(0.99),
        peak.load(Ordering::SeqCst)
    );
    Ok(())
}
