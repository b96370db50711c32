//! ONNX export of a trained burn network, with stable tensor names.

use std::collections::HashMap;

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use burn_onnx::export::{AxisSpec, InputSpec as OnnxInputSpec, OnnxExporter};
use onnx_ir::{Message, ModelProto};

use crate::error::{Error, Result};
use crate::model::card::OUTPUT_NAMES;
use crate::train::net::Net;

/// ONNX opset the exporter writes.
pub const OPSET: i64 = 18;

/// Exports `net` (switched to eval mode here) for inputs of `height` x `width`, with a
/// dynamic batch axis, the input named `input` and outputs named after [`OUTPUT_NAMES`].
/// `labels` go into the model's metadata.
pub fn export_onnx(net: &Net, height: usize, width: usize, labels: &[String]) -> Result<Vec<u8>> {
    let net = net.valid();
    let device = Device::default();
    let sample = Tensor::<4>::zeros([2, 3, height, width], &device);
    let validation = Tensor::<4>::zeros([3, 3, height, width], &device);
    let specs = [OnnxInputSpec::new([
        AxisSpec::Dynamic {
            symbol: "batch".into(),
        },
        AxisSpec::Static,
        AxisSpec::Static,
        AxisSpec::Static,
    ])];
    let model = OnnxExporter::new()
        .export_dynamic(&net, sample, validation, &specs, |m: &Net, x| {
            m.forward_export(x)
        })
        .map_err(|e| Error::Export(format!("{e:?}")))?;
    rename_io(model.as_bytes(), labels)
}

/// Renames the graph's input and outputs and records labels in the metadata.
fn rename_io(bytes: &[u8], labels: &[String]) -> Result<Vec<u8>> {
    let mut proto =
        ModelProto::parse_from_bytes(bytes).map_err(|e| Error::Export(e.to_string()))?;
    let graph = proto
        .graph
        .as_mut()
        .ok_or_else(|| Error::Export("exported model has no graph".into()))?;
    if graph.input.len() != 1 || graph.output.len() != OUTPUT_NAMES.len() {
        return Err(Error::Export(format!(
            "expected 1 input and {} outputs, got {} and {}",
            OUTPUT_NAMES.len(),
            graph.input.len(),
            graph.output.len()
        )));
    }
    let mut renames: HashMap<String, String> = HashMap::new();
    renames.insert(graph.input[0].name.clone(), "input".into());
    for (o, new) in graph.output.iter().zip(OUTPUT_NAMES) {
        renames.insert(o.name.clone(), new.into());
    }
    let rename = |s: &mut String| {
        if let Some(n) = renames.get(s.as_str()) {
            *s = n.clone();
        }
    };
    graph.input.iter_mut().for_each(|v| rename(&mut v.name));
    graph.output.iter_mut().for_each(|v| rename(&mut v.name));
    for node in graph.node.iter_mut() {
        node.input.iter_mut().for_each(&rename);
        node.output.iter_mut().for_each(&rename);
    }
    graph.name = "facebatch".into();
    proto.producer_name = "facebatch".into();
    proto.producer_version = env!("CARGO_PKG_VERSION").into();
    // The entry type is not re-exported by onnx-ir; build it through the vector.
    proto.metadata_props.push(Default::default());
    if let Some(prop) = proto.metadata_props.last_mut() {
        prop.key = "labels".into();
        prop.value = labels.join(",");
    }
    proto
        .write_to_bytes()
        .map_err(|e| Error::Export(e.to_string()))
}
