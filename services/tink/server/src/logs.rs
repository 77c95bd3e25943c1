//! Action logs: what workers push through `tinkerbell.v1.WorkerLogs`, kept in memory per
//! workflow and action, bounded.
//!
//! Why in memory and bounded: logs are a debugging aid for the run in progress (or the one that
//! just failed), not an archive, and a chatty action (a disk image writer printing progress)
//! must not grow the appliance without limit. Three caps apply: the length of one line
//! (longer lines are cut), the bytes kept per action, and the bytes kept in total. When a cap
//! is hit the oldest lines go first (per action, or across all actions for the total cap),
//! and every dropped line is counted on its action so a reader knows the log is incomplete.
//! The start and stop times of each action are not kept here but in the Workflow's status
//! (`executionStart`, `executionStop`, `executionDuration`), where they survive restarts.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use prost_types::Timestamp;

/// Limits of a [`LogStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogLimits {
    /// Longest line kept, in bytes; longer lines are cut (at a UTF-8 boundary).
    pub max_line_bytes: usize,
    /// Bytes kept per action.
    pub max_action_bytes: usize,
    /// Bytes kept across every workflow.
    pub max_total_bytes: usize,
}

impl Default for LogLimits {
    fn default() -> Self {
        LogLimits {
            max_line_bytes: 8 << 10,
            max_action_bytes: 1 << 20,
            max_total_bytes: 64 << 20,
        }
    }
}

/// One stored line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// When the worker saw it (server time when the worker sent none).
    pub time: Timestamp,
    /// `stdout`, `stderr` or `worker`.
    pub stream: String,
    /// The text, without the line break.
    pub text: String,
    seq: u64,
}

impl Line {
    fn cost(&self) -> usize {
        self.text.len() + self.stream.len() + 32
    }
}

/// The log of one action.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActionLog {
    /// Task ID.
    pub task_id: String,
    /// Action ID.
    pub action_id: String,
    /// Action name.
    pub action_name: String,
    /// Kept lines, oldest first.
    pub lines: VecDeque<Line>,
    /// Lines dropped to stay within the caps.
    pub dropped: u64,
    bytes: usize,
    /// Order of first appearance, so a workflow's actions read back in run order.
    first_seq: u64,
}

#[derive(Debug, Default)]
struct Inner {
    /// workflow ID → action ID → log.
    workflows: BTreeMap<String, BTreeMap<String, ActionLog>>,
    total_bytes: usize,
    next_seq: u64,
}

/// In-memory, bounded action logs. Cheap to share behind an `Arc`.
#[derive(Debug, Default)]
pub struct LogStore {
    limits: LogLimits,
    inner: Mutex<Inner>,
}

/// What [`LogStore::append`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Appended {
    /// Lines stored.
    pub accepted: u64,
    /// Lines dropped from the workflow's stored log (this batch's or older ones).
    pub dropped: u64,
}

/// One line as pushed.
#[derive(Debug, Clone)]
pub struct NewLine {
    /// Time, when the worker sent one.
    pub time: Option<Timestamp>,
    /// Stream name.
    pub stream: String,
    /// Text.
    pub text: String,
}

/// Which action a batch of lines belongs to.
#[derive(Debug, Clone, Copy)]
pub struct ActionId<'a> {
    /// Task ID.
    pub task_id: &'a str,
    /// Action ID.
    pub action_id: &'a str,
    /// Action name.
    pub action_name: &'a str,
}

