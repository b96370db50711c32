//! The `facebatch` command line. Options are parsed once in [`cli`], validated into the
//! library's typed settings, and errors are reported here with a documented exit code.

use std::process::ExitCode;

mod cli;

use cli::{EXIT_BUSY, EXIT_FATAL};

/// The error and its causes on one line, each cause once: a cause whose text the message
/// already contains (the library's errors print their OS error) is not repeated.
fn error_chain(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

fn main() -> ExitCode {
    // A bug must still end in one line, not a backtrace.
    std::panic::set_hook(Box::new(|info| {
        eprintln!("facebatch: internal error: {info} (please report this)");
    }));
    // clap reports an empty variable as a missing value of its flag; name the variable.
    for var in ["FACEBATCH_ORT_LIB", "FACEBATCH_DETECTOR", "FACEBATCH_MODEL"] {
        if std::env::var_os(var).is_some_and(|v| v.is_empty()) {
            eprintln!("facebatch: error: {var} is set but empty: unset it or give it a path");
            return ExitCode::from(EXIT_FATAL);
        }
    }
    // One TLS crypto provider for the process, before any client is built.
    facebatch::remote::install_crypto();
    let cli = cli::parse_cli();
    cli::log::init_logging(&cli.global);
    match cli::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("facebatch: error: {}", error_chain(&e));
            match e.downcast_ref::<facebatch::Error>() {
                Some(facebatch::Error::Busy { .. }) => ExitCode::from(EXIT_BUSY),
                _ => ExitCode::from(EXIT_FATAL),
            }
        }
    }
}
