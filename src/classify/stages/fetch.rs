//! Fetch stage: reads objects (object stores, HTTP) ahead of the decode stage, up to
//! `concurrency` requests at once, in walk order, so decoding does not wait on the network
//! while bandwidth allows. Local files pass through untouched (the decode stage reads them
//! itself). A failed object (denied, gone since the listing, over the size limit, timed out
//! after the store client's retries) becomes an error row; the run goes on.
//!
//! Memory: at most `concurrency` objects are in flight here and `concurrency` more wait in
//! the channel to the decode stage, each at most `--max-file-bytes`.

use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::sync::mpsc::{Receiver, Sender};

use crate::classify::{FileRef, StageStats};
use crate::error::{ImageErrorKind, ImageFailure};

/// Reads one object's bytes, or says why not.
async fn fetch(mut file: FileRef, max_bytes: u64) -> FileRef {
    let Some(object) = file.object.clone() else {
        return file;
    };
    if file.problem.is_some() {
        return file;
    }
    if let Some(size) = object.size.filter(|&n| n > max_bytes) {
        file.fetched = Some(Err(ImageFailure::new(
            ImageErrorKind::TooLarge,
            format!("object is {size} bytes, over the limit of {max_bytes} (--max-file-bytes)"),
        )));
        return file;
    }
    let result = match object.url.store() {
        Ok(store) => crate::remote::get(store.as_ref(), &object.url.path())
            .await
            .map_err(|e| {
                let why = match &e {
                    object_store::Error::NotFound { .. } => {
                        "the object is gone (deleted after it was listed)".to_string()
                    }
                    object_store::Error::PermissionDenied { .. } => {
                        format!("access denied: {}", crate::remote::clean(&e))
                    }
                    _ => crate::remote::clean(&e),
                };
                ImageFailure::new(ImageErrorKind::Io, why)
            }),
        Err(e) => Err(ImageFailure::new(ImageErrorKind::Io, e.to_string())),
    };
    if let Ok(b) = &result {
        // A manifest's URL: its size is known once read.
        file.bytes = Some(b.len() as u64);
    }
    file.fetched = Some(result.and_then(|b| {
        if b.len() as u64 > max_bytes {
            Err(ImageFailure::new(
                ImageErrorKind::TooLarge,
                format!("object grew past the limit of {max_bytes} bytes (--max-file-bytes)"),
            ))
        } else {
            Ok(b)
        }
    }));
    file
}

/// Runs the stage until its input closes (the walk stops at a cancel).
pub fn run(
    rx: Receiver<FileRef>,
    tx: Sender<FileRef>,
    concurrency: usize,
    max_bytes: u64,
) -> StageStats {
    let started = Instant::now();
    let mut stats = StageStats {
        name: "fetch",
        ..Default::default()
    };
    let mut waiting = Duration::ZERO;
    crate::remote::block_on(async {
        let files = futures::stream::unfold(rx, |mut rx| async move {
            let f = rx.recv().await?;
            Some((f, rx))
        });
        let fetched = files
            .map(|f| fetch(f, max_bytes))
            .buffered(concurrency.max(1));
        let mut fetched = std::pin::pin!(fetched);
        while let Some(file) = fetched.next().await {
            stats.items += 1;
            let t = Instant::now();
            if tx.send(file).await.is_err() {
                break; // downstream stopped
            }
            waiting += t.elapsed();
        }
    });
    // Busy: time with requests out or bytes to hand on, not time blocked on the decoder.
    stats.busy = started.elapsed().saturating_sub(waiting);
    stats
}
