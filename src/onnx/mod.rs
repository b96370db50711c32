//! Everything ONNX Runtime: where the library comes from ([`runtime`]), how sessions are
//! built ([`session`]), the classifier that runs a facebatch model ([`classifier`]), and
//! the few protobuf edits `visualize` makes to a graph ([`proto`]).
//! The face detector builds its session here too; nothing else in the crate touches `ort`'s
//! session builder.

pub mod classifier;
pub mod proto;
pub mod runtime;
pub mod session;

pub use classifier::{BatchOutput, CheckedModel, Classifier};
pub use session::{ExecDevice, SessionOptions, build_session};
