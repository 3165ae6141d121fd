//! The CLI's side of the control API: HTTP/1.1 over the Unix socket.

use std::path::Path;

use anyhow::{anyhow, Context, Result};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// The node is not running (or its socket is not reachable).
#[derive(Debug, thiserror::Error)]
#[error("no node is running on {0} (start one with `osmoda run`)")]
pub struct NotRunning(pub String);

/// The node answered with an error status.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Refused {
    pub status: StatusCode,
    pub message: String,
}

pub async fn call(socket: &Path, method: Method, path: &str, body: Option<Value>) -> Result<Value> {
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .map_err(|_| NotRunning(socket.display().to_string()))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .context("control API handshake")?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let payload = match &body {
        Some(v) => Bytes::from(serde_json::to_vec(v)?),
        None => Bytes::new(),
    };
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "osmoda")
        .header("content-type", "application/json")
        .body(Full::new(payload))?;
    let response = sender
        .send_request(request)
        .await
        .context("control API request")?;
    let status = response.status();
    let bytes = response.into_body().collect().await?.to_bytes();
    let value: Value = serde_json::from_slice(&bytes)
        .map_err(|_| anyhow!("the node answered {status} with a body that is not JSON"))?;
    if !status.is_success() {
        let message = value
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("unknown error")
            .to_string();
        return Err(Refused { status, message }.into());
    }
    Ok(value)
}
