//! A log writer that blanks configured secrets out of every line before it is written. Our own code never logs a
//! secret; this guards the lines other crates format, e.g. the OTel SDK's export errors, which may quote an
//! endpoint URL whose query carries a key.

use std::io::Write;
use std::sync::Arc;

use tracing_subscriber::fmt::MakeWriter;

use super::TelemetryConfig;
use super::config::Signal;

const REDACTED: &str = "<redacted>";

/// The secrets that could surface in a log line: OTLP header values, user info and query values of the OTLP
/// endpoints, every non-endpoint field of the connection string. Endpoints themselves stay readable.
pub(crate) fn log_secrets_of(config: &TelemetryConfig) -> Vec<String> {
    let mut out = Vec::new();
    for signal in [Signal::Traces, Signal::Metrics, Signal::Logs] {
        let Some(s) = config.otlp.signal(signal) else {
            continue;
        };
        out.extend(s.headers.iter().map(|(_, v)| v.clone()));
        if let Ok(u) = url::Url::parse(&s.endpoint) {
            out.push(u.username().to_owned());
            out.extend(u.password().map(str::to_owned));
            out.extend(u.query_pairs().map(|(_, v)| v.into_owned()));
        }
    }
    if let Some(cs) = &config.app_insights {
        out.extend(
            cs.expose()
                .split(';')
                .filter_map(|kv| kv.split_once('='))
                .filter(|(k, _)| !k.trim().to_ascii_lowercase().ends_with("endpoint"))
                .map(|(_, v)| v.trim().to_owned()),
        );
    }
    // Very short values would blank ordinary words; no real key is that short.
    out.retain(|s| s.len() >= 6);
    out.sort_by_key(|s| std::cmp::Reverse(s.len()));
    out.dedup();
    out
}

pub(crate) struct ScrubbingMakeWriter<M> {
    inner: M,
    secrets: Arc<Vec<String>>,
}

impl<M> ScrubbingMakeWriter<M> {
    pub(crate) fn new(inner: M, secrets: Vec<String>) -> Self {
        Self {
            inner,
            secrets: Arc::new(secrets),
        }
    }
}

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for ScrubbingMakeWriter<M> {
    type Writer = ScrubbingWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        ScrubbingWriter {
            inner: self.inner.make_writer(),
            secrets: self.secrets.clone(),
            buffer: Vec::new(),
        }
    }
}

/// Collects one formatted line (the fmt layer makes one writer per event) and writes it scrubbed on drop.
pub(crate) struct ScrubbingWriter<W: Write> {
    inner: W,
    secrets: Arc<Vec<String>>,
    buffer: Vec<u8>,
}

impl<W: Write> ScrubbingWriter<W> {
    fn emit(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let bytes = std::mem::take(&mut self.buffer);
        if self.secrets.is_empty() {
            // Nothing configured can leak: the line goes out as formatted, unread.
            return self.inner.write_all(&bytes);
        }
        let text = String::from_utf8_lossy(&bytes);
        if self.secrets.iter().any(|s| text.contains(s.as_str())) {
            let clean = self.secrets.iter().fold(text.into_owned(), |acc, s| {
                acc.replace(s.as_str(), REDACTED)
            });
            self.inner.write_all(clean.as_bytes())
        } else {
            self.inner.write_all(&bytes)
        }
    }
}

impl<W: Write> Write for ScrubbingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.emit()?;
        self.inner.flush()
    }
}

impl<W: Write> Drop for ScrubbingWriter<W> {
    fn drop(&mut self) {
        let _ = self.emit();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn secrets_are_blanked_and_endpoints_kept() {
        let config = TelemetryConfig::from_env(&|k: &str| match k {
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT" => {
                Some("https://otlp.example/v1/traces?api-key=querysecret1".into())
            }
            "OTEL_EXPORTER_OTLP_HEADERS" => Some("x-api-key=headersecret2".into()),
            "APPLICATIONINSIGHTS_CONNECTION_STRING" => {
                Some("InstrumentationKey=ikeysecret3;IngestionEndpoint=https://in.example/".into())
            }
            _ => None,
        })
        .unwrap();
        let sink = Sink::default();
        let out = sink.clone();
        let make = ScrubbingMakeWriter::new(move || out.clone(), log_secrets_of(&config));
        {
            let mut w = make.make_writer();
            w.write_all(b"export to https://otlp.example/v1/traces?api-key=querysecret1 failed, ")
                .unwrap();
            w.write_all(b"header headersecret2, ikey ikeysecret3, ingestion https://in.example/\n")
                .unwrap();
        }
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        for s in ["querysecret1", "headersecret2", "ikeysecret3"] {
            assert!(!text.contains(s), "{s} in {text}");
        }
        assert!(text.contains("https://otlp.example/v1/traces?api-key=<redacted>"));
        assert!(text.contains("https://in.example/"));
    }
}
