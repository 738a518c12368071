//! Rust clients of the node API: [`EngineClient`] for online engines and the CLI, and
//! [`DealerClient`], which stages each party's share at that party's node only and asks the
//! leader to commit once all have it.

use crate::auth::Token;
use crate::generate::{BatchPlan, Generator};
use crate::material::PoolSpec;
use crate::node::config::ClusterConfig;
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
    /// A call to one party of the consortium failed, named so an operator knows which.
    #[error("party {party} ({name}): {what}: {source}")]
    Party {
        party: u8,
        name: String,
        what: &'static str,
        source: Box<ClientError>,
    },
}

impl ClientError {
    /// Whether this is an API error with problem code `code`.
    pub fn is(&self, code: Code) -> bool {
        match self {
            ClientError::Api { problem, .. } => problem.code() == code,
            ClientError::Party { source, .. } => source.is(code),
            _ => false,
        }
    }

    /// The problem code of an API error, as the node spelled it.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { problem, .. } => Some(&problem.code),
            ClientError::Party { source, .. } => source.code(),
            _ => None,
        }
    }
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            ClientError::Party { source, .. } => source.status(),
            _ => None,
        }
    }

    /// Whether trying again later may succeed: the party could not be reached, or said it is
    /// unavailable (a party it depends on is down, or it is overloaded).
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Transport { .. } => true,
            ClientError::Api { status, .. } => matches!(status, 502..=504 | 408 | 429),
            ClientError::Party { source, .. } => source.is_transient(),
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
        let url = self.url(&format!(
            "/v1/checkouts/{}",
            crate::node::cluster::urlencode(id)
        ));
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
            crate::node::cluster::urlencode(id)
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

/// The dealer's client: stages at every node, commits at the leader.
pub struct DealerClient {
    cluster: ClusterConfig,
    token: Token,
    http: reqwest::Client,
}

impl DealerClient {
    /// # Errors
    /// An unreadable CA certificate.
    pub fn new(cluster: ClusterConfig, token: Token) -> Result<Self, ClientError> {
        let ca = std::fs::read_to_string(&cluster.ca_certificate)
            .map_err(|e| ClientError::Other(format!("reading the CA certificate: {e}")))?;
        let http = crate::tls::client(&ca, Duration::from_secs(600))
            .map_err(|e| ClientError::Other(e.to_string()))?;
        Ok(DealerClient {
            cluster,
            token,
            http,
        })
    }

    fn url(&self, party: u8, path: &str) -> String {
        format!(
            "{}{path}",
            self.cluster.parties[party as usize]
                .url
                .trim_end_matches('/')
        )
    }

    /// How long from now an unreachable party is retried: half the staging deadline (the
    /// nodes drop batches staged longer than the whole deadline).
    fn retry_deadline(&self) -> tokio::time::Instant {
        tokio::time::Instant::now() + Duration::from_secs(self.cluster.staging_deadline_seconds / 2)
    }

    /// `e`, naming the party it came from.
    fn named(&self, party: u8, what: &'static str, e: ClientError) -> ClientError {
        if matches!(e, ClientError::Party { .. }) {
            return e;
        }
        ClientError::Party {
            party,
            name: self.cluster.parties[party as usize].name.clone(),
            what,
            source: Box::new(e),
        }
    }

