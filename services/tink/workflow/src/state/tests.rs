use super::*;
use proptest::prelude::*;
use tinkerbell_model::WorkflowSpec;

fn t(secs: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + secs).unwrap()
}

fn action(id: &str, timeout: i64, retries: i64) -> WorkflowAction {
    WorkflowAction {
        id: Some(id.into()),
        name: Some(format!("name-{id}")),
        image: Some("img".into()),
        timeout: Some(timeout),
        retries: (retries > 0).then_some(retries),
        ..Default::default()
    }
}

/// Tasks of `shape[i]` actions each, action ids `t<i>a<j>`.
fn tasks(shape: &[usize], timeout: i64, retries: i64) -> Vec<WorkflowTask> {
    shape
        .iter()
        .enumerate()
        .map(|(ti, n)| WorkflowTask {
            id: Some(format!("task-{ti}")),
            name: Some(format!("task{ti}")),
            agent_id: Some("aa:bb:cc:dd:ee:ff".into()),
            actions: Some(
                (0..*n)
                    .map(|ai| action(&format!("t{ti}a{ai}"), timeout, retries))
                    .collect(),
            ),
            ..Default::default()
        })
        .collect()
}

fn started(shape: &[usize], global: i64, preparing: bool) -> WorkflowStatus {
    let mut st = WorkflowStatus::default();
    begin(&mut st, tasks(shape, 0, 0), global, preparing).unwrap();
    st
}

fn wf(status: WorkflowStatus) -> Workflow {
    let mut w = Workflow::new("w", WorkflowSpec::default());
    w.status = Some(status);
    w
}

fn states(st: &WorkflowStatus) -> Vec<String> {
    st.tasks
        .iter()
        .flatten()
        .flat_map(|t| t.actions.iter().flatten())
        .map(|a| a.state.clone().unwrap_or_default())
        .collect()
}

#[test]
fn full_run_reaches_post_then_success() {
    let mut st = started(&[2, 1], 100, false);
    assert_eq!(st.state.as_deref(), Some("PENDING"));
    for (i, id) in ["t0a0", "t0a1", "t1a0"].into_iter().enumerate() {
        let next = next_action(&wf(st.clone())).unwrap();
        assert_eq!(next.action_id, id);
        assert_eq!(next.flat_index, i);
        mark_served(&mut st, &next, "aa:bb:cc:dd:ee:ff");
        let secs = i64::try_from(i).unwrap() * 10;
        assert_eq!(
            report(
                &mut st,
                ActionKey::Id(id),
                State::Running,
                Some("Started"),
                t(secs)
            ),
            Ok(Outcome::Started)
        );
        // Re-served while RUNNING (a restarted worker continues).
        assert_eq!(next_action(&wf(st.clone())).unwrap().state, State::Running);
        let out = report(
            &mut st,
            ActionKey::Id(id),
            State::Success,
            Some("ok"),
            t(secs + 5),
        );
        assert_eq!(
            out,
            Ok(if i == 2 {
                Outcome::Post
            } else {
                Outcome::Advanced
            })
        );
        check_invariants(&st).unwrap();
    }
    assert_eq!(st.state.as_deref(), Some("POST"));
    assert_eq!(
        next_action(&wf(st.clone())),
        Err(NoAction::NotRunnable("POST".into()))
    );
    let a = &st.tasks.as_ref().unwrap()[0].actions.as_ref().unwrap()[0];
    assert_eq!(a.execution_start, Some(Time(t(0))));
    assert_eq!(a.execution_stop, Some(Time(t(5))));
    assert_eq!(a.execution_duration.as_deref(), Some("5s"));
    assert_eq!(a.message.as_deref(), Some("ok"));
    // Global stop = first start + global timeout.
    assert_eq!(st.global_execution_stop, Some(Time(t(100))));
    post_done(&mut st).unwrap();
    assert_eq!(st.state.as_deref(), Some("SUCCESS"));
    assert!(post_done(&mut st).is_err());
}

