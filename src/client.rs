//! The Rust client of the node API for online engines and the CLI: [`EngineClient`]. It
//! depends on the API's types (`wire`), TLS and tokens only. (The dealer's client is a
//! participant in the protocol: `cluster::DealerClient`.)

use crate::auth::Token;
use crate::material::PoolSpec;
use crate::wire::{CheckoutRequest, CheckoutView, HealthView, StockView};
use crate::wire::{Code, Problem};
use futures_util::StreamExt;
use std::time::Duration;

/// What a call to a node can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{status} {}: {}", problem.code, problem.detail)]
    Api {
        status: u16,
        problem: Box<Problem>,
        retry_after: Option<u64>,
    },
    #[error("cannot reach {url}: {source}")]
    Transport { url: String, source: reqwest::Error },
    #[error("{0}")]
    Other(String),
}

impl ClientError {
    /// Whether this is an API error with problem code `code`.
    pub fn is(&self, code: Code) -> bool {
        match self {
            ClientError::Api { problem, .. } => problem.code() == code,
            _ => false,
        }
    }

    /// The problem code of an API error, as the node spelled it.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { problem, .. } => Some(&problem.code),
            _ => None,
        }
    }
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether trying again later may succeed: the party could not be reached, or said it is
    /// unavailable (a party it depends on is down, or it is overloaded).
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Transport { .. } => true,
            ClientError::Api { status, .. } => matches!(status, 502..=504 | 408 | 429),
            ClientError::Other(_) => false,
        }
    }
}

async fn check(
    url: &str,
    resp: Result<reqwest::Response, reqwest::Error>,
) -> Result<reqwest::Response, ClientError> {
    let resp = resp.map_err(|source| ClientError::Transport {
        url: url.to_string(),
        source,
    })?;
    if resp.status().is_success() {
        return Ok(resp);
    }
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let text = resp.text().await.unwrap_or_default();
    let problem = serde_json::from_str(&text).unwrap_or(Problem {
        kind: "about:blank".into(),
        title: "error".into(),
        status,
        detail: text,
        code: "unknown".into(),
        available: None,
        retry_after_seconds: None,
    });
    Err(ClientError::Api {
        status,
        problem: Box::new(problem),
        retry_after,
    })
}

/// Sends `req` to `url` with `token` and reads a JSON answer.
async fn call_json<T: serde::de::DeserializeOwned>(
    url: &str,
    req: reqwest::RequestBuilder,
    token: &Token,
) -> Result<T, ClientError> {
    let r = check(url, req.bearer_auth(token.expose()).send().await).await?;
    r.json()
        .await
        .map_err(|e| ClientError::Other(e.to_string()))
}

/// An engine's client of its own party's node.
#[derive(Clone)]
pub struct EngineClient {
    base: String,
    token: Token,
    http: reqwest::Client,
}

impl std::fmt::Debug for EngineClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineClient")
            .field("base", &self.base)
            .finish()
    }
}

