//! facebatch: label faces in bulk.
//!
//! The library holds every stage; the `facebatch` binary (`src/main.rs`, `src/cli/`) parses
//! options into the typed settings defined here and reports errors. Where things live, and
//! what may import what, is in `docs/architecture.md`.

pub mod classify;
pub mod ensemble;
pub mod error;
pub mod eval;
pub mod failpoint;
pub mod fsutil;
pub mod job;
pub mod labelled;
pub mod model;
pub mod onnx;
pub mod progress;
pub mod remote;
pub mod report;
pub mod samples;
pub mod store;
#[cfg(feature = "train")]
pub mod train;
pub mod vision;
pub mod visualize;

pub use error::{Error, Result};
