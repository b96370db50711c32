//! From image bytes to aligned face crops: [`decode`] (bytes to pixels, with limits),
//! [`detect`] (the face detector), [`align`] (the similarity warp to the crop template, on
//! the [`sample`] bilinear sampler that training's augmentations share) and [`faces`] (the one rule set that turns a decoded image into the classifier's crops, used
//! by `classify`, `eval` and `train` alike).

pub mod align;
pub mod decode;
pub mod detect;
pub mod faces;
pub mod sample;
