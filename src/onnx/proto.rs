//! Just enough of the protobuf wire format to read an ONNX graph's nodes and outputs, and to
//! add graph outputs, without a generated ONNX schema. `visualize` needs only this, so the
//! inference-only build (`--no-default-features`) does not compile burn's ONNX reader.
//!
//! Adding outputs appends a second `graph` field to the model's bytes: protobuf parsers merge
//! repeated occurrences of a singular message field, and append to its repeated fields, so
//! the new outputs follow the existing ones.

/// ModelProto.graph
const MODEL_GRAPH: u32 = 7;
/// GraphProto.node
const GRAPH_NODE: u32 = 1;
/// GraphProto.output
const GRAPH_OUTPUT: u32 = 12;
/// NodeProto.output
const NODE_OUTPUT: u32 = 2;
/// NodeProto.op_type
const NODE_OP_TYPE: u32 = 4;
/// ValueInfoProto.name, ValueInfoProto.type, TypeProto.tensor_type, Tensor.elem_type
const VI_NAME: u32 = 1;
const VI_TYPE: u32 = 2;
const TYPE_TENSOR: u32 = 1;
const TENSOR_ELEM_TYPE: u32 = 1;

/// One field of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

fn read_varint(buf: &[u8], pos: &mut usize) -> Result<u64, String> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos).ok_or("truncated varint")?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err("varint longer than 10 bytes".into())
}

/// The fields of one message, in order.
fn fields(buf: &[u8]) -> Result<Vec<(u32, Value<'_>)>, String> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let key = read_varint(buf, &mut pos)?;
        let number = u32::try_from(key >> 3).map_err(|_| "field number out of range")?;
        let value = match key & 7 {
            0 => Value::Varint(read_varint(buf, &mut pos)?),
            1 | 5 => {
                pos += if key & 7 == 1 { 8 } else { 4 };
                Value::Fixed
            }
            2 => {
                let len = usize::try_from(read_varint(buf, &mut pos)?)
                    .map_err(|_| "length out of range")?;
                let end = pos.checked_add(len).filter(|e| *e <= buf.len());
                let end = end.ok_or("a field runs past the end of its message")?;
                let v = Value::Bytes(&buf[pos..end]);
                pos = end;
                v
            }
            w => return Err(format!("unsupported wire type {w}")),
        };
        if pos > buf.len() {
            return Err("truncated fixed-width field".into());
        }
        out.push((number, value));
    }
    Ok(out)
}

fn bytes_of<'a>(fields: &[(u32, Value<'a>)], number: u32) -> impl Iterator<Item = &'a [u8]> {
    fields.iter().filter_map(move |(n, v)| match v {
        Value::Bytes(b) if *n == number => Some(*b),
        _ => None,
    })
}

fn string(b: &[u8]) -> Result<String, String> {
    String::from_utf8(b.to_vec()).map_err(|_| "a name is not UTF-8".to_string())
}

/// One node of the graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub op_type: String,
    pub outputs: Vec<String>,
}

/// What `visualize` reads of a model: its nodes in graph order and its outputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Graph {
    pub nodes: Vec<Node>,
    pub outputs: Vec<String>,
    /// The tensor element type of the first graph output (ONNX TensorProto.DataType).
    pub first_output_elem_type: Option<u64>,
}

