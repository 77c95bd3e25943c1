//! Action logs: what workers push through `tinkerbell.v1.WorkerLogs`, kept in memory per
//! workflow and action, bounded.
//!
//! Why in memory and bounded: logs are a debugging aid for the run in progress (or the one that
//! just failed), not an archive, and a chatty action (a disk image writer printing progress)
//! must not grow the appliance without limit. Three caps apply: the length of one line
//! (longer lines are cut), the bytes kept per action, and the bytes kept in total. When a cap
//! is hit the oldest lines go first (per action, or across all actions for the total cap),
//! and every dropped line is counted on its action so a reader knows the log is incomplete.
//!
//! The caps count what an action's log really holds, not only its text: each line's
//! bookkeeping, and the strings the worker chose to name the action (workflow ID, task ID,
//! action ID, action name), which are kept with the log and in the eviction index. A worker
//! picks those names freely (nothing checks them against the Workflow), so a log is also
//! something the caps can take away: an action whose last line is evicted is forgotten, names
//! and all, and a batch without lines creates nothing. Many distinct action IDs therefore only
//! push older logs out, like many lines do.
//!
//! The start and stop times of each action are not kept here but in the Workflow's status
//! (`executionStart`, `executionStop`, `executionDuration`), where they survive restarts.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use prost_types::Timestamp;

/// Limits of a [`LogStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogLimits {
    /// Longest line kept, in bytes; longer lines are cut (at a UTF-8 boundary).
    pub max_line_bytes: usize,
    /// Bytes kept per action: its lines and its names ([`LogStore`] counts both).
    pub max_action_bytes: usize,
    /// Bytes kept across every workflow, lines and names.
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

/// Bytes a line holds besides its strings (its slot in the action's queue).
const LINE_OVERHEAD: usize = size_of::<Line>();

/// Bytes an action's log holds besides its lines and name strings: the log itself, its entry
/// in the workflow's map and in the eviction index (an estimate that errs high).
const ACTION_OVERHEAD: usize = size_of::<ActionLog>() + 4 * size_of::<String>() + 64;

impl Line {
    fn cost(&self) -> usize {
        LINE_OVERHEAD + self.text.len() + self.stream.len()
    }
}

/// What an action's log costs before its first line: the overhead, the workflow ID and the map
/// key (each stored twice: in the maps and in the eviction index), and the three names.
fn names_cost(workflow_id: &str, key: &str, action: &ActionId<'_>) -> usize {
    ACTION_OVERHEAD
        + 2 * (workflow_id.len() + key.len())
        + action.task_id.len()
        + action.action_id.len()
        + action.action_name.len()
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
    /// Bytes held: the names ([`names_cost`]) and every kept line.
    bytes: usize,
    /// Order of first appearance, so a workflow's actions read back in run order.
    first_seq: u64,
}

#[derive(Debug, Default)]
struct Inner {
    /// workflow ID → action ID (or name, when the worker sent no ID) → log. Every log here
    /// has at least one line.
    workflows: BTreeMap<String, BTreeMap<String, ActionLog>>,
    /// The oldest line of every log, by its sequence number → (workflow ID, action key): the
    /// first entry is the oldest line of all, the one the total cap evicts next.
    fronts: BTreeMap<u64, (String, String)>,
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

