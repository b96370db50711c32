//! What facebatch shows people: accuracy [`metrics`] (precision, recall, F1, confusion
//! matrix, calibration), the PNG [`plot`]s, and the offline [`html`] review report of a
//! classify output, least confident faces first.

pub mod html;
pub mod metrics;
pub mod plot;
