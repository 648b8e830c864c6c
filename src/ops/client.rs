//! A small HTTP/1.1 client for the admin API: whole answers, or a body read as it streams.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::{OpsError, Target};

/// How long one exchange may take (a purge waits out a node's lease: up to some seconds).
const TIMEOUT: Duration = Duration::from_secs(60);

pub struct AdminClient {
    target: Target,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl AdminClient {
    pub fn new(target: Target) -> Self {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(Duration::from_secs(5)));
        Self {
            target,
            client: Client::builder(TokioExecutor::new()).build(http),
        }
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    fn request(&self, method: Method, path: &str, body: Bytes) -> Request<Full<Bytes>> {
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = method;
        // A path of ours and an address: always a valid URI.
        *request.uri_mut() = format!("http://{}{path}", self.target.admin)
            .parse()
            .unwrap_or_default();
        if let Some(token) = &self.target.token
            && let Ok(value) = format!("Bearer {token}").parse()
        {
            request.headers_mut().insert(header::AUTHORIZATION, value);
        }
        request.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/json"),
        );
        request
    }

    /// Send and read the whole answer.
    pub async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> Result<(StatusCode, Bytes), OpsError> {
        let response = self.send(method, path, body).await?;
        let status = response.status();
        let body = tokio::time::timeout(TIMEOUT, response.into_body().collect())
            .await
            .map_err(|_| self.unreachable("timed out"))?
            .map_err(|e| self.unreachable(&e.to_string()))?
            .to_bytes();
        Ok((status, body))
    }

    /// A JSON answer to a GET, a 200 only.
    pub async fn get_json(&self, path: &str) -> Result<serde_json::Value, OpsError> {
        let (status, body) = self.exchange(Method::GET, path, Bytes::new()).await?;
        if status != StatusCode::OK {
            return Err(refused(status, &body));
        }
        serde_json::from_slice(&body).map_err(|e| OpsError::Answer(e.to_string()))
    }

    /// Send, and hand back the response as soon as its head arrives (a stream to read).
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> Result<hyper::Response<Incoming>, OpsError> {
        let request = self.request(method, path, body);
        tokio::time::timeout(TIMEOUT, self.client.request(request))
            .await
            .map_err(|_| self.unreachable("timed out"))?
            .map_err(|e| self.unreachable(&crate::origin::error_chain(&e)))
    }

    fn unreachable(&self, why: &str) -> OpsError {
        OpsError::Unreachable(self.target.admin, why.to_owned())
    }
}

/// A non-200 answer as an error, with its text.
pub(crate) fn refused(status: StatusCode, body: &[u8]) -> OpsError {
    OpsError::Refused(
        status.as_u16(),
        String::from_utf8_lossy(body).trim().to_owned(),
    )
}