    /// Append `lines` to one action of `workflow_id`, then enforce the caps. A batch without
    /// lines stores nothing.
    pub fn append(
        &self,
        workflow_id: &str,
        action: ActionId<'_>,
        lines: Vec<NewLine>,
        now: Timestamp,
    ) -> Appended {
        if lines.is_empty() {
            return Appended::default();
        }
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
        let actions = inner.workflows.entry(workflow_id.to_string()).or_default();
        let log = match actions.entry(key.to_string()) {
            Entry::Occupied(o) => o.into_mut(),
            Entry::Vacant(v) => {
                let bytes = names_cost(workflow_id, key, &action);
                inner.total_bytes += bytes;
                v.insert(ActionLog {
                    task_id: action.task_id.to_string(),
                    action_id: action.action_id.to_string(),
                    action_name: action.action_name.to_string(),
                    first_seq: seq0,
                    bytes,
                    ..ActionLog::default()
                })
            }
        };
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
            if log.lines.is_empty() {
                inner
                    .fronts
                    .insert(line.seq, (workflow_id.to_string(), key.to_string()));
            }
            log.lines.push_back(line);
            accepted += 1;
            while log.bytes > self.limits.max_action_bytes {
                let Some(old) = pop_front(log, &mut inner.fronts) else {
                    break;
                };
                inner.total_bytes -= old.cost();
                dropped_total += 1;
            }
        }
        if log.lines.is_empty() {
            // The names alone exceed the per-action cap: keep nothing.
            inner.total_bytes -= log.bytes;
            actions.remove(key);
            if actions.is_empty() {
                inner.workflows.remove(workflow_id);
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
            for log in m.values() {
                inner.total_bytes -= log.bytes;
                if let Some(front) = log.lines.front() {
                    inner.fronts.remove(&front.seq);
                }
            }
        }
    }

    /// Bytes currently kept.
    pub fn total_bytes(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .total_bytes
    }

    /// Action logs currently kept, over every workflow.
    pub fn action_count(&self) -> usize {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.workflows.values().map(BTreeMap::len).sum()
    }
}

/// Drop the oldest line of `log`, moving its entry in `fronts` to the next line. The caller
/// takes the line's cost off the total.
fn pop_front(log: &mut ActionLog, fronts: &mut BTreeMap<u64, (String, String)>) -> Option<Line> {
    let old = log.lines.pop_front()?;
    log.bytes -= old.cost();
    log.dropped += 1;
    let names = fronts.remove(&old.seq);
    if let (Some(next), Some(names)) = (log.lines.front(), names) {
        fronts.insert(next.seq, names);
    }
    Some(old)
}

