//! The columns classify's output and eval's predictions share, built once: the face a row
//! describes (the detection's score, box and five landmarks). Both files name and type
//! them alike because both are made here.

use std::sync::Arc;

use arrow::array::{ArrayBuilder, ArrayRef, Float32Builder, ListBuilder};
use arrow::datatypes::{DataType, Field};

use crate::vision::detect::Face;

/// The detector's score of the face.
pub const DET_SCORE: &str = "det_score";
/// The face's box in original pixels: x1, y1, x2, y2.
pub const BOX: [&str; 4] = ["box_x1", "box_y1", "box_x2", "box_y2"];
/// The five landmarks as ten floats (x, y in turn).
pub const LANDMARKS: &str = "landmarks";

/// The face fields, in column order: score, box, landmarks (all nullable: a row without a
/// detection has none).
pub fn face_fields() -> Vec<Field> {
    let mut fields = vec![Field::new(DET_SCORE, DataType::Float32, true)];
    fields.extend(BOX.map(|name| Field::new(name, DataType::Float32, true)));
    fields.push(Field::new(
        LANDMARKS,
        DataType::List(Arc::new(Field::new("item", DataType::Float32, false))),
        true,
    ));
    fields
}

/// Builders of the face columns, filled a row at a time.
pub struct FaceColumns {
    det_score: Float32Builder,
    boxes: [Float32Builder; 4],
    landmarks: ListBuilder<Float32Builder>,
}

impl FaceColumns {
    /// Empty builders for `n` rows.
    pub fn with_capacity(n: usize) -> FaceColumns {
        FaceColumns {
            det_score: Float32Builder::with_capacity(n),
            boxes: std::array::from_fn(|_| Float32Builder::with_capacity(n)),
            landmarks: ListBuilder::new(Float32Builder::with_capacity(n * 10))
                .with_field(Arc::new(Field::new("item", DataType::Float32, false))),
        }
    }

    /// Appends a row: the detection's values, or nulls.
    pub fn push(&mut self, face: Option<&Face>) {
        self.det_score.append_option(face.map(|f| f.score));
        for (i, b) in self.boxes.iter_mut().enumerate() {
            b.append_option(face.map(|f| f.bbox[i]));
        }
        match face {
            Some(f) => {
                self.landmarks
                    .values()
                    .append_slice(f.landmarks.as_flattened());
                self.landmarks.append(true);
            }
            None => self.landmarks.append(false),
        }
    }

    /// The finished arrays, in [`face_fields`] order.
    pub fn finish(&mut self) -> Vec<ArrayRef> {
        let mut arrays: Vec<ArrayRef> = vec![Arc::new(self.det_score.finish())];
        arrays.extend(self.boxes.iter_mut().map(ArrayBuilder::finish));
        arrays.push(Arc::new(self.landmarks.finish()));
        arrays
    }
}
