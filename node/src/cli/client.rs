//! The CLI's side of the control API: HTTP/1.1 over the Unix socket, typed
//! with the server's own `api` structs.

use std::path::{Path, PathBuf};

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::ErrorKind;

/// Largest answer the CLI reads (a page of 10,000 entries fits).
const MAX_ANSWER_BYTES: usize = 512 * 1024 * 1024;

/// Why a call to the node did not give an answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No node runs on this folder (or its socket is not reachable).
    #[error("no node is running on {0} (start one with `osmoda run`)")]
    NotRunning(String),
    /// The node refused or failed the request.
    #[error("{message}")]
    Refused { kind: ErrorKind, message: String },
    /// The exchange itself failed.
    #[error("control API: {0}")]
    Transport(String),
}

impl ClientError {
    /// The exit code that tells a script what happened.
    pub fn exit_code(&self) -> u8 {
        match self {
            ClientError::NotRunning(_) => 3,
            ClientError::Refused { kind, .. } => crate::error::exit_code(*kind),
            ClientError::Transport(_) => 1,
        }
    }
}

fn transport(e: impl std::fmt::Display) -> ClientError {
    ClientError::Transport(e.to_string())
}

/// A client of one node's control socket.
#[derive(Debug, Clone)]
pub struct Client {
    socket: PathBuf,
}

impl Client {
    pub fn new(socket: &Path) -> Self {
        Self {
            socket: socket.to_owned(),
        }
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.call(Method::GET, path, None::<&()>).await
    }

    /// GET with the query string made from `query` (the same struct the
    /// server parses it into).
    pub async fn get_with<Q: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        query: &Q,
    ) -> Result<T, ClientError> {
        let query = serde_urlencoded::to_string(query).map_err(transport)?;
        let full = if query.is_empty() {
            path.to_owned()
        } else {
            format!("{path}?{query}")
        };
        self.get(&full).await
    }

    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        self.call(Method::POST, path, Some(body)).await
    }

    pub async fn patch<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        self.call(Method::PATCH, path, Some(body)).await
    }

    pub async fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.call(Method::DELETE, path, None::<&()>).await
    }

    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let stream = tokio::net::UnixStream::connect(&self.socket)
            .await
            .map_err(|_| ClientError::NotRunning(self.socket.display().to_string()))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(transport)?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let payload = match body {
            Some(v) => Bytes::from(serde_json::to_vec(v).map_err(transport)?),
            None => Bytes::new(),
        };
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "osmoda")
            .header("content-type", "application/json")
            .body(Full::new(payload))
            .map_err(transport)?;
        let response = sender.send_request(request).await.map_err(transport)?;
        let status = response.status();
        let bytes = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(transport)?
            .to_bytes();
        if !status.is_success() {
            let message = serde_json::from_slice::<crate::api::ErrorBody>(&bytes)
                .map(|b| b.error)
                .unwrap_or_else(|_| format!("the node answered {status}"));
            return Err(ClientError::Refused {
                kind: crate::control::kind_of(status.as_u16(), &bytes),
                message,
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| {
            ClientError::Transport(format!(
                "the node's answer to {path} is not what this CLI expects ({e}); are the node and the CLI the same version?"
            ))
        })
    }
}

/// Percent-encodes one path segment (an id or a name typed by the user).
pub fn segment(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