/// Drop the globally oldest lines until the total is within `max`; a log whose last line goes
/// is removed with its names. Returns how many lines went.
fn evict_total(inner: &mut Inner, max: usize) -> u64 {
    let mut dropped = 0;
    while inner.total_bytes > max {
        let Some((_, (w, a))) = inner.fronts.pop_first() else {
            break;
        };
        let Some(actions) = inner.workflows.get_mut(&w) else {
            continue;
        };
        let Some(log) = actions.get_mut(&a) else {
            continue;
        };
        let Some(old) = log.lines.pop_front() else {
            continue;
        };
        log.bytes -= old.cost();
        log.dropped += 1;
        inner.total_bytes -= old.cost();
        dropped += 1;
        if let Some(next) = log.lines.front() {
            inner.fronts.insert(next.seq, (w, a));
        } else {
            inner.total_bytes -= log.bytes;
            actions.remove(&a);
            if actions.is_empty() {
                inner.workflows.remove(&w);
            }
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
        // A cut line must not keep the sender's whole allocation.
        s.shrink_to_fit();
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
            max_action_bytes: names_cost("ns/wf", "a1", &act("a1")) + 3 * (10 + 6 + LINE_OVERHEAD),
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
        let per = 1 + 6 + LINE_OVERHEAD;
        // The same for x, y and z.
        let names = names_cost("ns/a", "x", &act("x"));
        let store = LogStore::new(LogLimits {
            max_line_bytes: 100,
            max_action_bytes: 100 * per,
            max_total_bytes: 3 * names + 4 * per,
        });
        let now = Timestamp::default();
        store.append("ns/a", act("x"), vec![line("1"), line("2")], now);
        store.append("ns/b", act("y"), vec![line("3"), line("4")], now);
        let r = store.append("ns/a", act("z"), vec![line("5")], now);
        assert_eq!(r.dropped, 1);
        assert_eq!(store.total_bytes(), 3 * names + 4 * per);
        let a = store.read("ns/a", "");
        assert_eq!(a.len(), 2, "x and z, in first-log order");
        assert_eq!(a[0].action_name, "x");
        assert_eq!(a[0].dropped, 1);
        assert_eq!(a[0].lines.len(), 1);
        assert_eq!(a[0].lines[0].text, "2");
        assert_eq!(store.read("ns/a", "z")[0].lines[0].text, "5");
        store.remove("ns/a");
        assert_eq!(store.total_bytes(), names + 2 * per);
        assert!(store.read("ns/a", "").is_empty());
        // Evicting y's last lines forgets y, names and all: w takes the room of y's two lines
        // and names.
        let k = names / per + 4;
        let r = store.append("ns/c", act("w"), (0..k).map(|_| line("6")).collect(), now);
        assert_eq!(r.dropped, 2);
        assert!(store.read("ns/b", "").is_empty());
        assert_eq!(store.action_count(), 1);
        assert_eq!(store.total_bytes(), names + k * per);
    }

    /// A worker names actions as it likes: many distinct or long action IDs must cost their
    /// bytes and be evicted like lines, never pile up.
    #[test]
    fn action_names_count_against_the_caps_and_are_evicted() {
        let limits = LogLimits {
            max_line_bytes: 100,
            max_action_bytes: 16 << 10,
            max_total_bytes: 64 << 10,
        };
        let store = LogStore::new(limits);
        let now = Timestamp::default();
        // Many distinct IDs, one line each, over a few workflows; and batches without lines.
        for i in 0..20_000 {
            let id = format!("attacker-chosen-action-{i}");
            let wf = format!("ns/wf{}", i % 3);
            store.append(&wf, act(&id), vec![line("x")], now);
            store.append(&wf, act(&format!("{id}-empty")), Vec::new(), now);
        }
        assert!(store.total_bytes() <= limits.max_total_bytes);
        let names = names_cost("ns/wf0", "attacker-chosen-action-19999", &act("a"));
        assert!(
            store.action_count() <= limits.max_total_bytes / names,
            "{} action logs kept",
            store.action_count()
        );
        let kept: Vec<ActionLog> = (0..3)
            .flat_map(|w| store.read(&format!("ns/wf{w}"), ""))
            .collect();
        assert_eq!(kept.len(), store.action_count());
        assert!(kept.iter().all(|l| !l.lines.is_empty()));
        // The newest are the ones kept.
        assert!(
            kept.iter()
                .any(|l| l.action_id == "attacker-chosen-action-19999")
        );

        // Long IDs: their bytes are what the caps count.
        let store = LogStore::new(limits);
        for i in 0..200 {
            let id = format!("{i}-{}", "k".repeat(8 << 10));
            store.append("ns/wf", act(&id), vec![line("x")], now);
        }
        let held: usize = store
            .read("ns/wf", "")
            .iter()
            .map(|l| l.task_id.len() + l.action_id.len() + l.action_name.len())
            .sum();
        assert!(held <= limits.max_total_bytes, "{held} bytes of names kept");
        assert!(store.total_bytes() <= limits.max_total_bytes);
        // Names bigger than the per-action cap keep nothing at all.
        let r = store.append("ns/wf", act(&"k".repeat(20 << 10)), vec![line("x")], now);
        assert_eq!(r.accepted, 1);
        assert!(r.dropped >= 1);
        assert!(store.read("ns/wf", &"k".repeat(20 << 10)).is_empty());
    }

    /// The caps count a cut line's kept text, so it must not hold the worker's allocation.
    #[test]
    fn a_cut_line_does_not_keep_its_allocation() {
        let mut s = "y".repeat(1 << 20);
        truncate_utf8(&mut s, 10);
        assert_eq!(s.len(), 10);
        assert!(s.capacity() < 1 << 10, "capacity {}", s.capacity());
    }

    #[test]
    fn lines_are_cut_at_char_boundaries() {
        let mut s = "ééé".to_string();
        truncate_utf8(&mut s, 3);
        assert_eq!(s, "é");
    }
}
