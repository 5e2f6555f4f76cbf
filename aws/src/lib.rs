//! AWS clients for test-looper: the EC2 machine pool and the S3 artifact store build their
//! clients here, against AWS or any compatible endpoint (moto in tests).
//!
//! Kept in its own crate because the SDK is the slowest part of the build; nothing else in the
//! workspace waits on it. The HTTP client is rustls + ring (no OpenSSL, no aws-lc). A region is
//! always given explicitly, and with static credentials the instance-metadata service is never
//! contacted.

use aws_config::{BehaviorVersion, SdkConfig};
use aws_credential_types::Credentials;
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};

pub use aws_sdk_ec2 as ec2;
pub use aws_sdk_s3 as s3;

/// Where and as whom to talk to AWS.
#[derive(Debug, Clone)]
pub struct AwsSettings {
    pub region: String,
    /// A custom endpoint such as `http://127.0.0.1:5000`; AWS when `None`.
    pub endpoint_url: Option<String>,
    /// Static credentials; the default provider chain when `None`.
    pub credentials: Option<StaticKeys>,
}

/// An access key pair.
#[derive(Clone)]
pub struct StaticKeys {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for StaticKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticKeys")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}

/// Builds the shared SDK configuration.
pub async fn sdk_config(settings: &AwsSettings) -> SdkConfig {
    let http_client = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http_client)
        .region(aws_config::Region::new(settings.region.clone()));
    if let Some(endpoint) = &settings.endpoint_url {
        loader = loader.endpoint_url(endpoint.clone());
    }
    if let Some(keys) = &settings.credentials {
        loader = loader.credentials_provider(Credentials::from_keys(
            keys.access_key_id.clone(),
            keys.secret_access_key.clone(),
            None,
        ));
    }
    loader.load().await
}

/// An S3 client; path-style addressing when a custom endpoint is used.
pub fn s3_client(config: &SdkConfig, custom_endpoint: bool) -> s3::Client {
    let s3_config = s3::config::Builder::from(config)
        .force_path_style(custom_endpoint)
        .build();
    s3::Client::from_conf(s3_config)
}

/// An EC2 client.
pub fn ec2_client(config: &SdkConfig) -> ec2::Client {
    ec2::Client::new(config)
}
