//! What Outpost tells operators: metrics ([`metrics`]) and logs (tracing setup here).

pub(crate) mod access;
pub mod metrics;

/// Install the tracing subscriber: `RUST_LOG` wins, then `default_level`.
pub fn init_logging(default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    // A second init (tests, embedding) keeps the first subscriber.
    // Logs go to stderr; stdout is for what a command prints (the demo's instructions).
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal: journald, files and log shippers get plain text.
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}
