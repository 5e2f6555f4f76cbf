//! Any OpenID Connect provider, through discovery: the authorization-code flow with PKCE,
//! `state` and `nonce`; the ID token's signature, issuer, audience, expiry and nonce are
//! checked by the `openidconnect` crate (and `at_hash` when present); then userinfo, and the
//! configured groups claim from the verified ID token and from userinfo.
//!
//! The provider's keys are read at discovery; when an ID token's signature does not verify,
//! discovery runs once more (the provider may have rotated its keys) before giving up.

use super::{error_chain, token_error, LoginError, PendingLogin};
use crate::config::OidcConfig;
use crate::roles::Identity;
use crate::secret::Secret;
use base64::Engine;
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreClientAuthMethod, CoreGenderClaim, CoreProviderMetadata,
};
use openidconnect::{
    AccessTokenHash, AdditionalClaims, AuthType, AuthorizationCode, ClaimsVerificationError,
    ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, Scope, TokenResponse, UserInfoClaims,
};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use url::Url;

/// Login through an OpenID Connect provider.
pub struct OidcLogin {
    pub(crate) config: OidcConfig,
    http: reqwest::Client,
    metadata: RwLock<Arc<CoreProviderMetadata>>,
}

impl std::fmt::Debug for OidcLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcLogin")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Claims beyond the standard ones (the groups claim lives here).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct OtherClaims {
    #[serde(flatten)]
    claims: HashMap<String, serde_json::Value>,
}

impl AdditionalClaims for OtherClaims {}