#[test]
fn reports_are_checked() {
    let mut st = started(&[2], 0, false);
    let err = report(&mut st, ActionKey::Id("t0a1"), State::Running, None, t(0)).unwrap_err();
    assert!(matches!(err, TransitionError::NotCurrent { .. }), "{err}");
    let err = report(&mut st, ActionKey::Id("nope"), State::Running, None, t(0)).unwrap_err();
    assert!(matches!(err, TransitionError::UnknownAction(_)));
    // PENDING → SUCCESS skips RUNNING; PENDING is never reported.
    for bad in [
        State::Success,
        State::Pending,
        State::Post,
        State::Preparing,
    ] {
        let err = report(&mut st, ActionKey::Id("t0a0"), bad, None, t(0)).unwrap_err();
        assert!(
            matches!(err, TransitionError::IllegalActionTransition { .. }),
            "{bad}: {err}"
        );
    }
    // Legacy names.
    let key = ActionKey::Names {
        task: "task0",
        action: "name-t0a0",
    };
    assert_eq!(
        report(&mut st, key, State::Running, None, t(0)),
        Ok(Outcome::Started)
    );
    assert_eq!(
        report(&mut st, key, State::Running, None, t(1)),
        Ok(Outcome::Unchanged)
    );
    assert_eq!(
        report(&mut st, key, State::Success, None, t(2)),
        Ok(Outcome::Advanced)
    );
    // A retried SUCCESS report of the previous action is harmless.
    assert_eq!(
        report(&mut st, key, State::Success, None, t(3)),
        Ok(Outcome::Unchanged)
    );
    let wrong_task = ActionKey::Names {
        task: "task9",
        action: "name-t0a1",
    };
    assert!(report(&mut st, wrong_task, State::Running, None, t(3)).is_err());
}

#[test]
fn failure_ends_the_workflow_and_stays_terminal() {
    let mut st = started(&[2], 0, false);
    report(&mut st, ActionKey::Id("t0a0"), State::Running, None, t(0)).unwrap();
    assert_eq!(
        report(
            &mut st,
            ActionKey::Id("t0a0"),
            State::Failed,
            Some("exit 1"),
            t(1)
        ),
        Ok(Outcome::Finished(State::Failed))
    );
    assert_eq!(st.state.as_deref(), Some("FAILED"));
    assert_eq!(
        st.current_state.as_ref().unwrap().state.as_deref(),
        Some("FAILED")
    );
    assert_eq!(
        report(&mut st, ActionKey::Id("t0a0"), State::Failed, None, t(2)),
        Ok(Outcome::Unchanged)
    );
    for s in [State::Running, State::Success] {
        assert!(report(&mut st, ActionKey::Id("t0a0"), s, None, t(2)).is_err());
        assert!(report(&mut st, ActionKey::Id("t0a1"), s, None, t(2)).is_err());
    }
    assert!(next_action(&wf(st.clone())).is_err());
    assert!(check_timeouts(&mut st, t(1_000_000)).is_none());
    check_invariants(&st).unwrap();
}

#[test]
fn retries_reset_the_action() {
    let mut st = WorkflowStatus::default();
    begin(&mut st, tasks(&[1], 0, 2), 0, false).unwrap();
    let id = ActionKey::Id("t0a0");
    for attempt in 1..=2 {
        report(&mut st, id, State::Running, None, t(0)).unwrap();
        assert_eq!(
            report(&mut st, id, State::Timeout, None, t(1)),
            Ok(Outcome::Retry { attempt })
        );
        assert_eq!(states(&st), ["PENDING"]);
        assert_eq!(st.state.as_deref(), Some("RUNNING"));
        assert_eq!(next_action(&wf(st.clone())).unwrap().state, State::Pending);
        check_invariants(&st).unwrap();
    }
    report(&mut st, id, State::Running, None, t(0)).unwrap();
    assert_eq!(
        report(&mut st, id, State::Failed, None, t(1)),
        Ok(Outcome::Finished(State::Failed))
    );
    let a = &st.tasks.as_ref().unwrap()[0].actions.as_ref().unwrap()[0];
    assert_eq!(a.attempts, Some(2));
}

#[test]
fn timeouts() {
    // Per-action timeout, no retries: TIMEOUT.
    let mut st = WorkflowStatus::default();
    begin(&mut st, tasks(&[2], 10, 0), 1000, false).unwrap();
    assert_eq!(
        check_timeouts(&mut st, t(500)),
        None,
        "PENDING never times out"
    );
    report(&mut st, ActionKey::Id("t0a0"), State::Running, None, t(0)).unwrap();
    assert_eq!(check_timeouts(&mut st, t(10)), None);
    assert_eq!(
        check_timeouts(&mut st, t(11)),
        Some(Outcome::Finished(State::Timeout))
    );
    assert_eq!(states(&st), ["TIMEOUT", "PENDING"]);
    check_invariants(&st).unwrap();

    // Global timeout wins over retries, also between actions.
    let mut st = WorkflowStatus::default();
    begin(&mut st, tasks(&[2], 0, 5), 100, false).unwrap();
    report(&mut st, ActionKey::Id("t0a0"), State::Running, None, t(0)).unwrap();
    report(&mut st, ActionKey::Id("t0a0"), State::Success, None, t(50)).unwrap();
    assert_eq!(check_timeouts(&mut st, t(100)), None);
    assert_eq!(
        check_timeouts(&mut st, t(101)),
        Some(Outcome::Finished(State::Timeout))
    );
    assert_eq!(st.state.as_deref(), Some("TIMEOUT"));
    assert_eq!(states(&st), ["SUCCESS", "TIMEOUT"]);
    check_invariants(&st).unwrap();
}

