//! The lock of an output on an object store: a lease object, since a store has no flock.
//!
//! - **Taking it**: a PUT with `PutMode::Create` (`If-None-Match: *` on S3). Exactly one of
//!   two writers racing for it gets it; the other gets [`Error::Busy`] (exit 75).
//! - **Holding it**: the holder rewrites the object every third of the lease with
//!   `PutMode::Update` on the version it wrote last (`If-Match: ETAG`), which moves its
//!   last-modified time on.
//! - **A crashed holder** (`kill -9`, a lost machine) stops renewing. Once the object has not
//!   changed for a whole lease, the next run takes it over with a conditional update of the
//!   version it read: of several runs doing so at once, one wins.
//! - **Losing it** (a stall longer than the lease, and someone took over): the next renewal
//!   fails its condition; the run stops taking new images and says so.
//! - **Giving it back**: the object is deleted when the run ends.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};

use super::{ObjectUrl, block_on, fatal};
use crate::error::{Error, Result};

/// What the lease object says about its holder (never a secret).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Holder {
    host: String,
    pid: u32,
    /// The lease in seconds: renewed well within it.
    lease_secs: u64,
}

/// A held lease; dropping it gives it back.
pub struct Lease {
    url: ObjectUrl,
    stop: Arc<AtomicBool>,
    renewer: Option<std::thread::JoinHandle<()>>,
}

impl Lease {
    /// Takes the lease at `url` (the lock of output `out`), or fails with [`Error::Busy`]
    /// naming its live holder. If the lease is ever lost while held, `lost` and `stop` are
    /// both set (`stop` is the run's cancel flag: intake stops).
    pub fn acquire(
        url: &ObjectUrl,
        out: &ObjectUrl,
        lease: Duration,
        lost: Arc<AtomicBool>,
        stop_run: Arc<AtomicBool>,
    ) -> Result<Lease> {
        let store = url.store()?;
        let path = url.path();
        let body = Bytes::from(
            serde_json::to_vec(&Holder {
                host: crate::fsutil::host_name(),
                pid: std::process::id(),
                lease_secs: lease.as_secs().max(1),
            })
            .expect("a holder encodes"),
        );
        let put = |mode: PutMode| {
            let opts = PutOptions {
                mode,
                ..Default::default()
            };
            block_on(store.put_opts(&path, PutPayload::from(body.clone()), opts))
        };
        let version = match put(PutMode::Create) {
            Ok(r) => UpdateVersion {
                e_tag: r.e_tag,
                version: r.version,
            },
            Err(object_store::Error::AlreadyExists { .. }) => {
                let (held, version, holder) = match block_on(store.get(&path)) {
                    Ok(r) => {
                        let age = (chrono::Utc::now() - r.meta.last_modified).num_milliseconds();
                        let version = UpdateVersion {
                            e_tag: r.meta.e_tag.clone(),
                            version: r.meta.version.clone(),
                        };
                        let bytes = block_on(r.bytes()).unwrap_or_default();
                        let holder: Option<Holder> = serde_json::from_slice(&bytes).ok();
                        let secs = holder.as_ref().map_or(lease.as_secs(), |h| h.lease_secs);
                        (age < (secs as i64) * 1000, version, holder)
                    }
                    // Given back between our PUT and this GET: try once more.
                    Err(object_store::Error::NotFound { .. }) => {
                        return Lease::acquire(url, out, lease, lost, stop_run);
                    }
                    Err(e) => return Err(fatal(out, "cannot read its lock", &e)),
                };
                if held {
                    return Err(busy(out, holder));
                }
                tracing::warn!(lock = %url, "the output's lock was left by a run that stopped renewing it: taking it over");
                match put(PutMode::Update(version)) {
                    Ok(r) => UpdateVersion {
                        e_tag: r.e_tag,
                        version: r.version,
                    },
                    Err(object_store::Error::Precondition { .. }) => {
                        return Err(busy(out, None));
                    }
                    Err(e) => return Err(fatal(out, "cannot take over its lock", &e)),
                }
            }
            Err(e) => return Err(fatal(out, "cannot create its lock", &e)),
        };
        let stop = Arc::new(AtomicBool::new(false));
        let renewer = std::thread::Builder::new()
            .name("facebatch-lease".into())
            .spawn({
                let (stop, url, store, path) = (stop.clone(), url.clone(), store.clone(), path);
                move || {
                    let mut version = version;
                    let step = lease / 3;
                    while !stop.load(Ordering::SeqCst) {
                        // Sleep in short steps so that dropping the lease is prompt.
                        let until = std::time::Instant::now() + step;
                        while std::time::Instant::now() < until && !stop.load(Ordering::SeqCst) {
                            std::thread::sleep(Duration::from_millis(50));
                        }
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let opts = PutOptions {
                            mode: PutMode::Update(version.clone()),
                            ..Default::default()
                        };
                        match block_on(store.put_opts(&path, PutPayload::from(body.clone()), opts))
                        {
                            Ok(r) => {
                                version = UpdateVersion {
                                    e_tag: r.e_tag,
                                    version: r.version,
                                }
                            }
                            Err(object_store::Error::Precondition { .. })
                            | Err(object_store::Error::NotFound { .. }) => {
                                tracing::error!(lock = %url, "this run lost the output's lock to another run: stopping");
                                lost.store(true, Ordering::SeqCst);
                                stop_run.store(true, Ordering::SeqCst);
                                return;
                            }
                            Err(e) => {
                                tracing::warn!(lock = %url, error = %super::clean(&e), "renewing the output's lock failed; retrying");
                            }
                        }
                    }
                }
            })
            .map_err(|e| Error::io("starting the lock's renewal thread", e))?;
        Ok(Lease {
            url: url.clone(),
            stop,
            renewer: Some(renewer),
        })
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.renewer.take() {
            let _ = t.join();
        }
        if let Err(e) = super::delete(&self.url) {
            tracing::warn!(lock = %self.url, error = %e, "could not remove the output's lock; the next run takes it over once its lease ends");
        }
    }
}

fn busy(url: &ObjectUrl, holder: Option<Holder>) -> Error {
    Error::Busy {
        out: url.to_string().into(),
        holder: match holder {
            Some(h) => format!("another facebatch run (pid {} on {})", h.pid, h.host),
            None => "another facebatch run".into(),
        },
    }
}
