//! API tokens: personal tokens kept in Redis ([`TokenStore`]) and static tokens from the
//! config, both checked by [`TokenStore::verify`].
//!
//! A personal token is `tl_` and 32 random bytes (URL-safe base64), shown once at creation.
//! Redis keeps only its SHA-256. A slow password hash (argon2) is not needed: it defends
//! low-entropy secrets against guessing, and a 256-bit random token cannot be guessed, so one
//! SHA-256 is as strong and lets a token be found by its hash in one lookup. Static tokens are
//! compared by hash in constant time. The token itself is never logged and never in `Debug`.
//!
//! Redis layout under a prefix `P`:
//! - `P:token:<sha256 hex>`: hash `{record: <json>, last_used: <rfc3339>}`;
//! - `P:token_id:<id>`: the SHA-256 of token `id` (ids are public, for listing and revoking);
//! - `P:tokens_of:<owner key>`: set of the owner's token ids; `P:token_ids`: every id.
//!
//! Records of tokens with an expiry are dropped by Redis a week after they expire.

use crate::audit::CallerKind;
use crate::config::StaticToken;
use crate::roles::{Identity, Role, RoleRules};
use crate::secret::{constant_time_eq, Secret};
use base64::Engine;
use chrono::{DateTime, Utc};
use rand::RngCore;
use redis::aio::ConnectionManager;
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// Every personal token starts with this.
pub const TOKEN_PREFIX: &str = "tl_";

/// How long Redis keeps an expired token's record (so that lists can still show it).
const EXPIRED_KEPT_FOR: chrono::Duration = chrono::Duration::days(7);

/// SHA-256 of `token`, lowercase hex: what static tokens are configured with.
pub fn token_sha256(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// What a token store refuses.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("a token's role ({requested}) cannot be higher than its owner's ({owner})")]
    RoleAboveOwner { requested: Role, owner: Role },
    #[error("the expiry is in the past")]
    ExpiryInPast,
    #[error("a token name must be 1 to 100 printable characters")]
    InvalidName,
    #[error("no token has id `{0}`")]
    NotFound(String),
    #[error("only a token's owner or an admin may revoke it")]
    NotAllowed,
    #[error("token record is unreadable: {0}")]
    Corrupt(String),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}

/// A token as listed: everything but the token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenInfo {
    /// Public id (16 hex digits), for listing and revoking.
    pub id: String,
    pub name: String,
    /// The owner's [`Identity::key`].
    pub owner: String,
    pub owner_login: String,
    pub role: Role,
    pub created: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used: Option<DateTime<Utc>>,
}

impl TokenInfo {
    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_some_and(|at| now >= at)
    }
}

/// What Redis keeps per token (JSON): the listed fields and the owner as they were when the
/// token was made, so that the owner's role can be worked out again at each use.
#[derive(Serialize, Deserialize)]
struct TokenRecord {
    id: String,
    name: String,
    owner: Identity,
    role: Role,
    created: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
}

impl TokenRecord {
    fn info(&self, last_used: Option<DateTime<Utc>>) -> TokenInfo {
        TokenInfo {
            id: self.id.clone(),
            name: self.name.clone(),
            owner: self.owner.key(),
            owner_login: self.owner.login.clone(),
            role: self.role,
            created: self.created,
            expires_at: self.expires_at,
            last_used,
        }
    }
}

/// A token just created: [`NewToken::token`] is shown to its owner once, then forgotten.
#[derive(Debug)]
pub struct NewToken {
    pub info: TokenInfo,
    /// The bearer token (redacted in `Debug`).
    pub token: Secret,
}

/// Who a valid bearer token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenCaller {
    /// [`CallerKind::ApiToken`] or [`CallerKind::StaticToken`].
    pub kind: CallerKind,
    /// The owner's [`Identity::key`], or `static:<name>`.
    pub who: String,
    /// The owner's login, or the static token's name.
    pub login: String,
    /// A personal token's id.
    pub token_id: Option<String>,
    pub token_name: String,
    /// The role in effect: the token's, capped by its owner's current role.
    pub role: Role,
}

type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// Personal tokens in Redis, plus the config's static tokens.
#[derive(Clone)]
pub struct TokenStore {
    redis: ConnectionManager,
    prefix: String,
    static_tokens: Arc<Vec<StaticToken>>,
    clock: Clock,
}

