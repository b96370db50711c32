//! Preprocess stage: turns each face's crops into the model's input tensor exactly as the
//! model card says (the shared [`InputSpec`] code, one spec per member), in parallel. One
//! tensor per face: the members' inputs one after the other.

use tokio::sync::mpsc::{Receiver, Sender};

use crate::classify::{FaceMeta, Located, Prepared, StageStats};
use crate::vision::decode::{InputSpec, views_tensor};

fn prepare(l: Located, specs: &[InputSpec]) -> Vec<Prepared> {
    match l {
        Located::Crops {
            file,
            width,
            height,
            crops,
        } => {
            if crops.is_empty() {
                return vec![Prepared::NoFace {
                    file,
                    width,
                    height,
                }];
            }
            let count = crops.len() as u32;
            crops
                .into_iter()
                .enumerate()
                .map(|(i, c)| Prepared::Tensor {
                    data: views_tensor(specs, &c.images),
                    file: file.clone(),
                    width,
                    height,
                    face: FaceMeta {
                        index: i as u32,
                        count,
                        kind: c.kind,
                        face: c.face,
                    },
                })
                .collect()
        }
        Located::Failed { file, error } => vec![Prepared::Failed {
            file,
            width: None,
            height: None,
            error,
        }],
    }
}

/// Runs the stage until its input closes.
pub fn run(
    rx: Receiver<Located>,
    tx: Sender<Vec<Prepared>>,
    specs: Vec<InputSpec>,
    chunk: usize,
    pool: &rayon::ThreadPool,
) -> StageStats {
    super::parallel_map("tensorize", rx, tx, chunk, pool, None, |l| {
        prepare(l, &specs)
    })
}
