//! Controller load for bench/rufio.sh: `task_bench TASKS PORT[,PORT...]` opens an embedded
//! store in a temporary directory, starts the rufio controllers on it, creates TASKS bmc
//! Tasks spread over the IPMI BMCs on 127.0.0.1 at the given ports (power `on` for BMCs at
//! even positions, `off` for the others, so a verification never races another Task), and
//! waits until every Task is Completed or Failed. Each Task is a claim write, the power
//! action (one session), the verification (another session) and the completion write.
//! Prints one line of `key=value` results.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tinkerbell_core::store::embedded::EmbeddedStore;
use tinkerbell_core::store::{Kind, Object, Store};
use tinkerbell_rufio::Controllers;
use tinkerbell_rufio::controller::Config;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: task_bench TASKS PORTS";
    let tasks: usize = args.next().ok_or(usage)?.parse()?;
    let ports: Vec<u16> = args
        .next()
        .ok_or(usage)?
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let dir = tempfile::tempdir()?;
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path())?);
    let cancel = CancellationToken::new();
    let controllers = Controllers::start(
        Config {
            namespace: Some("bench".into()),
            ..Config::default()
        },
        store.clone(),
        cancel.clone(),
    )?;
    store
        .create(Object::from_typed_json(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "bmc-auth", "namespace": "bench"},
            "stringData": {"username": "admin", "password": "password"}
        }))?)
        .await?;
    let start = Instant::now();
    for n in 0..tasks {
        let b = n % ports.len();
        let action = if b.is_multiple_of(2) { "on" } else { "off" };
        store
            .create(Object::from_typed_json(json!({
                "apiVersion": "bmc.tinkerbell.org/v1alpha1", "kind": "Task",
                "metadata": {"name": format!("t{n}"), "namespace": "bench"},
                "spec": {"task": {"powerAction": action}, "connection": {
                    "host": "127.0.0.1", "port": ports[b], "insecureTLS": false,
                    "authSecretRef": {"name": "bmc-auth", "namespace": "bench"},
                    "providerOptions": {"preferredOrder": ["ipmitool"], "ipmitool": {"cipherSuite": "3"}}
                }}
            }))?)
            .await?;
    }
    let (completed, failed) = loop {
        let list = store.list(Kind::Task, Some("bench")).await?;
        let (mut c, mut f) = (0, 0);
        for t in &list.items {
            let Object::Task(t) = t else { continue };
            for cond in t.status.iter().flat_map(|s| s.conditions.iter().flatten()) {
                match cond.type_.as_deref() {
                    Some("Completed") => c += 1,
                    Some("Failed") => {
                        f += 1;
                        if f == 1 {
                            eprintln!("first failure: {:?}", cond.message);
                        }
                    }
                    _ => {}
                }
            }
        }
        if c + f >= tasks {
            break (c, f);
        }
        if start.elapsed() > Duration::from_secs(600) {
            return Err(format!("only {c} completed and {f} failed after 600 s").into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let total = start.elapsed().as_secs_f64();
    cancel.cancel();
    controllers.join().await?;
    println!(
        "tasks={tasks} bmcs={} completed={completed} failed={failed} total_s={total:.3} tasks_per_s={:.1}",
        ports.len(),
        tasks as f64 / total
    );
    Ok(())
}
