//! actix-session's server-side store in the server's Redis: a session's state is one JSON
//! string at `tl:session:<key>` with the session's TTL, and the cookie holds only the random
//! key (private: encrypted and authenticated with [`cookie_key`]). Logging out deletes the
//! Redis entry, so a copied cookie stops working at once.

use crate::AppContext;
use actix_session::config::{CookieContentSecurity, PersistentSession};
use actix_session::storage::{
    generate_session_key, LoadError, SaveError, SessionKey, SessionStore, UpdateError,
};
use actix_session::SessionMiddleware;
use actix_web::cookie::time::Duration;
use actix_web::cookie::{Key, SameSite};
use redis::AsyncCommands;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

type SessionState = HashMap<String, String>;

const KEY_PREFIX: &str = "tl:session:";

/// The session store (one per worker thread; they share the context's connection).
#[derive(Clone)]
pub struct RedisSessionStore {
    context: Arc<AppContext>,
}

impl RedisSessionStore {
    pub fn new(context: Arc<AppContext>) -> Self {
        Self { context }
    }

    async fn connection(&self) -> anyhow::Result<redis::aio::ConnectionManager> {
        Ok(self.context.redis.connection().await?)
    }
}

fn redis_key(key: &SessionKey) -> String {
    format!("{KEY_PREFIX}{}", key.as_ref())
}

fn ttl_seconds(ttl: &Duration) -> u64 {
    ttl.whole_seconds().max(1) as u64
}

impl SessionStore for RedisSessionStore {
    async fn load(&self, key: &SessionKey) -> Result<Option<SessionState>, LoadError> {
        let mut redis = self.connection().await.map_err(LoadError::Other)?;
        let value: Option<String> = redis
            .get(redis_key(key))
            .await
            .map_err(|err| LoadError::Other(err.into()))?;
        value
            .map(|text| serde_json::from_str(&text))
            .transpose()
            .map_err(|err| LoadError::Deserialization(err.into()))
    }

    async fn save(&self, state: SessionState, ttl: &Duration) -> Result<SessionKey, SaveError> {
        let text = serde_json::to_string(&state).map_err(|e| SaveError::Serialization(e.into()))?;
        let mut redis = self.connection().await.map_err(SaveError::Other)?;
        let key = generate_session_key();
        let created: bool = redis::cmd("SET")
            .arg(redis_key(&key))
            .arg(text)
            .arg("NX")
            .arg("EX")
            .arg(ttl_seconds(ttl))
            .query_async::<Option<String>>(&mut redis)
            .await
            .map_err(|err| SaveError::Other(err.into()))?
            .is_some();
        if !created {
            return Err(SaveError::Other(anyhow::anyhow!(
                "a fresh session key collided with an existing one"
            )));
        }
        Ok(key)
    }

    async fn update(
        &self,
        key: SessionKey,
        state: SessionState,
        ttl: &Duration,
    ) -> Result<SessionKey, UpdateError> {
        let text =
            serde_json::to_string(&state).map_err(|e| UpdateError::Serialization(e.into()))?;
        let mut redis = self.connection().await.map_err(UpdateError::Other)?;
        // XX: a session deleted meanwhile (logout elsewhere) is not brought back.
        let updated = redis::cmd("SET")
            .arg(redis_key(&key))
            .arg(&text)
            .arg("XX")
            .arg("EX")
            .arg(ttl_seconds(ttl))
            .query_async::<Option<String>>(&mut redis)
            .await
            .map_err(|err| UpdateError::Other(err.into()))?
            .is_some();
        if updated {
            Ok(key)
        } else {
            self.save(state, ttl).await.map_err(|err| match err {
                SaveError::Serialization(e) => UpdateError::Serialization(e),
                SaveError::Other(e) => UpdateError::Other(e),
            })
        }
    }

    async fn update_ttl(&self, key: &SessionKey, ttl: &Duration) -> anyhow::Result<()> {
        let mut redis = self.connection().await?;
        let _: bool = redis
            .expire(redis_key(key), ttl.whole_seconds().max(1))
            .await?;
        Ok(())
    }

    async fn delete(&self, key: &SessionKey) -> anyhow::Result<()> {
        let mut redis = self.connection().await?;
        let _: u64 = redis.del(redis_key(key)).await?;
        Ok(())
    }
}

/// The session middleware: cookie `tl_session`, private (encrypted), `HttpOnly`,
/// `SameSite=Lax`, `Secure` when browsers reach the server over https, lasting
/// `auth.session.lifetime_minutes` (the logged-in person's own expiry is checked too).
pub fn middleware(context: Arc<AppContext>, key: Key) -> SessionMiddleware<RedisSessionStore> {
    let access = &context.access;
    let secure = access.tls || access.public_url.starts_with("https://");
    let lifetime = Duration::minutes(i64::from(access.session.lifetime_minutes));
    SessionMiddleware::builder(RedisSessionStore::new(context.clone()), key)
        .cookie_name("tl_session".into())
        .cookie_secure(secure)
        .cookie_http_only(true)
        .cookie_same_site(SameSite::Lax)
        .cookie_content_security(CookieContentSecurity::Private)
        .session_lifecycle(PersistentSession::default().session_ttl(lifetime))
        .build()
}

/// The key that encrypts and authenticates session cookies: 64 random bytes kept in
/// `<data_dir>/session_cookie.key` (mode 0600), drawn on first start, so that logins survive
/// a restart of the server.
pub fn cookie_key(data_dir: &Path) -> std::io::Result<Key> {
    let bytes = crate::data_dir_secrets::load_or_create(&data_dir.join("session_cookie.key"), 64)?;
    Ok(Key::from(&bytes))
}
