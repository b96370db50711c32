//! The key-value metadata keys of facebatch's Parquet files: what classify outputs record
//! of the run, the model and the faces, and what eval's predictions files record of the
//! same model and faces (docs/output-schema.md lists each).

pub const VERSION: &str = "facebatch.version";
pub const RUN_ID: &str = "facebatch.run_id";
pub const STARTED: &str = "facebatch.started_at";
pub const FINISHED: &str = "facebatch.finished_at";
pub const MODEL_SHA256: &str = "facebatch.model_sha256";
pub const MODEL_CARD: &str = "facebatch.model_card";
pub const MODEL_NAME: &str = "facebatch.model_name";
pub const MODEL_VERSION: &str = "facebatch.model_version";
pub const MODEL_PATH: &str = "facebatch.model_path";
/// `float32` or `int8` (`--precision`): which of the card's networks ran.
pub const MODEL_PRECISION: &str = "facebatch.model_precision";
pub const SHARD: &str = "facebatch.shard";
pub const INPUTS: &str = "facebatch.inputs";
pub const STATUS: &str = "facebatch.run_status";
pub const FEATURE_DIM: &str = "facebatch.feature_dim";
/// With `--member-probs`: the members whose columns the file holds (a JSON list).
pub const MEMBERS: &str = "facebatch.members";
pub const FACES: &str = "facebatch.faces";
/// The absolute folder that relative `root`s (and other relative paths) in the file are
/// relative to: the working directory of the run that wrote it.
pub const BASE: &str = "facebatch.base";
/// Names the merge that wrote the file: the commit point of a run (see `staging`).
pub const MERGE_ID: &str = "facebatch.merge_id";
/// The parts folder a file was merged from (its `run.json` `parts_id`), and on each
/// part the folder it belongs to.
pub const MERGED_PARTS: &str = "facebatch.merged_parts";
pub const PARTS_ID: &str = "facebatch.parts_id";
/// The run's feature statistics, so the `.features.json` file can be rewritten.
pub const FEATURE_STATS: &str = "facebatch.feature_stats";
