//! Logging: text or JSON on stderr, sharing the terminal with the progress bars.

use super::{GlobalArgs, LogFormat};

pub fn init_logging(g: &GlobalArgs) {
    let level = if g.quiet {
        "warn"
    } else {
        match g.verbose {
            0 | 1 => "info",
            _ => "debug",
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("FACEBATCH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("{level},ort=warn")));
    // NO_COLOR (https://no-color.org): any non-empty value turns colours off.
    let color = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| LogWriter)
        .with_ansi(color)
        .with_target(false);
    match g.log_format {
        LogFormat::Json => builder.json().init(),
        // Text logs round the floats people read (`train_loss=0.6720`, `seconds=0.6555`);
        // JSON logs keep every digit.
        LogFormat::Text => builder.fmt_fields(human_fields()).init(),
    }
}

/// The text log's fields as tracing's default writes them (`message`, then `name=value`),
/// with every floating-point value written by [`facebatch::progress::for_humans`].
fn human_fields() -> impl for<'w> tracing_subscriber::fmt::FormatFields<'w> {
    use tracing_subscriber::field::MakeExt;
    tracing_subscriber::fmt::format::debug_fn(|w, field, value| {
        let text = format!("{value:?}");
        let shown = match text.parse::<f64>() {
            Ok(x) if text.contains('.') || text.contains('e') => facebatch::progress::for_humans(x),
            _ => text,
        };
        if field.name() == "message" {
            write!(w, "{shown}")
        } else {
            write!(w, "{}={shown}", field.name())
        }
    })
    .delimited(" ")
}

/// stderr, with the progress bars cleared for each log line and redrawn after it.
pub struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        facebatch::progress::suspend_bars(|| std::io::stderr().write(buf))
    }
    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        facebatch::progress::suspend_bars(|| std::io::stderr().write_all(buf))
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// One record in the shape of the JSON log's own (tracing-subscriber's `json()`), with
/// nested fields kept as JSON objects instead of strings.
pub fn log_json_record(message: &str, fields: serde_json::Value) {
    let mut f = match fields {
        serde_json::Value::Object(m) => m,
        other => serde_json::Map::from_iter([("value".to_string(), other)]),
    };
    f.insert("message".into(), message.into());
    let record = serde_json::json!({
        "timestamp": facebatch::fsutil::now_rfc3339(),
        "level": "INFO",
        "fields": f,
    });
    use std::io::Write;
    let _ = writeln!(LogWriter, "{record}");
}
