//! Preprocess stage: fits each decoded image to the model input exactly as the model card
//! says (the shared [`InputSpec`] code), in parallel.

use tokio::sync::mpsc::{Receiver, Sender};

use super::{Decoded, Prepared, StageStats};
use crate::preprocess::InputSpec;

fn prepare(d: Decoded, spec: &InputSpec) -> Prepared {
    match d {
        Decoded::Image { file, image } => {
            let (width, height) = image.dimensions();
            Prepared::Tensor {
                data: spec.tensor_from_rgb(&image),
                file,
                width,
                height,
            }
        }
        Decoded::Failed { file, error } => Prepared::Failed {
            file,
            width: None,
            height: None,
            error,
        },
    }
}

/// Runs the stage until its input closes.
pub fn run(
    rx: Receiver<Decoded>,
    tx: Sender<Prepared>,
    spec: InputSpec,
    chunk: usize,
    pool: &rayon::ThreadPool,
) -> StageStats {
    super::stage::parallel_map("preprocess", rx, tx, chunk, pool, |d| prepare(d, &spec))
}
