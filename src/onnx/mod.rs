//! ONNX Runtime itself: where the library comes from ([`runtime`]), how sessions are built
//! ([`session`]), the [`pool`] of sessions every model runs on, and the few protobuf edits
//! `visualize` makes to a graph ([`proto`]); [`elf`] reads a runtime library given by path
//! before it is loaded. The two models that run on it are the
//! classifier (`model::classifier`) and the face detector (`vision::detect`); nothing else
//! touches `ort`'s session builder.

#[cfg(target_os = "linux")]
pub mod elf;
pub mod pool;
pub mod proto;
pub mod runtime;
pub mod session;

pub use pool::{PooledSession, SessionPool};
pub use session::{ExecDevice, SessionOptions, build_session};