/// The strings of a claim that is a string or a list of strings.
fn claim_strings(value: Option<&serde_json::Value>) -> Vec<String> {
    match value {
        Some(serde_json::Value::String(s)) => vec![s.clone()],
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

async fn discover(
    config: &OidcConfig,
    http: &reqwest::Client,
) -> Result<CoreProviderMetadata, LoginError> {
    let issuer = IssuerUrl::new(config.issuer_url.clone()).map_err(|e| LoginError::Discovery {
        issuer: config.issuer_url.clone(),
        message: e.to_string(),
    })?;
    CoreProviderMetadata::discover_async(issuer, http)
        .await
        .map_err(|e| LoginError::Discovery {
            issuer: config.issuer_url.clone(),
            message: error_chain(&e),
        })
}

impl OidcLogin {
    /// Reads the provider's discovery document and keys.
    pub async fn discover(config: OidcConfig, http: reqwest::Client) -> Result<Self, LoginError> {
        let metadata = discover(&config, &http).await?;
        tracing::info!(provider = %config.name, issuer = %config.issuer_url, "OpenID Connect provider discovered");
        Ok(Self {
            config,
            http,
            metadata: RwLock::new(Arc::new(metadata)),
        })
    }

    fn metadata(&self) -> Arc<CoreProviderMetadata> {
        self.metadata.read().expect("metadata lock").clone()
    }

    fn client(
        &self,
        metadata: &CoreProviderMetadata,
        redirect: RedirectUrl,
    ) -> openidconnect::core::CoreClient<
        openidconnect::EndpointSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointMaybeSet,
        openidconnect::EndpointMaybeSet,
    > {
        // client_secret_basic is the default; use client_secret_post when the provider says
        // it supports only that.
        let post_only = metadata
            .token_endpoint_auth_methods_supported()
            .is_some_and(|methods| {
                !methods.contains(&CoreClientAuthMethod::ClientSecretBasic)
                    && methods.contains(&CoreClientAuthMethod::ClientSecretPost)
            });
        let client = CoreClient::from_provider_metadata(
            metadata.clone(),
            ClientId::new(self.config.client_id.clone()),
            Some(ClientSecret::new(
                self.config.client_secret.expose().to_string(),
            )),
        )
        .set_redirect_uri(redirect);
        if post_only {
            client.set_auth_type(AuthType::RequestBody)
        } else {
            client
        }
    }

    pub(crate) fn start(
        &self,
        redirect: RedirectUrl,
    ) -> Result<(Url, Secret, Secret, Secret), LoginError> {
        let metadata = self.metadata();
        let client = self.client(&metadata, redirect);
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .set_pkce_challenge(challenge);
        for scope in self.config.scopes.iter().filter(|s| s.as_str() != "openid") {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let (url, state, nonce) = request.url();
        Ok((
            url,
            Secret::new(state.secret().clone()),
            Secret::new(verifier.secret().clone()),
            Secret::new(nonce.secret().clone()),
        ))
    }

    pub(crate) async fn finish(
        &self,
        pending: &PendingLogin,
        code: &str,
    ) -> Result<Identity, LoginError> {
        let redirect = RedirectUrl::new(pending.redirect_uri.clone())
            .map_err(|e| LoginError::Config(format!("redirect URI: {e}")))?;
        let nonce = Nonce::new(
            pending
                .nonce
                .as_ref()
                .ok_or_else(|| LoginError::IdToken("the pending login has no nonce".into()))?
                .expose()
                .to_string(),
        );
        let mut metadata = self.metadata();
        let mut client = self.client(&metadata, redirect.clone());
        let response = client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .map_err(|e| LoginError::Config(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(
                pending.pkce_verifier.expose().to_string(),
            ))
            .request_async(&self.http)
            .await
            .map_err(token_error)?;
        let id_token = response
            .id_token()
            .ok_or_else(|| LoginError::IdToken("the token response has no id_token".into()))?;

        let first = id_token
            .claims(&client.id_token_verifier(), &nonce)
            .cloned();
        let claims = match first {
            Ok(claims) => claims,
            Err(ClaimsVerificationError::SignatureVerification(first)) => {
                tracing::info!(provider = %self.config.name, error = %first, "ID token signature did not verify; reading the provider's keys again");
                let fresh = Arc::new(discover(&self.config, &self.http).await?);
                *self.metadata.write().expect("metadata lock") = fresh.clone();
                metadata = fresh;
                client = self.client(&metadata, redirect);
                id_token
                    .claims(&client.id_token_verifier(), &nonce)
                    .map_err(|e| LoginError::IdToken(error_chain(&e)))?
                    .clone()
            }
            Err(e) => return Err(LoginError::IdToken(error_chain(&e))),
        };

        if let Some(expected) = claims.access_token_hash() {
            let verifier = client.id_token_verifier();
            let alg = id_token
                .signing_alg()
                .map_err(|e| LoginError::IdToken(e.to_string()))?;
            let key = id_token
                .signing_key(&verifier)
                .map_err(|e| LoginError::IdToken(e.to_string()))?;
            let actual = AccessTokenHash::from_token(response.access_token(), alg, key)
                .map_err(|e| LoginError::IdToken(e.to_string()))?;
            if &actual != expected {
                return Err(LoginError::IdToken(
                    "at_hash does not match the access token".into(),
                ));
            }
        }

        // The ID token is verified: its payload can be read for the groups claim.
        let raw: HashMap<String, serde_json::Value> = id_token
            .to_string()
            .split('.')
            .nth(1)
            .and_then(|payload| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(payload)
                    .ok()
            })
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();

        let userinfo: Option<UserInfoClaims<OtherClaims, CoreGenderClaim>> = match client.user_info(
            response.access_token().clone(),
            Some(claims.subject().clone()),
        ) {
            Ok(request) => Some(
                request
                    .request_async(&self.http)
                    .await
                    .map_err(|e| LoginError::UserInfo(error_chain(&e)))?,
            ),
            Err(_) => None, // no userinfo endpoint: the ID token is all there is
        };

        let mut groups = Vec::new();
        if let Some(claim) = &self.config.groups_claim {
            groups.extend(claim_strings(raw.get(claim)));
            if let Some(info) = &userinfo {
                for group in claim_strings(info.additional_claims().claims.get(claim)) {
                    if !groups.contains(&group) {
                        groups.push(group);
                    }
                }
            }
        }

        let subject = claims.subject().to_string();
        let preferred = userinfo
            .as_ref()
            .and_then(|u| u.preferred_username())
            .or(claims.preferred_username())
            .map(|u| u.to_string());
        let email = userinfo
            .as_ref()
            .and_then(|u| u.email())
            .or(claims.email())
            .map(|e| e.to_string());
        let name = userinfo
            .as_ref()
            .and_then(|u| u.name())
            .or(claims.name())
            .and_then(|n| n.get(None))
            .map(|n| n.to_string());
        Ok(Identity {
            provider: self.config.name.clone(),
            login: preferred
                .or_else(|| email.clone())
                .unwrap_or_else(|| subject.clone()),
            subject,
            name,
            email,
            orgs: Vec::new(),
            teams: Vec::new(),
            groups,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_claim_may_be_a_string_or_a_list() {
        assert_eq!(claim_strings(Some(&serde_json::json!("a"))), vec!["a"]);
        assert_eq!(
            claim_strings(Some(&serde_json::json!(["a", 1, "b"]))),
            vec!["a", "b"]
        );
        assert!(claim_strings(Some(&serde_json::json!({"a": 1}))).is_empty());
        assert!(claim_strings(None).is_empty());
    }
}