impl std::fmt::Debug for TokenStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenStore")
            .field("prefix", &self.prefix)
            .field("static_tokens", &self.static_tokens.len())
            .finish_non_exhaustive()
    }
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    rand::rng().fill_bytes(&mut bytes);
    bytes
}

/// Sets `last_used` only if the token still exists (a revoke may have just removed it).
const TOUCH: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[1], 'last_used', ARGV[1])
end
return 0
";

impl TokenStore {
    /// A store keeping its keys under `prefix` (e.g. `test_looper:auth`).
    pub fn new(
        redis: ConnectionManager,
        prefix: impl Into<String>,
        static_tokens: Vec<StaticToken>,
    ) -> Self {
        Self {
            redis,
            prefix: prefix.into(),
            static_tokens: Arc::new(static_tokens),
            clock: Arc::new(Utc::now),
        }
    }

    /// Replaces the clock (tests).
    pub fn with_clock(mut self, clock: impl Fn() -> DateTime<Utc> + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    fn key(&self, kind: &str, id: &str) -> String {
        format!("{}:{kind}:{id}", self.prefix)
    }

    /// Creates a token for `owner`, whose current role is `owner_role`. `role` may not be
    /// higher than `owner_role`.
    pub async fn create(
        &self,
        owner: &Identity,
        owner_role: Role,
        name: &str,
        role: Role,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<NewToken, TokenError> {
        if role > owner_role {
            return Err(TokenError::RoleAboveOwner {
                requested: role,
                owner: owner_role,
            });
        }
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
            return Err(TokenError::InvalidName);
        }
        let now = (self.clock)();
        if expires_at.is_some_and(|at| at <= now) {
            return Err(TokenError::ExpiryInPast);
        }
        let token = format!(
            "{TOKEN_PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes::<32>())
        );
        let hash = token_sha256(&token);
        let record = TokenRecord {
            id: hex::encode(random_bytes::<8>()),
            name: name.to_string(),
            owner: owner.clone(),
            role,
            created: now,
            expires_at,
        };
        let json =
            serde_json::to_string(&record).map_err(|e| TokenError::Corrupt(e.to_string()))?;
        let token_key = self.key("token", &hash);
        let id_key = self.key("token_id", &record.id);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .hset(&token_key, "record", json)
            .ignore()
            .set(&id_key, &hash)
            .ignore()
            .sadd(self.key("tokens_of", &owner.key()), &record.id)
            .ignore()
            .sadd(format!("{}:token_ids", self.prefix), &record.id)
            .ignore();
        if let Some(at) = expires_at {
            let drop_at = (at + EXPIRED_KEPT_FOR).timestamp_millis();
            pipe.pexpire_at(&token_key, drop_at).ignore();
            pipe.pexpire_at(&id_key, drop_at).ignore();
        }
        let mut conn = self.redis.clone();
        pipe.query_async::<()>(&mut conn).await?;
        tracing::info!(token_id = %record.id, owner = %owner.key(), role = %role, "api token created");
        Ok(NewToken {
            info: record.info(None),
            token: Secret::new(token),
        })
    }

    async fn load(
        &self,
        id: &str,
    ) -> Result<Option<(String, TokenRecord, Option<DateTime<Utc>>)>, TokenError> {
        let mut conn = self.redis.clone();
        let hash: Option<String> = conn.get(self.key("token_id", id)).await?;
        let Some(hash) = hash else { return Ok(None) };
        let fields: std::collections::HashMap<String, String> =
            conn.hgetall(self.key("token", &hash)).await?;
        let Some(json) = fields.get("record") else {
            return Ok(None);
        };
        let record: TokenRecord =
            serde_json::from_str(json).map_err(|e| TokenError::Corrupt(e.to_string()))?;
        let last_used = fields
            .get("last_used")
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.to_utc());
        Ok(Some((hash, record, last_used)))
    }

    async fn list_ids(&self, set: String) -> Result<Vec<TokenInfo>, TokenError> {
        let mut conn = self.redis.clone();
        let ids: Vec<String> = conn.smembers(&set).await?;
        let mut tokens = Vec::new();
        for id in ids {
            match self.load(&id).await? {
                Some((_, record, last_used)) => tokens.push(record.info(last_used)),
                None => {
                    // Dropped by Redis after its expiry: forget the id too.
                    let _: () = conn.srem(&set, &id).await?;
                }
            }
        }
        tokens.sort_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
        Ok(tokens)
    }