impl EngineClient {
    /// # Errors
    /// An unparseable CA certificate.
    pub fn new(base: &str, ca_pem: &str, token: Token) -> Result<Self, ClientError> {
        let http = crate::tls::client(ca_pem, Duration::from_secs(3600))
            .map_err(|e| ClientError::Other(e.to_string()))?;
        Ok(EngineClient {
            base: base.trim_end_matches('/').to_string(),
            token,
            http,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends a request carrying this engine's token and parses a JSON answer.
    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        req: reqwest::RequestBuilder,
    ) -> Result<T, ClientError> {
        call_json(url, req, &self.token).await
    }

    /// # Errors
    /// Transport or API errors.
    pub async fn health(&self) -> Result<HealthView, ClientError> {
        let url = self.url("/v1/health");
        let r = check(&url, self.http.get(&url).send().await).await?;
        r.json()
            .await
            .map_err(|e| ClientError::Other(e.to_string()))
    }

    /// # Errors
    /// Transport or API errors.
    pub async fn stock(&self) -> Result<StockView, ClientError> {
        let url = self.url("/v1/stock");
        self.call(&url, self.http.get(&url)).await
    }

    /// The leader's forecast: consumption, hours of stock left, windows.
    ///
    /// # Errors
    /// Transport or API errors.
    pub async fn forecast(&self) -> Result<crate::wire::ForecastView, ClientError> {
        let url = self.url("/v1/forecast");
        self.call(&url, self.http.get(&url)).await
    }

    /// Reserves `count` items of `pool` under `id` (the same id at every party's engine).
    ///
    /// # Errors
    /// Transport or API errors (`underrun` with the available count, `checkout-conflict`, ...).
    pub async fn checkout(
        &self,
        id: &str,
        pool: PoolSpec,
        count: u64,
    ) -> Result<CheckoutView, ClientError> {
        let url = self.url("/v1/checkouts");
        let body = CheckoutRequest {
            id: id.to_string(),
            pool,
            count,
        };
        self.call(&url, self.http.post(&url).json(&body)).await
    }

    /// A checkout as this party's node sees it (its state here, its items, when it expires).
    ///
    /// # Errors
    /// Transport or API errors (`unknown-checkout`).
    pub async fn get_checkout(&self, id: &str) -> Result<CheckoutView, ClientError> {
        let url = self.url(&format!("/v1/checkouts/{}", crate::wire::path_segment(id)));
        self.call(&url, self.http.get(&url)).await
    }

    /// Starts downloading this party's shares of a checkout (once): the share stream as it
    /// arrives, for callers that read it as a stream (such as [`EngineClient::download_reader`]).
    ///
    /// # Errors
    /// Transport or API errors (`already-consumed` on a second download).
    pub async fn download_stream(
        &self,
        id: &str,
    ) -> Result<
        impl futures_util::Stream<Item = Result<bytes::Bytes, ClientError>> + Send + 'static,
        ClientError,
    > {
        let url = self.url(&format!(
            "/v1/checkouts/{}/shares",
            crate::wire::path_segment(id)
        ));
        let r = check(
            &url,
            self.http
                .get(&url)
                .bearer_auth(self.token.expose())
                .send()
                .await,
        )
        .await?;
        Ok(r.bytes_stream().map(move |piece| {
            piece.map_err(|source| ClientError::Transport {
                url: url.clone(),
                source,
            })
        }))
    }

    /// The share stream as a blocking [`std::io::Read`], for code that parses it synchronously
    /// (call it from a blocking thread, such as `tokio::task::spawn_blocking`).
    ///
    /// # Errors
    /// As [`EngineClient::download_stream`].
    pub async fn download_reader(
        &self,
        id: &str,
    ) -> Result<impl std::io::Read + Send + 'static, ClientError> {
        let stream = self
            .download_stream(id)
            .await?
            .map(|r| r.map_err(std::io::Error::other));
        Ok(tokio_util::io::SyncIoBridge::new(
            tokio_util::io::StreamReader::new(Box::pin(stream)),
        ))
    }

    /// Downloads this party's shares of a checkout (once), passing each piece to `sink`.
    /// Returns the number of bytes.
    ///
    /// # Errors
    /// Transport or API errors (`already-consumed` on a second download), or `sink`'s error.
    pub async fn download_with(
        &self,
        id: &str,
        mut sink: impl FnMut(&[u8]) -> std::io::Result<()>,
    ) -> Result<u64, ClientError> {
        let mut stream = std::pin::pin!(self.download_stream(id).await?);
        let mut n = 0u64;
        while let Some(piece) = stream.next().await {
            let piece = piece?;
            sink(&piece).map_err(|e| ClientError::Other(format!("writing the shares: {e}")))?;
            n += piece.len() as u64;
        }
        Ok(n)
    }

    /// Downloads a checkout's share stream into memory (small checkouts, tests).
    ///
    /// # Errors
    /// As [`EngineClient::download_with`].
    pub async fn download(&self, id: &str) -> Result<Vec<u8>, ClientError> {
        let mut out = Vec::new();
        self.download_with(id, |b| {
            out.extend_from_slice(b);
            Ok(())
        })
        .await?;
        Ok(out)
    }
}
