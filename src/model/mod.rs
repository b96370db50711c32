//! A facebatch model: its [`card`] (`card.json`: classes, input spec, alignment, metrics,
//! licences), the [`classifier`] that runs its `model.onnx` as the card says, its
//! [`calibration`], the fitting of an ensemble's [`combine`] step, the accuracy [`metrics`] a card records, and the [`builtin`] default
//! model carried inside the binary.

pub mod builtin;
pub mod calibration;
pub mod card;
pub mod classifier;
pub mod columns;
pub mod combine;
pub mod meta;
pub mod metrics;