    /// `owner`'s tokens, oldest first (expired ones included, for a week).
    pub async fn list(&self, owner: &Identity) -> Result<Vec<TokenInfo>, TokenError> {
        self.list_ids(self.key("tokens_of", &owner.key())).await
    }

    /// Every personal token (for admins).
    pub async fn list_all(&self) -> Result<Vec<TokenInfo>, TokenError> {
        self.list_ids(format!("{}:token_ids", self.prefix)).await
    }

    /// Revokes token `id`. Only its owner or an admin may.
    pub async fn revoke(
        &self,
        id: &str,
        by: &Identity,
        by_role: Role,
    ) -> Result<TokenInfo, TokenError> {
        let Some((hash, record, last_used)) = self.load(id).await? else {
            return Err(TokenError::NotFound(id.to_string()));
        };
        if record.owner.key() != by.key() && by_role != Role::Admin {
            return Err(TokenError::NotAllowed);
        }
        let mut conn = self.redis.clone();
        redis::pipe()
            .atomic()
            .del(self.key("token", &hash))
            .ignore()
            .del(self.key("token_id", id))
            .ignore()
            .srem(self.key("tokens_of", &record.owner.key()), id)
            .ignore()
            .srem(format!("{}:token_ids", self.prefix), id)
            .ignore()
            .query_async::<()>(&mut conn)
            .await?;
        tracing::info!(token_id = %id, by = %by.key(), "api token revoked");
        Ok(record.info(last_used))
    }

    /// Who `bearer` (the `Authorization: Bearer` value) speaks for, or `None` when it is no
    /// valid token: unknown, revoked, expired, or its owner no longer has a role under
    /// `rules`. A personal token's role is capped by its owner's current role.
    pub async fn verify(
        &self,
        bearer: &str,
        rules: &RoleRules,
    ) -> Result<Option<TokenCaller>, TokenError> {
        let hash = token_sha256(bearer.trim());
        if let Some(caller) = self.verify_static(&hash) {
            return Ok(Some(caller));
        }
        if !bearer.trim().starts_with(TOKEN_PREFIX) {
            return Ok(None);
        }
        // Looking the hash up is not a secret comparison: learning which hashes exist says
        // nothing about the tokens behind them.
        let mut conn = self.redis.clone();
        let token_key = self.key("token", &hash);
        let json: Option<String> = conn.hget(&token_key, "record").await?;
        let Some(json) = json else { return Ok(None) };
        let record: TokenRecord =
            serde_json::from_str(&json).map_err(|e| TokenError::Corrupt(e.to_string()))?;
        let now = (self.clock)();
        if record.expires_at.is_some_and(|at| now >= at) {
            tracing::info!(token_id = %record.id, "expired api token presented");
            return Ok(None);
        }
        let Some(owner_role) = rules.role_for(&record.owner) else {
            tracing::info!(token_id = %record.id, owner = %record.owner.key(), "api token of an owner without a role");
            return Ok(None);
        };
        redis::Script::new(TOUCH)
            .key(&token_key)
            .arg(now.to_rfc3339())
            .invoke_async::<()>(&mut conn)
            .await?;
        Ok(Some(TokenCaller {
            kind: CallerKind::ApiToken,
            who: record.owner.key(),
            login: record.owner.login.clone(),
            token_id: Some(record.id),
            token_name: record.name,
            role: record.role.min(owner_role),
        }))
    }

    /// The static token whose hash is `hash`, comparing with every configured hash in
    /// constant time.
    fn verify_static(&self, hash: &str) -> Option<TokenCaller> {
        let mut found = None;
        for token in self.static_tokens.iter() {
            if constant_time_eq(token.sha256.as_bytes(), hash.as_bytes()) && found.is_none() {
                found = Some(token);
            }
        }
        found.map(|token| TokenCaller {
            kind: CallerKind::StaticToken,
            who: format!("static:{}", token.name),
            login: token.name.clone(),
            token_id: None,
            token_name: token.name.clone(),
            role: token.role,
        })
    }
}
