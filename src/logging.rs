//! Log output: tracing to stdout (what Heroku collects) and, optionally, to
//! rolling files, as text or JSON lines, with every line passed through the
//! token [`Redactor`] before it is written.
//!
//! `RUST_LOG`, when set, overrides the configured level. The returned
//! [`LogGuard`] flushes the file writer when dropped, so `main` holds it
//! until the process exits.

use std::io::{self, IsTerminal, Write};
use std::path::Path;

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{LogFormat, LogRotation, SupervisorSettings};
use crate::secret::Redactor;

/// Keeps the file writer alive; dropping it flushes what is buffered.
#[must_use = "dropping the guard stops file logging"]
pub struct LogGuard {
    _file: Option<WorkerGuard>,
}

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("RUST_LOG is not a valid log filter: {0}")]
    Filter(String),
    #[error("cannot write logs to {dir}: {message}")]
    Dir { dir: String, message: String },
    #[error("a logger is already installed")]
    AlreadyInstalled,
}

/// Installs the global logger described by `settings`.
///
/// # Errors
/// When `RUST_LOG` is not a valid filter or `log_dir` cannot be created.
pub fn init(settings: &SupervisorSettings) -> Result<LogGuard, LogError> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(env) if !env.trim().is_empty() => EnvFilter::builder()
            .parse(&env)
            .map_err(|e| LogError::Filter(e.to_string()))?,
        _ => EnvFilter::builder()
            .parse(&settings.log_level)
            .map_err(|e| LogError::Filter(e.to_string()))?,
    };

    let (file_writer, file_guard) = match &settings.log_dir {
        Some(dir) => {
            prepare_dir(dir)?;
            let rotation = match settings.log_rotation {
                LogRotation::Hourly => tracing_appender::rolling::Rotation::HOURLY,
                LogRotation::Daily => tracing_appender::rolling::Rotation::DAILY,
                LogRotation::Never => tracing_appender::rolling::Rotation::NEVER,
            };
            let appender = tracing_appender::rolling::RollingFileAppender::builder()
                .rotation(rotation)
                .filename_prefix("botvisor")
                .filename_suffix("log")
                .build(dir)
                .map_err(|e| LogError::Dir {
                    dir: dir.display().to_string(),
                    message: e.to_string(),
                })?;
            let (writer, guard) = tracing_appender::non_blocking(appender);
            (Some(Redacting(writer)), Some(guard))
        }
        None => (None, None),
    };

    let stdout = Redacting(io::stdout);
    let ansi = io::stdout().is_terminal();
    let registry = tracing_subscriber::registry().with(filter);
    let result = match settings.log_format {
        LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(ansi)
                    .with_writer(stdout),
            )
            .with(file_writer.map(|w| {
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .with_writer(w)
            }))
            .try_init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_writer(stdout),
            )
            .with(file_writer.map(|w| {
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_writer(w)
            }))
            .try_init(),
    };
    result.map_err(|_| LogError::AlreadyInstalled)?;
    Ok(LogGuard { _file: file_guard })
}

/// Creates the log folder `dir` if it is missing and makes sure a file can
/// be written in it. The daemon does this before it logs anything, and
/// `botvisor check` does the same, so both refuse an unusable `log_dir` in
/// the same words. Nothing is left behind but the folder.
///
/// # Errors
/// When the folder cannot be created or written to.
pub fn prepare_dir(dir: &Path) -> Result<(), LogError> {
    let failed = |e: io::Error| LogError::Dir {
        dir: dir.display().to_string(),
        message: e.to_string(),
    };
    std::fs::create_dir_all(dir).map_err(failed)?;
    let probe = dir.join(format!(".botvisor-write-check-{}", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&probe)
        .map_err(failed)?;
    // Only the folder matters; a probe another process removed first is fine.
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// Text logs to stderr only, for commands whose stdout is their own (the
/// sandbox's chat): `default_filter` unless `RUST_LOG` says otherwise,
/// every line redacted like the daemon's.
///
/// # Errors
/// When the filter is invalid, or a logger is installed already.
pub fn init_stderr(default_filter: &str) -> Result<(), LogError> {
    let directives = match std::env::var("RUST_LOG") {
        Ok(env) if !env.trim().is_empty() => env,
        _ => default_filter.to_owned(),
    };
    let filter = EnvFilter::builder()
        .parse(&directives)
        .map_err(|e| LogError::Filter(e.to_string()))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(io::stderr().is_terminal())
        .with_writer(Redacting(io::stderr))
        .finish()
        .try_init()
        .map_err(|_| LogError::AlreadyInstalled)
}

/// A `MakeWriter` whose writers pass each formatted line through the global
/// redactor. tracing-subscriber formats a whole event into one buffer and
/// writes it with a single `write_all`, so a token is never split across two
/// writes.
#[derive(Clone)]
struct Redacting<M>(M);

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for Redacting<M> {
    type Writer = RedactingWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        RedactingWriter(self.0.make_writer())
    }
}

struct RedactingWriter<W>(W);

impl<W: Write> Write for RedactingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let clean = Redactor::global().redact(&text);
        self.0.write_all(one_line(&clean).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// One formatted event as one line: a line break inside it (a multi-line
/// error or panic message) is written as `\n`, so every line of the log
/// starts with its own timestamp and level and none can be forged.
fn one_line(event: &str) -> std::borrow::Cow<'_, str> {
    let body = event.trim_end_matches(['\n', '\r']);
    if !body.contains(['\n', '\r']) {
        return std::borrow::Cow::Borrowed(event);
    }
    let mut out = body.replace("\r\n", "\\n").replace(['\n', '\r'], "\\n");
    if body.len() < event.len() {
        out.push('\n');
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Token;

    #[test]
    fn every_written_line_is_redacted_in_any_encoding() {
        // Built at run time: no token-shaped literal sits in the source.
        let secret = format!("AAloggingTestSecret_{}", "0123456789abcdef");
        let token = format!("424242:{secret}");
        Redactor::global().learn(&Token::new(token));
        let lines = [
            format!("raw: \"/bot424242%3A{secret}/GetMe\"\n"),
            format!("{{\"description\":\"\\/bot424242\\u003a{secret}\"}}\n"),
            format!("text=\"\\\\u0041{}\"\n", &secret[1..]),
            format!("secret alone: {secret}\n"),
        ];
        for line in lines {
            let mut writer = RedactingWriter(Vec::new());
            writer.write_all(line.as_bytes()).expect("write");
            let written = String::from_utf8(writer.0).expect("utf-8");
            assert!(!written.contains("loggingTest"), "{line} gave {written}");
            assert!(written.contains("<redacted>"), "{written}");
        }
    }

    #[test]
    fn an_event_is_written_as_one_line() {
        let cases = [
            ("INFO one line\n", "INFO one line\n"),
            ("ERROR first\nsecond\n", "ERROR first\\nsecond\n"),
            ("ERROR first\r\nsecond\r\n", "ERROR first\\nsecond\n"),
            ("WARN a\n\nb", "WARN a\\n\\nb"),
            ("", ""),
        ];
        for (event, expected) in cases {
            let mut writer = RedactingWriter(Vec::new());
            writer.write_all(event.as_bytes()).expect("write");
            assert_eq!(String::from_utf8_lossy(&writer.0), expected, "{event:?}");
        }
    }
}
