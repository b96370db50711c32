//! What facebatch shows people: the PNG [`plot`]s (training curves, confusion matrix,
//! reliability diagram, per-group accuracy) and the offline [`html`] review report of a
//! classify output, least confident faces first.

pub mod html;
pub mod plot;
