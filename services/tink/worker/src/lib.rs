//! tink-worker: the on-machine Tinkerbell agent. It runs in HookOS (or any initramfs), polls
//! the tink server for the next action of its workflow, runs it natively — the upstream
//! action images (`image2disk`, `writefile`, …) are implemented in [`actions`], so no
//! container runtime is needed — and reports RUNNING/SUCCESS/FAILED/TIMEOUT with durations.
//!
//! It is built as one static binary that needs nothing from the root filesystem: TLS roots
//! are loaded explicitly (none → plain http only), proxies come from flags, the environment
//! or the kernel command line (see [`config`]).

pub mod actions;
pub mod agent;
pub mod config;
mod sys;
