//! A facebatch model as files: its [`card`] (`card.json`: classes, input spec, alignment,
//! metrics, licences), its [`calibration`], and the [`builtin`] default model carried inside
//! the binary.

pub mod builtin;
pub mod calibration;
pub mod card;
