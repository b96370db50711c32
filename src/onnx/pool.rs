//! A pool of ONNX Runtime sessions of one model, shared by the threads that run it.
//!
//! A thread takes an idle session, runs it, and the session goes back when the guard is
//! dropped; while every session is busy, the thread waits. The face detector (called from
//! the rayon threads of the locate stage) and the classifier (called from the inference
//! workers, and from eval and visualize) both run on one. One intra-op thread per session
//! and as many sessions as workers is faster on a shared CPU than one session with many
//! threads (docs/benchmarks.md).

use std::ops::{Deref, DerefMut};
use std::path::Path;

use ort::session::Session;

use super::session::{SessionOptions, build_session};
use crate::error::{Error, Result};

/// `size` sessions of one model.
pub struct SessionPool {
    idle: async_channel::Sender<Session>,
    take: async_channel::Receiver<Session>,
}

impl SessionPool {
    /// Builds `size` (at least 1) sessions from the model's bytes.
    pub fn build(bytes: &[u8], opts: &SessionOptions, what: &Path, size: usize) -> Result<Self> {
        let (idle, take) = async_channel::unbounded();
        for _ in 0..size.max(1) {
            let session = build_session(bytes, opts, what)?;
            // The pool holds both ends, so the channel cannot be closed.
            let _ = idle.try_send(session);
        }
        Ok(SessionPool { idle, take })
    }

    /// An idle session, waiting while all are busy. The session goes back to the pool when
    /// the guard is dropped, also when the caller fails or panics.
    pub fn get(&self) -> Result<PooledSession<'_>> {
        let session = self
            .take
            .recv_blocking()
            .map_err(|_| Error::RuntimeUnavailable("the session pool is closed".into()))?;
        Ok(PooledSession {
            session: Some(session),
            home: &self.idle,
        })
    }
}

/// A session taken from a [`SessionPool`]; it returns there when dropped.
pub struct PooledSession<'a> {
    session: Option<Session>,
    home: &'a async_channel::Sender<Session>,
}

impl Deref for PooledSession<'_> {
    type Target = Session;
    fn deref(&self) -> &Session {
        self.session
            .as_ref()
            .expect("a pooled session is present until dropped")
    }
}

impl DerefMut for PooledSession<'_> {
    fn deref_mut(&mut self) -> &mut Session {
        self.session
            .as_mut()
            .expect("a pooled session is present until dropped")
    }
}

impl Drop for PooledSession<'_> {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            let _ = self.home.try_send(session);
        }
    }
}
