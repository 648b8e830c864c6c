//! `outpost log`: follow a node's access log (`GET /log`), one JSON object per line on
//! stdout, until interrupted or the node stops.

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::BodyExt;

use super::OpsError;
use super::client::{AdminClient, refused};

/// Which requests to show (each a filter of `GET /log`).
#[derive(Debug, Default, Clone)]
pub struct Filters {
    pub status: Option<String>,
    pub cache: Option<String>,
    pub host: Option<String>,
    pub path_prefix: Option<String>,
    pub site: Option<String>,
}

impl Filters {
    /// The query string `GET /log` takes.
    pub fn query(&self) -> String {
        let pairs = [
            ("status", &self.status),
            ("cache", &self.cache),
            ("host", &self.host),
            ("path_prefix", &self.path_prefix),
            ("site", &self.site),
        ];
        pairs
            .iter()
            .filter_map(|(name, value)| value.as_ref().map(|v| format!("{name}={}", escape(v))))
            .collect::<Vec<_>>()
            .join("&")
    }
}

/// `%XX` for what a query value may not hold as it is.
pub(crate) fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Follow the log, writing each line to `out` as it comes; returns when the stream ends.
pub async fn follow(
    client: &AdminClient,
    filters: &Filters,
    mut out: impl std::io::Write,
) -> Result<(), OpsError> {
    let query = filters.query();
    let path = if query.is_empty() {
        "/log".to_owned()
    } else {
        format!("/log?{query}")
    };
    let response = client.send(Method::GET, &path, Bytes::new()).await?;
    if response.status() != StatusCode::OK {
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        return Err(refused(status, &body));
    }
    let mut body = response.into_body();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| OpsError::Answer(e.to_string()))?;
        if let Ok(data) = frame.into_data()
            && out.write_all(&data).and_then(|()| out.flush()).is_err()
        {
            // Our reader went away (a closed pipe): done.
            return Ok(());
        }
    }
    Ok(())
}

/// `outpost log`: the lines on stdout.
pub async fn run(client: &AdminClient, filters: &Filters) -> Result<(), OpsError> {
    let stdout = std::io::stdout();
    follow(client, filters, stdout.lock()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::io::Write as _;

    #[test]
    fn filters_become_an_escaped_query() {
        let f = Filters {
            status: Some("5xx".into()),
            path_prefix: Some("/a b&c".into()),
            ..Filters::default()
        };
        assert_eq!(f.query(), "status=5xx&path_prefix=/a%20b%26c");
        assert_eq!(Filters::default().query(), "");
        let _ = std::io::sink().write_all(b"");
    }
}
