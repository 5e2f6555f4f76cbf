//! Source tarballs fetched from the server (`GET /api/worker/source`), streamed to disk.

use crate::executor::SourceFetcher;
use futures_util::future::BoxFuture;
use futures_util::StreamExt;
use std::path::Path;
use tokio::io::AsyncWriteExt;

/// Fetches source tarballs over HTTP with the worker token.
pub struct HttpSources {
    pub client: reqwest::Client,
    /// `http://host:port`
    pub base_url: String,
    pub token: Option<String>,
}

impl SourceFetcher for HttpSources {
    fn fetch<'a>(
        &'a self,
        repo: &'a str,
        commit: &'a str,
        path: &'a str,
        dest: &'a Path,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let mut request = self
                .client
                .get(format!("{}/api/worker/source", self.base_url))
                .query(&[("repo", repo), ("commit", commit), ("path", path)]);
            if let Some(token) = &self.token {
                request = request.bearer_auth(token);
            }
            let response = request.send().await.map_err(|e| e.to_string())?;
            if !response.status().is_success() {
                let status = response.status();
                let body = response.text().await.unwrap_or_default();
                return Err(format!("server answered {status}: {body}"));
            }
            let mut file = tokio::fs::File::create(dest)
                .await
                .map_err(|e| e.to_string())?;
            let mut body = response.bytes_stream();
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| e.to_string())?;
                file.write_all(&chunk).await.map_err(|e| e.to_string())?;
            }
            file.flush().await.map_err(|e| e.to_string())?;
            Ok(())
        })
    }
}