#[test]
fn preparing_and_controller_transitions() {
    let mut st = started(&[1], 0, true);
    assert_eq!(next_action(&wf(st.clone())), Err(NoAction::Preparing));
    assert!(report(&mut st, ActionKey::Id("t0a0"), State::Running, None, t(0)).is_err());
    assert!(begin(&mut st, tasks(&[1], 0, 0), 0, false).is_err());
    assert!(post_done(&mut st).is_err());
    prepared(&mut st).unwrap();
    assert!(prepared(&mut st).is_err());
    assert_eq!(next_action(&wf(st.clone())).unwrap().action_id, "t0a0");

    let mut st = started(&[1], 0, true);
    prepare_failed(&mut st).unwrap();
    assert_eq!(st.state.as_deref(), Some("FAILED"));
    check_invariants(&st).unwrap();

    let mut disabled = wf(started(&[1], 0, false));
    disabled.spec.disabled = Some(true);
    assert_eq!(next_action(&disabled), Err(NoAction::Disabled));
    assert_eq!(
        next_action(&wf(WorkflowStatus::default())),
        Err(NoAction::NotRendered)
    );
}

#[test]
fn legacy_states_are_normalized() {
    let mut st = started(&[1], 0, false);
    st.state = Some("STATE_RUNNING".into());
    st.tasks.as_mut().unwrap()[0].actions.as_mut().unwrap()[0].state = Some("STATE_RUNNING".into());
    assert_eq!(workflow_state(&st), Some(State::Running));
    assert!(normalize_legacy(&mut st));
    assert!(!normalize_legacy(&mut st));
    assert_eq!(st.state.as_deref(), Some("RUNNING"));
    assert_eq!(states(&st), ["RUNNING"]);
}

#[test]
fn go_durations() {
    for (nanos, want) in [
        (0, "0s"),
        (999, "999ns"),
        (1_500, "1.5µs"),
        (250_000_000, "250ms"),
        (1_500_000_000, "1.5s"),
        (61_000_000_000, "1m1s"),
        (3_723_500_000_000, "1h2m3.5s"),
        (3_600_000_000_000, "1h0m0s"),
        (-2_000_000_000, "-2s"),
    ] {
        assert_eq!(go_duration(SignedDuration::from_nanos(nanos)), want);
    }
}

/// One thing that can happen to a workflow.
#[derive(Clone, Debug)]
enum Event {
    /// A worker reports `state` for action number `action` (flattened, may be out of range).
    Report {
        action: usize,
        state: usize,
        by_name: bool,
    },
    /// A worker fetches the next action.
    Serve,
    /// Time passes and the controller checks timeouts.
    Tick(i64),
    Prepared,
    PrepareFailed,
    PostDone,
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        6 => (0usize..6, 0usize..7, any::<bool>())
            .prop_map(|(action, state, by_name)| Event::Report { action, state, by_name }),
        2 => Just(Event::Serve),
        2 => (0i64..40).prop_map(Event::Tick),
        1 => Just(Event::Prepared),
        1 => Just(Event::PrepareFailed),
        1 => Just(Event::PostDone),
    ]
}

