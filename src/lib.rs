//! facebatch: label faces in bulk.
//!
//! The library holds every stage; the `facebatch` binary parses options into the typed
//! settings defined here and reports errors.

pub mod align;
pub mod augment;
pub mod builtin;
pub mod calibration;
pub mod card;
pub mod classify;
pub mod data;
pub mod detect;
pub mod error;
pub mod eval;
#[cfg(feature = "train")]
pub mod export;
pub mod faces;
pub mod failpoint;
pub mod fsutil;
pub mod job;
pub mod metrics;
#[cfg(feature = "train")]
pub mod model;
pub mod onnx;
pub mod onnx_proto;
pub mod pinned;
pub mod plot;
pub mod preprocess;
pub mod progress;
pub mod report;
pub mod shard;
pub mod store;
#[cfg(feature = "train")]
pub mod train;
pub mod visualize;

pub use error::{Error, Result};
