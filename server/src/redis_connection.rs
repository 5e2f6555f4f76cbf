//! Connection to the Redis that holds the live state.
//!
//! The server must start (and report itself unhealthy) while Redis is down, so the connection is
//! made lazily and retried on use.

use redis::aio::ConnectionManager;
use std::time::Duration;
use tokio::sync::OnceCell;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A lazily-connected, automatically reconnecting Redis connection.
pub struct RedisHandle {
    client: redis::Client,
    manager: OnceCell<ConnectionManager>,
}

impl RedisHandle {
    /// Parses the URL; does not connect yet.
    pub fn new(url: &str) -> redis::RedisResult<Self> {
        Ok(Self {
            client: redis::Client::open(url)?,
            manager: OnceCell::new(),
        })
    }

    /// The shared connection, connecting first if needed.
    pub async fn connection(&self) -> redis::RedisResult<ConnectionManager> {
        self.manager
            .get_or_try_init(|| async {
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_response_timeout(Some(CONNECT_TIMEOUT))
                    .set_number_of_retries(1);
                self.client.get_connection_manager_with_config(config).await
            })
            .await
            .cloned()
    }

    /// Checks that Redis answers `PING`.
    pub async fn ping(&self) -> Result<(), String> {
        let attempt = async {
            let mut connection = self.connection().await?;
            redis::cmd("PING")
                .query_async::<String>(&mut connection)
                .await
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(err)) => Err(format!("redis unreachable: {err}")),
            Err(_) => Err("redis unreachable: timed out".into()),
        }
    }
}