impl LogStore {
    /// An empty store with `limits`.
    pub fn new(limits: LogLimits) -> LogStore {
        LogStore {
            limits,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Append `lines` to one action of `workflow_id`, then enforce the caps.
    pub fn append(
        &self,
        workflow_id: &str,
        action: ActionId<'_>,
        lines: Vec<NewLine>,
        now: Timestamp,
    ) -> Appended {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let inner = &mut *inner;
        let mut dropped_total = 0;
        let mut accepted = 0;
        let key = if action.action_id.is_empty() {
            action.action_name
        } else {
            action.action_id
        };
        let seq0 = inner.next_seq;
        let log = inner
            .workflows
            .entry(workflow_id.to_string())
            .or_default()
            .entry(key.to_string())
            .or_insert_with(|| ActionLog {
                task_id: action.task_id.to_string(),
                action_id: action.action_id.to_string(),
                action_name: action.action_name.to_string(),
                first_seq: seq0,
                ..ActionLog::default()
            });
        for l in lines {
            let mut text = l.text;
            truncate_utf8(&mut text, self.limits.max_line_bytes);
            let mut stream = l.stream;
            truncate_utf8(&mut stream, 16);
            let line = Line {
                time: l.time.unwrap_or(now),
                stream,
                text,
                seq: inner.next_seq,
            };
            inner.next_seq += 1;
            let cost = line.cost();
            log.bytes += cost;
            inner.total_bytes += cost;
            log.lines.push_back(line);
            accepted += 1;
            while log.bytes > self.limits.max_action_bytes {
                let Some(old) = log.lines.pop_front() else {
                    break;
                };
                log.bytes -= old.cost();
                inner.total_bytes -= old.cost();
                log.dropped += 1;
                dropped_total += 1;
            }
        }
        dropped_total += evict_total(inner, self.limits.max_total_bytes);
        Appended {
            accepted,
            dropped: dropped_total,
        }
    }

    /// The logs of `workflow_id`, in the order the actions first logged; only the action
    /// named `action_name` when it is not empty.
    pub fn read(&self, workflow_id: &str, action_name: &str) -> Vec<ActionLog> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut logs: Vec<ActionLog> = inner
            .workflows
            .get(workflow_id)
            .map(|m| {
                m.values()
                    .filter(|l| action_name.is_empty() || l.action_name == action_name)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        logs.sort_by_key(|l| l.first_seq);
        logs
    }

    /// Forget the logs of `workflow_id` (e.g. when the Workflow is deleted).
    pub fn remove(&self, workflow_id: &str) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = inner.workflows.remove(workflow_id) {
            let freed: usize = m.values().map(|l| l.bytes).sum();
            inner.total_bytes -= freed;
        }
    }

    /// Bytes currently kept.
    pub fn total_bytes(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .total_bytes
    }
}

/// Drop the globally oldest lines until the total is within `max`. Returns how many went.
fn evict_total(inner: &mut Inner, max: usize) -> u64 {
    let mut dropped = 0;
    while inner.total_bytes > max {
        // The action whose oldest line is the oldest of all. A scan is fine: eviction only
        // runs once the store is full, and there are few actions per workflow.
        let oldest = inner
            .workflows
            .iter()
            .flat_map(|(w, m)| {
                m.iter().filter_map(move |(a, l)| {
                    l.lines.front().map(|f| (f.seq, w.clone(), a.clone()))
                })
            })
            .min();
        let Some((_, w, a)) = oldest else {
            break;
        };
        let Some(log) = inner.workflows.get_mut(&w).and_then(|m| m.get_mut(&a)) else {
            break;
        };
        if let Some(old) = log.lines.pop_front() {
            log.bytes -= old.cost();
            inner.total_bytes -= old.cost();
            log.dropped += 1;
            dropped += 1;
        }
    }
    dropped
}

fn truncate_utf8(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(t: &str) -> NewLine {
        NewLine {
            time: None,
            stream: "stdout".into(),
            text: t.into(),
        }
    }

    fn act(id: &str) -> ActionId<'_> {
        ActionId {
            task_id: "t",
            action_id: id,
            action_name: id,
        }
    }

    #[test]
    fn per_action_cap_drops_oldest_and_counts() {
        let store = LogStore::new(LogLimits {
            max_line_bytes: 10,
            max_action_bytes: 3 * (10 + 6 + 32),
            max_total_bytes: 1 << 20,
        });
        let now = Timestamp::default();
        let lines = (0..5).map(|i| line(&format!("line-{i}-padding"))).collect();
        let r = store.append("ns/wf", act("a1"), lines, now);
        assert_eq!(
            r,
            Appended {
                accepted: 5,
                dropped: 2
            }
        );
        let logs = store.read("ns/wf", "");
        assert_eq!(logs.len(), 1);
        assert_eq!(logs[0].dropped, 2);
        let texts: Vec<_> = logs[0].lines.iter().map(|l| l.text.as_str()).collect();
        // Cut to 10 bytes, oldest two gone.
        assert_eq!(texts, ["line-2-pad", "line-3-pad", "line-4-pad"]);
    }

    #[test]
    fn total_cap_evicts_the_oldest_line_of_any_action() {
        let per = 1 + 6 + 32;
        let store = LogStore::new(LogLimits {
            max_line_bytes: 100,
            max_action_bytes: 100 * per,
            max_total_bytes: 4 * per,
        });
        let now = Timestamp::default();
        store.append("ns/a", act("x"), vec![line("1"), line("2")], now);
        store.append("ns/b", act("y"), vec![line("3"), line("4")], now);
        let r = store.append("ns/a", act("z"), vec![line("5")], now);
        assert_eq!(r.dropped, 1);
        assert_eq!(store.total_bytes(), 4 * per);
        let a = store.read("ns/a", "");
        assert_eq!(a.len(), 2, "x and z, in first-log order");
        assert_eq!(a[0].action_name, "x");
        assert_eq!(a[0].dropped, 1);
        assert_eq!(a[0].lines.len(), 1);
        assert_eq!(a[0].lines[0].text, "2");
        assert_eq!(store.read("ns/a", "z")[0].lines[0].text, "5");
        store.remove("ns/a");
        assert_eq!(store.total_bytes(), 2 * per);
        assert!(store.read("ns/a", "").is_empty());
    }

    #[test]
    fn lines_are_cut_at_char_boundaries() {
        let mut s = "ééé".to_string();
        truncate_utf8(&mut s, 3);
        assert_eq!(s, "é");
    }
}