    /// Runs `call` against `party` until it succeeds, fails for good, or `until` would pass
    /// before the next try; waits 0.2 s between tries, doubling up to 5 s. Errors name the
    /// party.
    async fn retrying<T, F, Fut>(
        &self,
        party: u8,
        what: &'static str,
        until: tokio::time::Instant,
        mut call: F,
    ) -> Result<T, ClientError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, ClientError>>,
    {
        let mut wait = Duration::from_millis(200);
        loop {
            match call().await {
                Ok(v) => return Ok(v),
                Err(e) if e.is_transient() && tokio::time::Instant::now() + wait < until => {
                    tracing::warn!(
                        party,
                        name = %self.cluster.parties[party as usize].name,
                        what,
                        error = %e,
                        retry_in_ms = wait.as_millis() as u64,
                        "party unavailable; trying again"
                    );
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
                Err(e) => return Err(self.named(party, what, e)),
            }
        }
    }

    /// Deals `count` items of `pool` batch by batch; `progress` gets the items committed.
    ///
    /// # Errors
    /// Generation, transport or API errors. A batch that fails half-way is aborted at the
    /// parties that staged it (and would be cleaned up by their sweeps otherwise).
    pub async fn deal<G: Generator + Send + 'static>(
        &self,
        mut generator: G,
        pool: PoolSpec,
        count: u64,
        mut progress: impl FnMut(u64),
    ) -> Result<u64, ClientError> {
        let parties = self.cluster.parties();
        let mut done = 0;
        // The correction-party rule (see `PoolSpec::correction_party`): batches of the pool
        // the leader holds, then one more per batch of this deal.
        let leader = self.cluster.leader;
        let stock_url = self.url(leader, "/v1/stock");
        let stock: StockView = self
            .retrying(leader, "reading stock", self.retry_deadline(), || {
                call_json(&stock_url, self.http.get(&stock_url), &self.token)
            })
            .await?;
        let mut index = stock.pools.get(&pool).map_or(0, |s| s.batches);
        while done < count {
            let items = (count - done).min(self.cluster.batch_size);
            let plan_pool = pool;
            let (g, shares) = tokio::task::spawn_blocking(move || {
                let plan = BatchPlan {
                    pool: plan_pool,
                    parties,
                    batch: generator.next_batch_id(),
                    items,
                    correction: plan_pool.correction_party(parties, index),
                };
                let out = generator.generate(&plan);
                (generator, out)
            })
            .await
            .map_err(|e| ClientError::Other(e.to_string()))?;
            generator = g;
            index += 1;
            let shares = shares.map_err(|e| ClientError::Other(e.to_string()))?;
            let batch = shares[0].header.batch;
            // Each party's share at its own node; a party that is briefly unreachable is asked
            // again until the retry deadline.
            let until = self.retry_deadline();
            let staged =
                futures_util::future::join_all(shares.into_iter().enumerate().map(|(p, share)| {
                    let url = self.url(p as u8, &format!("/v1/internal/batches/{batch}"));
                    async move {
                        let r = self
                            .retrying(p as u8, "staging", until, || async {
                                check(
                                    &url,
                                    self.http
                                        .put(&url)
                                        .bearer_auth(self.token.expose())
                                        .header("content-type", "application/octet-stream")
                                        .body(share.bytes.to_vec())
                                        .send()
                                        .await,
                                )
                                .await
                            })
                            .await;
                        if r.is_ok() {
                            crate::failpoint::hit("dealer.staged");
                        }
                        r
                    }
                }))
                .await;
            let failed = staged.iter().any(Result::is_err);
            let commit = if failed {
                None
            } else {
                crate::failpoint::hit("dealer.before-commit");
                let url = self.url(
                    self.cluster.leader,
                    &format!("/v1/internal/batches/{batch}/commit"),
                );
                Some(
                    self.retrying(self.cluster.leader, "committing", until, || async {
                        check(
                            &url,
                            self.http
                                .post(&url)
                                .bearer_auth(self.token.expose())
                                .send()
                                .await,
                        )
                        .await
                    })
                    .await,
                )
            };
            if !matches!(commit, Some(Ok(_))) {
                // Unclear or failed: the leader decides. Abort its copy first; if it refuses
                // because it made the batch available (a commit whose answer was lost), the
                // batch is committed after all. Only then drop the followers' copies.
                let leader_url = self.url(
                    self.cluster.leader,
                    &format!("/v1/internal/batches/{batch}"),
                );
                let leader_abort = check(
                    &leader_url,
                    self.http
                        .delete(&leader_url)
                        .bearer_auth(self.token.expose())
                        .send()
                        .await,
                )
                .await;
                match leader_abort {
                    Err(e) if e.is(Code::IllegalTransition) => {}
                    Err(e) => return Err(self.named(self.cluster.leader, "aborting", e)),
                    Ok(_) => {
                        for (p, s) in staged.iter().enumerate() {
                            if s.is_ok() && p as u8 != self.cluster.leader {
                                let url =
                                    self.url(p as u8, &format!("/v1/internal/batches/{batch}"));
                                let _ = self
                                    .http
                                    .delete(&url)
                                    .bearer_auth(self.token.expose())
                                    .send()
                                    .await;
                            }
                        }
                        return Err(match commit {
                            Some(Err(e)) => e,
                            _ => staged
                                .into_iter()
                                .find_map(Result::err)
                                .expect("a staging failed"),
                        });
                    }
                }
            }
            done += items;
            progress(done);
        }
        Ok(done)
    }
}
