//! The Machine, Job and Task controllers over the embedded store (in a temporary directory)
//! against real BMC emulators: OpenIPMI `ipmi_sim` (lanplus, cipher suite 3) and sushy-tools'
//! `sushy-emulator`. Objects are written to the store as a user would; the tests wait (with a
//! limit) for the conditions the controllers write.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{IpmiSim, Sushy, wait_for};
use serde_json::{Value, json};
use tinkerbell_core::model::bmc::{Job, Machine, Task};
use tinkerbell_core::store::embedded::EmbeddedStore;
use tinkerbell_core::store::{Kind, Object, Store};
use tinkerbell_rufio::Controllers;
use tinkerbell_rufio::controller::Config;
use tokio_util::sync::CancellationToken;

const NS: &str = "tink";

/// An embedded store with the controllers running on it; stopped on drop.
struct Env {
    store: Arc<dyn Store>,
    cancel: CancellationToken,
    controllers: Option<Controllers>,
    _dir: tempfile::TempDir,
}

impl Env {
    fn start(config: Config) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        let cancel = CancellationToken::new();
        let controllers = Controllers::start(config, store.clone(), cancel.clone()).unwrap();
        Env {
            store,
            cancel,
            controllers: Some(controllers),
            _dir: dir,
        }
    }

    async fn create(&self, v: Value) {
        let obj = Object::from_typed_json(v).unwrap();
        self.store.create(obj).await.unwrap();
    }

    async fn secret(&self, name: &str, user: &str, password: &str) {
        self.create(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "namespace": NS},
            "type": "kubernetes.io/basic-auth",
            "stringData": {"username": user, "password": password}
        }))
        .await;
    }

    async fn machine(&self, name: &str, connection: Value) {
        self.create(json!({
            "apiVersion": "bmc.tinkerbell.org/v1alpha1", "kind": "Machine",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"connection": connection}
        }))
        .await;
    }

    async fn job(&self, name: &str, machine: &str, tasks: Value) {
        self.create(json!({
            "apiVersion": "bmc.tinkerbell.org/v1alpha1", "kind": "Job",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"machineRef": {"name": machine, "namespace": NS}, "tasks": tasks}
        }))
        .await;
    }

    async fn get_machine(&self, name: &str) -> Arc<Machine> {
        match self.store.get(Kind::Machine, NS, name).await.unwrap() {
            Object::Machine(m) => m,
            o => panic!("not a Machine: {o:?}"),
        }
    }

    async fn get_task(&self, name: &str) -> Arc<Task> {
        match self.store.get(Kind::Task, NS, name).await.unwrap() {
            Object::Task(t) => t,
            o => panic!("not a Task: {o:?}"),
        }
    }

    /// Wait until the Machine's `Contactable` condition has `status`; return the Machine.
    async fn contactable(&self, name: &str, status: &str) -> Arc<Machine> {
        wait_for(
            &format!("Machine {name} Contactable={status}"),
            Duration::from_secs(30),
            || async {
                let m = self.get_machine(name).await;
                let st = m.status.clone().unwrap_or_default();
                st.conditions
                    .unwrap_or_default()
                    .iter()
                    .any(|c| {
                        c.type_.as_deref() == Some("Contactable")
                            && c.status.as_deref() == Some(status)
                    })
                    .then_some(m)
            },
        )
        .await
    }

    /// Wait until the Job is Completed or Failed; return it.
    async fn finished(&self, name: &str, limit: Duration) -> Arc<Job> {
        wait_for(&format!("Job {name} to finish"), limit, || async {
            let Object::Job(j) = self.store.get(Kind::Job, NS, name).await.unwrap() else {
                panic!("not a Job")
            };
            let done = j
                .status
                .iter()
                .flat_map(|s| s.conditions.iter().flatten())
                .any(|c| {
                    matches!(c.type_.as_deref(), Some("Completed" | "Failed"))
                        && c.status.as_deref() == Some("True")
                });
            done.then_some(j)
        })
        .await
    }

    async fn stop(mut self) {
        self.cancel.cancel();
        tokio::time::timeout(
            Duration::from_secs(10),
            self.controllers.take().unwrap().join(),
        )
        .await
        .expect("controllers stop within 10 s of cancel")
        .unwrap();
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

fn test_config() -> Config {
    Config {
        namespace: Some(NS.into()),
        power_check_interval: Duration::from_secs(3600),
        power_verify_interval: Duration::from_millis(300),
        task_timeout: Duration::from_secs(60),
        bmc_timeout: Duration::from_secs(10),
        ..Config::default()
    }
}

/// Conditions as `type=status[: message]` strings, for assertions with readable failures.
fn job_conditions(j: &Job) -> Vec<(String, String, String)> {
    j.status
        .iter()
        .flat_map(|s| s.conditions.iter().flatten())
        .map(|c| {
            (
                c.type_.clone().unwrap_or_default(),
                c.status.clone().unwrap_or_default(),
                c.message.clone().unwrap_or_default(),
            )
        })
        .collect()
}

fn condition<'a>(
    conds: &'a [(String, String, String)],
    t: &str,
) -> Option<&'a (String, String, String)> {
    conds.iter().find(|c| c.0 == t)
}