const ALL_STATES: [State; 7] = [
    State::Preparing,
    State::Pending,
    State::Running,
    State::Post,
    State::Success,
    State::Failed,
    State::Timeout,
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Random event orders never reach an illegal state: the invariants hold after every
    /// event, terminal states stay terminal, the current action index never goes back, and
    /// a rejected event leaves the status untouched.
    #[test]
    fn random_events_keep_invariants(
        shape in proptest::collection::vec(1usize..3, 1..3),
        timeout in 0i64..15,
        retries in 0i64..3,
        global in prop_oneof![Just(0i64), 20i64..200],
        preparing in any::<bool>(),
        events in proptest::collection::vec(event(), 0..60),
    ) {
        let mut st = WorkflowStatus::default();
        begin(&mut st, tasks(&shape, timeout, retries), global, preparing).unwrap();
        let ids: Vec<(String, String, String)> = st.tasks.iter().flatten()
            .flat_map(|t| t.actions.iter().flatten().map(move |a| (
                a.id.clone().unwrap(), t.name.clone().unwrap(), a.name.clone().unwrap())))
            .collect();
        let mut now = 0i64;
        let mut last_index = 0usize;
        let mut was_terminal: Option<String> = None;
        for ev in events {
            let before = st.clone();
            let result: Result<(), String> = match &ev {
                Event::Report { action, state, by_name } => {
                    let (id, task, name) = &ids[action % ids.len()];
                    let key = if *by_name {
                        ActionKey::Names { task, action: name }
                    } else {
                        ActionKey::Id(id)
                    };
                    report(&mut st, key, ALL_STATES[*state], Some("m"), t(now))
                        .map(drop).map_err(|e| e.to_string())
                }
                Event::Serve => {
                    if let Ok(a) = next_action(&wf(st.clone())) {
                        prop_assert!(matches!(a.state, State::Pending | State::Running));
                        mark_served(&mut st, &a, "agent");
                    }
                    Ok(())
                }
                Event::Tick(d) => {
                    now += d;
                    check_timeouts(&mut st, t(now));
                    Ok(())
                }
                Event::Prepared => prepared(&mut st).map_err(|e| e.to_string()),
                Event::PrepareFailed => prepare_failed(&mut st).map_err(|e| e.to_string()),
                Event::PostDone => post_done(&mut st).map_err(|e| e.to_string()),
            };
            if result.is_err() {
                prop_assert_eq!(&st, &before, "rejected {:?} changed the status", ev);
            }
            prop_assert!(check_invariants(&st).is_ok(), "{:?} after {:?}: {:?}", check_invariants(&st), ev, st);
            if let Some(term) = &was_terminal {
                prop_assert_eq!(st.state.as_ref(), Some(term), "left terminal state on {:?}", ev);
                prop_assert_eq!(states(&st), states(&before));
            }
            let state = workflow_state(&st).unwrap();
            if state.is_terminal() {
                was_terminal = st.state.clone();
            }
            let index = current_action(&st).map_or(ids.len(), |c| c.flat_index);
            prop_assert!(index >= last_index, "current index went back on {:?}", ev);
            last_index = index;
            if state == State::Success {
                prop_assert!(states(&st).iter().all(|s| s == "SUCCESS"));
            }
        }
    }
}

#[test]
fn invariant_checker_rejects_bad_statuses() {
    let mut st = started(&[3], 0, false);
    report(&mut st, ActionKey::Id("t0a0"), State::Running, None, t(0)).unwrap();
    check_invariants(&st).unwrap();
    let set = |st: &mut WorkflowStatus, i: usize, s: &str| {
        st.tasks.as_mut().unwrap()[0].actions.as_mut().unwrap()[i].state = Some(s.into());
    };
    let mut two_running = st.clone();
    set(&mut two_running, 2, "RUNNING");
    assert!(check_invariants(&two_running).is_err());
    let mut success_early = st.clone();
    success_early.state = Some("SUCCESS".into());
    assert!(check_invariants(&success_early).is_err());
    let mut failed_action = st.clone();
    set(&mut failed_action, 0, "FAILED");
    assert!(check_invariants(&failed_action).is_err());
}

#[test]
fn report_messages_are_cut_to_a_bound_in_the_status() {
    let mut st = started(&[1], 0, false);
    let stored = |st: &WorkflowStatus| {
        st.tasks.as_ref().unwrap()[0].actions.as_ref().unwrap()[0]
            .message
            .clone()
            .unwrap()
    };
    // At the bound: kept as sent.
    let exact = "m".repeat(MAX_MESSAGE_BYTES);
    report(
        &mut st,
        ActionKey::Id("t0a0"),
        State::Running,
        Some(&exact),
        t(0),
    )
    .unwrap();
    assert_eq!(stored(&st), exact);
    // A 1 MiB message of two-byte characters (the most a report request carries): the head
    // only, cut on a character boundary, marked.
    let huge = "é".repeat(1 << 19);
    report(
        &mut st,
        ActionKey::Id("t0a0"),
        State::Failed,
        Some(&huge),
        t(1),
    )
    .unwrap();
    let m = stored(&st);
    assert!(m.len() <= MAX_MESSAGE_BYTES, "{} bytes kept", m.len());
    assert!(m.len() > MAX_MESSAGE_BYTES - TRUNCATED_MARKER.len() - 2);
    let head = m.strip_suffix(TRUNCATED_MARKER).expect("marker");
    assert!(huge.starts_with(head));
    assert_eq!(st.state.as_deref(), Some("FAILED"));
    // One byte over: cut too.
    assert_eq!(
        status_message(&"m".repeat(MAX_MESSAGE_BYTES + 1)),
        format!(
            "{}{TRUNCATED_MARKER}",
            "m".repeat(MAX_MESSAGE_BYTES - TRUNCATED_MARKER.len())
        )
    );
}
