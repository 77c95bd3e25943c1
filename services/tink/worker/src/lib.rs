//! tink worker: the on-machine agent that runs in HookOS, polls the tink server and runs actions natively (image2disk and friends) as a static binary.
//!
//! This crate is a placeholder in the workspace layout: it has no code yet. See `README.md`
//! in this crate.