/// Condition `t` is there, True.
fn assert_true(conds: &[(String, String, String)], t: &str) {
    let status = condition(conds, t).map(|c| c.1.as_str());
    assert_eq!(status, Some("True"), "{t}: {conds:?}");
}

fn ipmi_connection(port: u16, secret: &str, cipher_suite: &str) -> Value {
    json!({
        "host": "127.0.0.1", "port": port, "insecureTLS": false,
        "authSecretRef": {"name": secret, "namespace": NS},
        "providerOptions": {"ipmitool": {"cipherSuite": cipher_suite}}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_off_pxe_on_completes_against_ipmi_sim() {
    let sim = IpmiSim::start(8);
    sim.ready().await;
    let timeline = Arc::new(tinkerbell_core::timeline::Timeline::new());
    let env = Env::start(Config {
        timeline: Some(timeline.clone()),
        ..test_config()
    });
    env.secret("bmc-auth", "admin", "password").await;
    env.machine("m1", ipmi_connection(sim.port, "bmc-auth", "3"))
        .await;

    let m = env.contactable("m1", "True").await;
    let st = m.status.clone().unwrap();
    assert_eq!(st.power_state.as_deref(), Some("off"));
    let c = &st.conditions.unwrap()[0];
    assert!(c.last_update_time.is_some());
    assert_eq!(c.message, None);

    env.job(
        "provision",
        "m1",
        json!([
            {"powerAction": "off"},
            {"bootDevice": {"device": "pxe", "efiBoot": true}},
            {"powerAction": "on"}
        ]),
    )
    .await;
    let job = env.finished("provision", Duration::from_secs(60)).await;
    let conds = job_conditions(&job);
    assert_true(&conds, "Completed");
    assert_true(&conds, "Running");
    assert!(condition(&conds, "Failed").is_none(), "{conds:?}");
    let st = job.status.clone().unwrap();
    let (start, done) = (st.start_time.unwrap().0, st.completion_time.unwrap().0);
    assert!(start <= done);

    // The Tasks: named and owned as upstream, each with the Machine's connection, each
    // completed in order.
    let uid = job.metadata.uid.clone().unwrap();
    let mut previous_done = None;
    for (n, action) in ["off", "pxe", "on"].iter().enumerate() {
        let t = env.get_task(&format!("provision-task-{n}")).await;
        let owner = &t.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (
                owner.kind.as_str(),
                owner.name.as_str(),
                owner.uid.as_str(),
                owner.controller
            ),
            ("Job", "provision", uid.as_str(), Some(true))
        );
        assert_eq!(
            t.spec.connection.as_ref().unwrap().port,
            Some(i64::from(sim.port))
        );
        let tst = t.status.clone().unwrap();
        let tc = &tst.conditions.unwrap()[0];
        assert_eq!(
            (tc.type_.as_deref(), tc.status.as_deref()),
            (Some("Completed"), Some("True")),
            "task {n} ({action})"
        );
        let (ts, td) = (tst.start_time.unwrap().0, tst.completion_time.unwrap().0);
        assert!(ts <= td);
        if let Some(p) = previous_done {
            assert!(
                p <= ts,
                "task {n} started before the previous one completed"
            );
        }
        previous_done = Some(td);
    }
    // What the BMC was asked to do, in order.
    let sets: Vec<String> = sim
        .hook_log()
        .into_iter()
        .filter(|l| l.starts_with("set "))
        .collect();
    assert_eq!(
        sets,
        ["set power 0", "set boot pxe", "set power 1"],
        "{sets:?}"
    );
    assert_eq!(
        std::fs::read_to_string(sim.path("power")).unwrap().trim(),
        "1"
    );
    // The same three changes in the timeline, under the bmc Machine.
    use tinkerbell_core::timeline::{Phase, Subject};
    let events = timeline.events(&[Subject::bmc(NS, "m1")]);
    let seen: Vec<(Phase, &str)> = events
        .iter()
        .map(|e| (e.phase, e.detail.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            (Phase::PowerOff, "off"),
            (Phase::BootDevice, "pxe persistent=false efi=true"),
            (Phase::PowerOn, "on")
        ],
        "{events:?}"
    );

    // A later Job with the same name, after the first one is deleted, runs afresh (its
    // Tasks are replaced, not mistaken for the old ones).
    env.store
        .delete(Kind::Job, NS, "provision", None)
        .await
        .unwrap();
    env.job("provision", "m1", json!([{"powerAction": "status"}]))
        .await;
    let job = env.finished("provision", Duration::from_secs(30)).await;
    let conds = job_conditions(&job);
    assert_true(&conds, "Completed");
    let t = env.get_task("provision-task-0").await;
    let tc = &t.status.clone().unwrap().conditions.unwrap()[0];
    assert_eq!(tc.message.as_deref(), Some("power state: on"));
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_cipher_suite_unreachable_and_missing_objects_fail_clearly() {
    let sim = IpmiSim::start(8);
    sim.ready().await;
    let env = Env::start(test_config());
    env.secret("bmc-auth", "admin", "password").await;
    env.secret("bad-auth", "admin", "not-the-password").await;
    let closed = common::free_udp_port();
    let cases = [
        (
            "badpw",
            ipmi_connection(sim.port, "bad-auth", "3"),
            "authentication refused: ",
        ),
        (
            "suite17",
            ipmi_connection(sim.port, "bmc-auth", "17"),
            "unsupported: ",
        ),
        (
            "closed",
            ipmi_connection(closed, "bmc-auth", "3"),
            "unreachable: ",
        ),
        (
            "nosecret",
            ipmi_connection(sim.port, "no-such-secret", "3"),
            "Secret tink/no-such-secret not found",
        ),
    ];
    for (name, conn, _) in &cases {
        env.machine(name, conn.clone()).await;
        env.job(&format!("{name}-job"), name, json!([{"powerAction": "on"}]))
            .await;
    }
    env.job("ghost-job", "ghost", json!([{"powerAction": "on"}]))
        .await;

    for (name, _, want) in &cases {
        let m = env.contactable(name, "False").await;
        let st = m.status.clone().unwrap();
        assert_eq!(st.power_state.as_deref(), Some("unknown"), "{name}");
        let msg = st.conditions.unwrap()[0]
            .message
            .clone()
            .unwrap_or_default();
        assert!(
            msg.starts_with(want),
            "Machine {name}: {msg:?} should start with {want:?}"
        );
        assert!(!msg.contains("not-the-password"), "{msg}");

        let job = env
            .finished(&format!("{name}-job"), Duration::from_secs(30))
            .await;
        let conds = job_conditions(&job);
        let failed = condition(&conds, "Failed").unwrap_or_else(|| panic!("{name}: {conds:?}"));
        let prefix = format!("task {NS}/{name}-job-task-0 failed: {want}");
        assert!(
            failed.2.starts_with(&prefix),
            "Job {name}: {:?} should start with {prefix:?}",
            failed.2
        );
        assert!(condition(&conds, "Completed").is_none());
    }
    let job = env.finished("ghost-job", Duration::from_secs(30)).await;
    let conds = job_conditions(&job);
    assert_eq!(
        condition(&conds, "Failed").map(|c| c.2.as_str()),
        Some("machine tink/ghost not found")
    );
    // The wrong password never reached the BMC as a power request.
    assert!(
        !sim.hook_log().iter().any(|l| l.starts_with("set power")),
        "{:?}",
        sim.hook_log()
    );

    // Fixing the Secret's password and the Machine (a spec change) makes it contactable.
    let Object::Secret(s) = env.store.get(Kind::Secret, NS, "bad-auth").await.unwrap() else {
        panic!()
    };
    let mut s = (*s).clone();
    s.data = None;
    s.string_data = Some(
        [
            ("username".to_string(), "admin".to_string()),
            ("password".to_string(), "password".to_string()),
        ]
        .into(),
    );
    env.store.update(Object::Secret(Arc::new(s))).await.unwrap();
    let m = env.get_machine("badpw").await;
    let mut m = (*m).clone();
    m.metadata.labels = Some([("fixed".to_string(), "yes".to_string())].into());
    m.spec.connection.as_mut().unwrap().insecure_tls = Some(true);
    env.store
        .update(Object::Machine(Arc::new(m)))
        .await
        .unwrap();
    let m = env.contactable("badpw", "True").await;
    assert_eq!(
        m.status.clone().unwrap().power_state.as_deref(),
        Some("off")
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bmc_that_stops_answering_mid_job_fails_the_job_and_a_restarted_bmc_works() {
    let mut sim = IpmiSim::start(8);
    sim.ready().await;
    let port = sim.port;
    // Power-on is accepted but the host never comes up: the Task keeps verifying.
    std::fs::write(sim.path("stuck"), "").unwrap();
    let env = Env::start(Config {
        task_timeout: Duration::from_secs(4),
        ..test_config()
    });
    env.secret("bmc-auth", "admin", "password").await;
    env.machine("m1", ipmi_connection(port, "bmc-auth", "3"))
        .await;
    env.job(
        "j1",
        "m1",
        json!([{"powerAction": "off"}, {"powerAction": "on"}]),
    )
    .await;
    wait_for("the power-on request", Duration::from_secs(30), || async {
        sim.hook_log()
            .iter()
            .any(|l| l == "set power 1")
            .then_some(())
    })
    .await;
    sim.stop();

    let job = env.finished("j1", Duration::from_secs(30)).await;
    let conds = job_conditions(&job);
    let failed = condition(&conds, "Failed").unwrap_or_else(|| panic!("{conds:?}"));
    assert!(
        failed.2.starts_with("task tink/j1-task-1 failed: bmc task timeout: power state on not reached within 4s; last error: unreachable: "),
        "{:?}",
        failed.2
    );
    let t0 = env.get_task("j1-task-0").await;
    assert_eq!(
        t0.status.clone().unwrap().conditions.unwrap()[0]
            .type_
            .as_deref(),
        Some("Completed")
    );

    // The BMC comes back on the same address: a new Job works.
    let sim = IpmiSim::start_on(port, 8);
    sim.ready().await;
    env.job("j2", "m1", json!([{"powerAction": "on"}])).await;
    let job = env.finished("j2", Duration::from_secs(30)).await;
    let conds = job_conditions(&job);
    assert_true(&conds, "Completed");
    assert_eq!(
        std::fs::read_to_string(sim.path("power")).unwrap().trim(),
        "1"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redfish_machine_and_job_against_sushy() {
    let sushy = Sushy::start(false);
    sushy.ready().await;
    let env = Env::start(test_config());
    env.secret("bmc-auth", common::REDFISH_USER, common::REDFISH_PASSWORD)
        .await;
    env.machine(
        "node1",
        json!({
            "host": "http://127.0.0.1", "insecureTLS": false,
            "authSecretRef": {"name": "bmc-auth", "namespace": NS},
            "providerOptions": {
                "preferredOrder": ["gofish"],
                "redfish": {"port": sushy.port, "systemName": "node1", "useBasicAuth": true}
            }
        }),
    )
    .await;
    let m = env.contactable("node1", "True").await;
    assert_eq!(
        m.status.clone().unwrap().power_state.as_deref(),
        Some("off")
    );

    env.job(
        "boot",
        "node1",
        json!([
            {"bootDevice": {"device": "pxe", "persistent": true, "efiBoot": true}},
            {"powerAction": "on"}
        ]),
    )
    .await;
    // The fake driver applies power changes 1-11 s later; the Task verifies until then.
    let job = env.finished("boot", Duration::from_secs(60)).await;
    let conds = job_conditions(&job);
    assert_true(&conds, "Completed");

    // What the emulator now reports.
    let c = tinkerbell_rufio::redfish::RedfishClient::new({
        let mut c = sushy.config();
        c.system_name = Some("node1".into());
        c
    })
    .unwrap();
    use tinkerbell_rufio::Bmc;
    assert_eq!(
        c.power_state().await.unwrap(),
        tinkerbell_rufio::PowerState::On
    );
    let boot = c.boot_override().await.unwrap();
    assert_eq!(boot.target.as_deref(), Some("Pxe"), "{boot:?}");
    assert_eq!(boot.enabled.as_deref(), Some("Continuous"), "{boot:?}");
    env.stop().await;
}

/// A minimal Redfish BMC (basic auth, one system) that counts requests in flight; each
/// request takes 20 ms. Returns its port and the highest concurrency seen.
async fn counting_redfish() -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
    use axum::routing::get;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let now = Arc::new(AtomicUsize::new(0));
    let max = Arc::new(AtomicUsize::new(0));
    let handler = |body: Value| {
        let (now, max) = (now.clone(), max.clone());
        move || {
            let (now, max, body) = (now.clone(), max.clone(), body.clone());
            async move {
                let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                max.fetch_max(n, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                now.fetch_sub(1, Ordering::SeqCst);
                axum::Json(body)
            }
        }
    };
    let app = axum::Router::new()
        .route(
            "/redfish/v1",
            get(handler(
                json!({"Systems": {"@odata.id": "/redfish/v1/Systems"}}),
            )),
        )
        .route(
            "/redfish/v1/",
            get(handler(
                json!({"Systems": {"@odata.id": "/redfish/v1/Systems"}}),
            )),
        )
        .route(
            "/redfish/v1/Systems",
            get(handler(
                json!({"Members": [{"@odata.id": "/redfish/v1/Systems/1"}]}),
            )),
        )
        .route(
            "/redfish/v1/Systems/1",
            get(handler(
                json!({"Id": "1", "Name": "server", "PowerState": "On"}),
            )),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (port, max)
}

/// Tasks for one BMC run one at a time, over all Tasks and Machines: eight Tasks created at
/// once (bypassing Jobs) and a Machine on the same BMC all complete, and the BMC never saw
/// two requests at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_operation_at_a_time_per_bmc() {
    let (port, max) = counting_redfish().await;
    let env = Env::start(test_config());
    env.secret("bmc-auth", "admin", "password").await;
    let conn = json!({
        "host": "http://127.0.0.1", "insecureTLS": false,
        "authSecretRef": {"name": "bmc-auth", "namespace": NS},
        "providerOptions": {"preferredOrder": ["gofish"],
                            "redfish": {"port": port, "useBasicAuth": true}}
    });
    env.machine("m1", conn.clone()).await;
    for n in 0..8 {
        env.create(json!({
            "apiVersion": "bmc.tinkerbell.org/v1alpha1", "kind": "Task",
            "metadata": {"name": format!("t{n}"), "namespace": NS},
            "spec": {"task": {"powerAction": "status"}, "connection": conn}
        }))
        .await;
    }
    for n in 0..8 {
        let t = wait_for(
            &format!("Task t{n} to finish"),
            Duration::from_secs(60),
            || async {
                let t = env.get_task(&format!("t{n}")).await;
                let done = t
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| !c.is_empty());
                done.then_some(t)
            },
        )
        .await;
        let c = &t.status.clone().unwrap().conditions.unwrap()[0];
        assert_eq!(
            (
                c.type_.as_deref(),
                c.status.as_deref(),
                c.message.as_deref()
            ),
            (Some("Completed"), Some("True"), Some("power state: on")),
            "t{n}"
        );
    }
    env.contactable("m1", "True").await;
    assert_eq!(
        max.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "requests in flight at once"
    );
    env.stop().await;
}

/// Tasks another controller claimed (`startTime` set) and never finished — a leader killed
/// mid-Job, as `tests/leader_kube.rs` does for real — are inherited by the next controller: it
/// reads the power state first and sends the command only when it has not taken effect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inherited_started_tasks_send_only_what_did_not_take_effect() {
    // Both machines are off: `on` never reached the first, `off` already did on the second.
    let (sim_on, sim_off) = (IpmiSim::start(8), IpmiSim::start(8));
    sim_on.ready().await;
    sim_off.ready().await;
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    let put = |v: Value| {
        let store = store.clone();
        async move {
            store
                .create(Object::from_typed_json(v).unwrap())
                .await
                .unwrap()
        }
    };
    put(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "bmc-auth", "namespace": NS},
        "type": "kubernetes.io/basic-auth",
        "stringData": {"username": "admin", "password": "password"}
    }))
    .await;
    let started = (k8s_openapi::jiff::Timestamp::now()
        - k8s_openapi::jiff::SignedDuration::from_secs(1))
    .to_string();
    for (name, action, port) in [("t-on", "on", sim_on.port), ("t-off", "off", sim_off.port)] {
        let t = put(json!({
            "apiVersion": "bmc.tinkerbell.org/v1alpha1", "kind": "Task",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"task": {"powerAction": action},
                     "connection": ipmi_connection(port, "bmc-auth", "3")}
        }))
        .await;
        let t = t.with_status_json(json!({"startTime": started})).unwrap();
        store.update_status(t).await.unwrap();
    }
    let cancel = CancellationToken::new();
    let controllers = Controllers::start(test_config(), store.clone(), cancel.clone()).unwrap();
    for name in ["t-on", "t-off"] {
        wait_for(
            &format!("Task {name} to complete"),
            Duration::from_secs(30),
            || {
                let store = store.clone();
                async move {
                    let Object::Task(t) = store.get(Kind::Task, NS, name).await.unwrap() else {
                        return None;
                    };
                    t.status
                        .as_ref()?
                        .conditions
                        .iter()
                        .flatten()
                        .any(|c| c.type_.as_deref() == Some("Completed"))
                        .then_some(())
                }
            },
        )
        .await;
    }
    cancel.cancel();
    controllers.join().await.unwrap();
    let sets = |sim: &IpmiSim| -> Vec<String> {
        sim.hook_log()
            .into_iter()
            .filter(|l| l.starts_with("set power"))
            .collect()
    };
    assert_eq!(sets(&sim_on), ["set power 1"], "{:?}", sim_on.hook_log());
    assert_eq!(
        sets(&sim_off),
        Vec::<String>::new(),
        "{:?}",
        sim_off.hook_log()
    );
}
