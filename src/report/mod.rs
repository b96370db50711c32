//! What facebatch shows people: the PNG [`plot`]s (training curves, confusion matrix,
//! reliability diagram, per-group accuracy) and the offline [`html`] review report of a
//! classify output, least confident faces first; [`replot`] redraws a reports folder's
//! figures from the history and test report saved in it.

pub mod html;
pub mod plot;
pub mod replot;
