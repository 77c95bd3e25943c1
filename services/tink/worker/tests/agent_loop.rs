//! The agent loop over an in-memory transport: actions run one at a time, RUNNING then a final
//! state with a duration; transient errors (getting work, reporting) are retried; a failed
//! action does not stop the loop.

mod common;

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use common::*;
use tinkerbell_tink_worker::agent::{
    self, AgentSettings, Assignment, Event, Report, State, Transport, TransportError,
};
use tokio_util::sync::CancellationToken;

struct Fake {
    queue: Mutex<VecDeque<Result<Option<Assignment>, TransportError>>>,
    reports: Mutex<Vec<(String, Report)>>,
    logs: Mutex<Vec<(String, agent::LogLine)>>,
    /// Transient failures to inject into the next final-status reports.
    fail_reports: Mutex<u32>,
}

impl Transport for Fake {
    async fn next_action(&self) -> Result<Option<Assignment>, TransportError> {
        self.queue.lock().unwrap().pop_front().unwrap_or(Ok(None))
    }
    async fn report(&self, a: &Assignment, r: &Report) -> Result<(), TransportError> {
        if r.state != State::Running {
            let mut f = self.fail_reports.lock().unwrap();
            if *f > 0 {
                *f -= 1;
                return Err(TransportError::Transient("server restarting".into()));
            }
        }
        self.reports
            .lock()
            .unwrap()
            .push((a.action_id.clone(), r.clone()));
        Ok(())
    }
    async fn push_logs(
        &self,
        a: &Assignment,
        lines: Vec<agent::LogLine>,
    ) -> Result<(), TransportError> {
        let mut l = self.logs.lock().unwrap();
        l.extend(lines.into_iter().map(|line| (a.action_id.clone(), line)));
        Ok(())
    }
}

fn assignment(id: &str, image: &str, env: &[(&str, &str)]) -> Assignment {
    Assignment {
        workflow_id: "default/wf".into(),
        task_id: "t".into(),
        action_id: id.into(),
        action: spec(image, env),
    }
}

#[tokio::test]
async fn runs_actions_in_order_and_survives_failures() {
    let srv = Server::start().await;
    let data = image(8);
    srv.put("img.raw.zst", &zstd::encode_all(&data[..], 1).unwrap());
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("disk");
    let fake = Fake {
        queue: Mutex::new(VecDeque::from([
            Err(TransportError::Transient("connection refused".into())),
            Ok(Some(assignment(
                "a1",
                "quay.io/tinkerbell/actions/rootio:latest",
                &[],
            ))),
            Ok(None),
            Ok(Some(assignment(
                "a2",
                "quay.io/tinkerbell/actions/image2disk:latest",
                &[
                    ("IMG_URL", &srv.url("f", "img.raw.zst")),
                    ("DEST_DISK", dest.to_str().unwrap()),
                    ("COMPRESSED", "true"),
                ],
            ))),
        ])),
        reports: Mutex::new(Vec::new()),
        logs: Mutex::new(Vec::new()),
        fail_reports: Mutex::new(0),
    };
    *fake.fail_reports.lock().unwrap() = 0;
    let settings = AgentSettings {
        retry_interval: Duration::from_millis(20),
        backoff_max: Duration::from_millis(100),
        default_timeout: Duration::from_secs(60),
    };
    let cancel = CancellationToken::new();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let ctx = ctx();
    let run = agent::run(&fake, &settings, &ctx, &cancel, Some(tx), &|_| {
        panic!("no power action expected")
    });
    let watch = async {
        let mut done = Vec::new();
        while let Some(Event::Finished { assignment, state }) = rx.recv().await {
            done.push((assignment.action_id, state));
            if done.len() == 1 {
                // The server "restarts" while the second action runs: its final status fails twice.
                *fake.fail_reports.lock().unwrap() = 2;
            }
            if done.len() == 2 {
                break;
            }
        }
        cancel.cancel();
        done
    };
    let ((), done) =
        tokio::time::timeout(Duration::from_secs(60), async { tokio::join!(run, watch) })
            .await
            .expect("the loop finished both actions in time");
    assert_eq!(
        done,
        [
            ("a1".to_string(), State::Failed),
            ("a2".to_string(), State::Success)
        ]
    );
    let reports = fake.reports.lock().unwrap();
    let states: Vec<_> = reports
        .iter()
        .map(|(id, r)| (id.as_str(), r.state))
        .collect();
    assert_eq!(
        states,
        [
            ("a1", State::Running),
            ("a1", State::Failed),
            ("a2", State::Running),
            ("a2", State::Success)
        ]
    );
    let (_, failed) = &reports[1];
    assert!(failed.message.contains("rootio"), "{}", failed.message);
    let (_, ok) = &reports[3];
    assert!(ok.stopped.is_some() && ok.duration > Duration::ZERO);
    assert!(std::fs::read(&dest).unwrap() == data);
    let logs = fake.logs.lock().unwrap();
    assert!(
        logs.iter()
            .any(|(id, l)| id == "a1" && l.text.starts_with("FAILED: ")),
        "{logs:?}"
    );
    assert!(
        logs.iter()
            .any(|(id, l)| id == "a2" && l.text.starts_with("SUCCESS: wrote")),
        "{logs:?}"
    );
    assert!(
        logs.iter()
            .any(|(id, l)| id == "a2" && l.text.starts_with("progress: ")),
        "{logs:?}"
    );
}