/// The element type of a ValueInfoProto's tensor type, if it has one.
fn elem_type(value_info: &[(u32, Value<'_>)]) -> Result<Option<u64>, String> {
    let Some(ty) = bytes_of(value_info, VI_TYPE).last() else {
        return Ok(None);
    };
    let Some(tensor) = bytes_of(&fields(ty)?, TYPE_TENSOR).last() else {
        return Ok(None);
    };
    Ok(fields(tensor)?.iter().rev().find_map(|(n, v)| match v {
        Value::Varint(e) if *n == TENSOR_ELEM_TYPE => Some(*e),
        _ => None,
    }))
}

/// Reads the nodes and outputs of a serialized ModelProto.
pub fn read_graph(model: &[u8]) -> Result<Graph, String> {
    let mut graph = Graph {
        nodes: Vec::new(),
        outputs: Vec::new(),
        first_output_elem_type: None,
    };
    let model_fields = fields(model)?;
    let mut found = false;
    for g in bytes_of(&model_fields, MODEL_GRAPH) {
        found = true;
        let gf = fields(g)?;
        for n in bytes_of(&gf, GRAPH_NODE) {
            let nf = fields(n)?;
            graph.nodes.push(Node {
                op_type: bytes_of(&nf, NODE_OP_TYPE)
                    .last()
                    .map(string)
                    .transpose()?
                    .unwrap_or_default(),
                outputs: bytes_of(&nf, NODE_OUTPUT)
                    .map(string)
                    .collect::<Result<_, _>>()?,
            });
        }
        for o in bytes_of(&gf, GRAPH_OUTPUT) {
            let of = fields(o)?;
            if graph.outputs.is_empty() {
                graph.first_output_elem_type = elem_type(&of)?;
            }
            graph.outputs.push(
                bytes_of(&of, VI_NAME)
                    .last()
                    .map(string)
                    .transpose()?
                    .unwrap_or_default(),
            );
        }
    }
    if !found {
        return Err("no graph".into());
    }
    Ok(graph)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_bytes(out: &mut Vec<u8>, number: u32, bytes: &[u8]) {
    put_varint(out, (u64::from(number) << 3) | 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// The model with `names` added as graph outputs: tensors of `elem_type` with no shape.
pub fn add_outputs(model: &[u8], names: &[String], elem_type: u64) -> Vec<u8> {
    let mut tensor = Vec::new();
    put_varint(&mut tensor, u64::from(TENSOR_ELEM_TYPE) << 3);
    put_varint(&mut tensor, elem_type);
    let mut ty = Vec::new();
    put_bytes(&mut ty, TYPE_TENSOR, &tensor);
    let mut graph = Vec::new();
    for name in names {
        let mut vi = Vec::new();
        put_bytes(&mut vi, VI_NAME, name.as_bytes());
        put_bytes(&mut vi, VI_TYPE, &ty);
        put_bytes(&mut graph, GRAPH_OUTPUT, &vi);
    }
    let mut out = model.to_vec();
    put_bytes(&mut out, MODEL_GRAPH, &graph);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(op: &str, outputs: &[&str]) -> Vec<u8> {
        let mut n = Vec::new();
        put_bytes(&mut n, 1, b"input"); // NodeProto.input
        for o in outputs {
            put_bytes(&mut n, NODE_OUTPUT, o.as_bytes());
        }
        put_bytes(&mut n, NODE_OP_TYPE, op.as_bytes());
        n
    }

    fn model() -> Vec<u8> {
        let mut g = Vec::new();
        put_bytes(&mut g, GRAPH_NODE, &node("Conv", &["c1"]));
        put_bytes(&mut g, GRAPH_NODE, &node("Relu", &["r1"]));
        put_bytes(&mut g, 2, b"main"); // GraphProto.name
        let out = add_outputs(&[], &["probs".into()], 1);
        // add_outputs wraps its outputs in a model's graph field: unwrap them into ours.
        let f = fields(&out).unwrap();
        let inner = bytes_of(&f, MODEL_GRAPH).next().unwrap();
        g.extend_from_slice(inner);
        let mut m = Vec::new();
        put_varint(&mut m, 1 << 3); // ModelProto.ir_version
        put_varint(&mut m, 8);
        put_bytes(&mut m, MODEL_GRAPH, &g);
        m
    }

    #[test]
    fn reads_nodes_and_outputs() {
        let g = read_graph(&model()).unwrap();
        assert_eq!(
            g.nodes,
            vec![
                Node {
                    op_type: "Conv".into(),
                    outputs: vec!["c1".into()]
                },
                Node {
                    op_type: "Relu".into(),
                    outputs: vec!["r1".into()]
                }
            ]
        );
        assert_eq!(g.outputs, vec!["probs".to_string()]);
        assert_eq!(g.first_output_elem_type, Some(1));
    }

    #[test]
    fn added_outputs_follow_the_existing_ones() {
        let m = add_outputs(&model(), &["r1".into(), "c1".into()], 1);
        let g = read_graph(&m).unwrap();
        assert_eq!(g.outputs, vec!["probs", "r1", "c1"]);
        assert_eq!(g.nodes.len(), 2);
    }

    #[test]
    fn damaged_bytes_are_an_error_not_a_panic() {
        let m = model();
        for cut in 1..m.len() {
            let _ = read_graph(&m[..cut]); // must not panic
        }
        assert!(read_graph(&[0x0a, 0xff]).is_err());
        assert!(read_graph(b"").is_err(), "no graph");
    }
}
