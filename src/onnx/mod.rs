//! ONNX Runtime itself: where the library comes from ([`runtime`]), how sessions are built
//! ([`session`]), the [`pool`] of sessions every model runs on, and the few protobuf edits
//! `visualize` makes to a graph ([`proto`]). The two models that run on it are the
//! classifier (`model::classifier`) and the face detector (`vision::detect`); nothing else
//! touches `ort`'s session builder.

pub mod pool;
pub mod proto;
pub mod runtime;
pub mod session;

pub use pool::{PooledSession, SessionPool};
pub use session::{ExecDevice, SessionOptions, build_session};
