//! The configuration file's schema: every section and field, with defaults.
//!
//! Unknown keys are rejected everywhere (`deny_unknown_fields`), so a typo is an error that names
//! the key and its line. Sections that have alternatives (source control, artifacts, machine
//! management) are written as a map with exactly one key naming the alternative, for example
//! `source_control: {local: {path_to_repos: /srv/repos}}`.

use serde::Deserialize;
use std::path::PathBuf;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: ServerSection,
    pub redis: RedisSection,
    pub source_control: SourceControlSection,
    pub artifacts: ArtifactsSection,
    pub machine_management: MachineManagementSection,
    /// Who may look and who may act: `test_looper_auth`'s section as is (see
    /// `docs/authentication.md`).
    #[serde(default)]
    pub auth: test_looper_auth::AuthConfig,
    #[serde(default)]
    pub http_server: HttpServerSection,
    /// Bounded storage and deployments (see `storage.rs`).
    #[serde(default)]
    pub logs: super::LogsSection,
    #[serde(default)]
    pub retention: super::RetentionSection,
    #[serde(default)]
    pub deployments: super::DeploymentsSection,
    #[serde(default)]
    pub statistics: super::StatisticsSection,
}

/// Where the server listens and how it names itself.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// Host name browsers and workers use to reach the server (base of absolute URLs).
    #[serde(default = "default_address")]
    pub address: String,
    /// Address the HTTP listener binds to.
    #[serde(default = "default_bind")]
    pub bind: String,
    /// Port of the web UI, JSON API, webhooks and the worker websocket.
    #[serde(default = "default_http_port")]
    pub http_port: u16,
    /// TLS for the listener; plain HTTP when absent.
    #[serde(default)]
    pub tls: Option<TlsSection>,
    /// Directory for the server's own state: git clone cache, source tarball cache.
    pub data_dir: PathBuf,
    /// Largest request body accepted (webhooks, API), in bytes.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Directory served under `/static` (CSS, JS, the unpacked xterm.js).
    #[serde(default = "default_static_dir")]
    pub static_dir: PathBuf,
    /// Further `Host` names (`name` or `name:port`) the server answers to, besides `address`,
    /// `localhost`, `127.0.0.1` and `[::1]` on its port: for example the public name of a
    /// reverse proxy in front of it. Other `Host`s get 421 (DNS rebinding, H3).
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Listen on a non-loopback address although nobody is authenticated: anyone who can
    /// reach the port can act, boot deployments and open their root shells. Refused unless
    /// set (H1).
    #[serde(default)]
    pub allow_unauthenticated_non_loopback: bool,
    /// The URL browsers use to reach the server (`https://ci.example.com`), when it differs
    /// from `http(s)://address:http_port`, e.g. behind a reverse proxy. Login callbacks and
    /// links in commit statuses are built from it.
    #[serde(default)]
    pub public_url: Option<String>,
    /// Reverse proxies (addresses or CIDR ranges) whose `X-Forwarded-For` is believed: the
    /// client address of a request that comes from one of them is the last address in that
    /// header that is not itself a trusted proxy. Used for rate limits and the audit log.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
}

impl ServerSection {
    /// The URL browsers use: `public_url`, else `http(s)://address:http_port`.
    pub fn public_url(&self) -> String {
        if let Some(url) = &self.public_url {
            return url.trim_end_matches('/').to_string();
        }
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}:{}", self.address, self.http_port)
    }
}

/// Certificate and key for HTTPS.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The Redis that holds the live state.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSection {
    /// For example `redis://127.0.0.1:6379/0`.
    pub url: String,
}

/// Exactly one source-control back end.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceControlSection {
    pub local: Option<LocalSourceControl>,
    pub github: Option<GithubSourceControl>,
    pub gitlab: Option<GitlabSourceControl>,
}

/// Repos on the server's own disk: every git repo below `path_to_repos`, nested names allowed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalSourceControl {
    pub path_to_repos: PathBuf,
    /// Shared secret for `POST /webhook` on local installs (GitHub-style HMAC signatures).
    #[serde(default)]
    pub webhook_secret: Option<String>,
    /// How often the refs of local repos are re-read when no webhook arrives, in ms.
    #[serde(default = "default_local_poll_interval_ms")]
    pub poll_interval_ms: u64,
}

/// Repos hosted on GitHub (or GitHub Enterprise).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GithubSourceControl {
    /// `org:<name>` or `user:<name>`.
    pub owner: String,
    pub access_token: String,
    pub webhook_secret: Option<String>,
    #[serde(default = "default_github_api_url")]
    pub api_url: String,
    #[serde(default = "default_github_web_url")]
    pub web_url: String,
    /// Clone URL base, e.g. `https://github.com` (token auth) or `git@github.com` (ssh key).
    #[serde(default = "default_github_web_url")]
    pub clone_url: String,
    /// Private key for ssh clones.
    #[serde(default)]
    pub ssh_key: Option<PathBuf>,
    /// Post commit statuses (pending/success/failure) back to GitHub.
    #[serde(default)]
    pub post_commit_statuses: bool,
    /// Safety fetch of every repo (webhooks trigger fetches at once), in seconds.
    #[serde(default = "default_remote_fetch_interval_seconds")]
    pub fetch_interval_seconds: u64,
    #[serde(default)]
    pub oauth: Option<OauthApp>,
}

/// Repos hosted on GitLab.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitlabSourceControl {
    /// Group (path prefix) whose projects are watched.
    pub group: String,
    pub private_token: String,
    pub webhook_secret: Option<String>,
    #[serde(default = "default_gitlab_url")]
    pub api_url: String,
    #[serde(default = "default_gitlab_web_url")]
    pub web_url: String,
    #[serde(default = "default_gitlab_web_url")]
    pub clone_url: String,
    #[serde(default)]
    pub ssh_key: Option<PathBuf>,
    #[serde(default)]
    pub post_commit_statuses: bool,
    /// Safety fetch of every repo (webhooks trigger fetches at once), in seconds.
    #[serde(default = "default_remote_fetch_interval_seconds")]
    pub fetch_interval_seconds: u64,
    #[serde(default)]
    pub oauth: Option<OauthApp>,
}

/// An OAuth application used for browser login.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OauthApp {
    pub client_id: String,
    pub client_secret: String,
    /// OAuth base URL, e.g. `https://github.com`.
    pub login_url: String,
}

/// Exactly one artifact store.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArtifactsSection {
    pub local_disk: Option<LocalDiskArtifacts>,
    pub s3: Option<S3Artifacts>,
}

/// Artifacts in a directory on the server's disk.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalDiskArtifacts {
    pub path: PathBuf,
    /// How long a finished run's result record may sit only in the operating system's page
    /// cache (it survives any process crash, not a machine crash) before it is synced to the
    /// disk. 0 syncs each record before its completion is acknowledged.
    #[serde(default = "default_result_sync_interval_ms")]
    pub result_sync_interval_ms: u64,
}

/// The result-record sync interval when none is configured (or no `local_disk` section).
pub const DEFAULT_RESULT_SYNC_INTERVAL_MS: u64 = 100;

fn default_result_sync_interval_ms() -> u64 {
    DEFAULT_RESULT_SYNC_INTERVAL_MS
}

/// Artifacts in an S3 bucket (or any S3-compatible endpoint).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Artifacts {
    pub bucket: String,
    pub region: String,
    #[serde(default)]
    pub key_prefix: String,
    /// Custom endpoint, e.g. a local emulator; AWS when absent.
    #[serde(default)]
    pub endpoint_url: Option<String>,
    #[serde(default)]
    pub credentials: Option<StaticCredentials>,
}

/// Explicit AWS credentials (otherwise the standard environment variables are used).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

/// At most one machine pool; with none, only workers started by hand (`docs/workers.md`)
/// run jobs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MachineManagementSection {
    pub local_docker: Option<LocalDockerMachines>,
    pub aws: Option<AwsMachines>,
    /// A run or machine not heard from for this long is lost (the run is retried), and a
    /// pool worker that silent is killed and replaced. Local workers heartbeat every
    /// `max(1, min(10, timeout / 6))` seconds; workers started by hand every 10 s by default
    /// (`--heartbeat-seconds`).
    #[serde(default = "default_heartbeat_timeout")]
    pub heartbeat_timeout_seconds: u64,
}

impl MachineManagementSection {
    /// How often local pool workers heartbeat.
    pub fn heartbeat_interval_seconds(&self) -> u64 {
        (self.heartbeat_timeout_seconds / 6).clamp(1, 10)
    }
}

/// Caps shared by every machine pool; 0 means "no cap".
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MachineLimits {
    #[serde(default)]
    pub max_workers: u32,
    #[serde(default)]
    pub max_cores: u32,
    #[serde(default)]
    pub max_ram_gb: u32,
}

/// Workers run as local processes that execute jobs in the local Docker engine.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalDockerMachines {
    #[serde(default)]
    pub limits: MachineLimits,
    /// Name prefix (and label) of every container this install starts.
    #[serde(default = "default_docker_scope")]
    pub docker_scope: String,
    /// Scratch directories of local workers.
    pub local_storage_path: PathBuf,
    /// Stop a worker after this many idle seconds.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout_seconds: u64,
    /// Cores and RAM of one worker; by default one worker may take the whole box.
    #[serde(default)]
    pub worker_cores: Option<u32>,
    #[serde(default)]
    pub worker_ram_gb: Option<u32>,
    /// The `test-looper-worker` executable; by default the one next to the server's own.
    #[serde(default)]
    pub worker_binary: Option<PathBuf>,
}

/// Workers booted as EC2 instances by the pool's reconciler (`docs/ec2_pool.md`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsMachines {
    #[serde(default)]
    pub limits: MachineLimits,
    /// Dollars per hour over every held instance (the price table's prices); no cap when absent.
    #[serde(default)]
    pub max_hourly_spend: Option<f64>,
    pub region: String,
    #[serde(default)]
    pub endpoint_url: Option<String>,
    #[serde(default)]
    pub credentials: Option<StaticCredentials>,
    pub vpc_id: String,
    pub subnet: String,
    pub security_group: String,
    pub keypair: String,
    /// Tag value that identifies this install's instances.
    pub worker_name: String,
    #[serde(default)]
    pub worker_iam_role_name: Option<String>,
    pub linux_ami: String,
    #[serde(default)]
    pub windows_ami: Option<String>,
    pub instance_types: Vec<InstanceType>,
    #[serde(default)]
    pub host_ips: std::collections::BTreeMap<String, String>,
    /// Launch as spot where the type has a `spot_price_per_hour`; on-demand on a spot failure.
    #[serde(default)]
    pub spot: bool,
    #[serde(default)]
    pub packing: PoolPacking,
    #[serde(default = "default_aws_idle_timeout")]
    pub idle_timeout_seconds: u64,
    #[serde(default = "default_boot_timeout")]
    pub boot_timeout_seconds: u64,
    #[serde(default = "default_launch_failure_backoff")]
    pub launch_failure_backoff_seconds: u64,
    #[serde(default = "default_reconcile_interval")]
    pub reconcile_interval_seconds: u64,
    /// Drain idle workers no queued item wants as soon as a limit blocks demand.
    #[serde(default = "default_true")]
    pub drain_to_make_room: bool,
    /// The bucket (S3) holding each machine's bootstrap script, and the worker binary.
    pub bootstrap_bucket: String,
    #[serde(default = "default_bootstrap_prefix")]
    pub bootstrap_key_prefix: String,
    /// Key in the bootstrap bucket of the `test-looper-worker` executable; absent: the AMI
    /// has it at `worker_binary_path`.
    #[serde(default)]
    pub worker_binary_key: Option<String>,
    #[serde(default = "default_ami_worker_binary")]
    pub worker_binary_path: String,
    /// The URL machines reach the server at; `server.public_url` when absent.
    #[serde(default)]
    pub server_url: Option<String>,
    /// The workers' scratch directory on the instance.
    #[serde(default = "default_ami_worker_storage")]
    pub worker_storage_path: String,
}

/// How many queued items one instance serves at once (`docs/ec2_pool.md#packing`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PoolPacking {
    #[default]
    OneItemPerInstance,
    SharedCores,
}

/// One bootable instance shape and its price.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceType {
    pub instance_type: String,
    pub cores: u32,
    pub ram_gb: u32,
    /// Root volume size the pool asks for.
    #[serde(default = "default_instance_disk")]
    pub disk_gb: u32,
    /// Dollars per hour on demand.
    pub price_per_hour: f64,
    /// Expected dollars per hour as spot; never launched as spot when absent.
    #[serde(default)]
    pub spot_price_per_hour: Option<f64>,
}

/// Presentation of repo names in the UI.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpServerSection {
    #[serde(default)]
    pub repo_prefixes_to_suppress: Vec<String>,
    #[serde(default)]
    pub repo_prefixes_to_shorten: Vec<String>,
}

fn default_address() -> String {
    "127.0.0.1".into()
}
fn default_bind() -> String {
    "127.0.0.1".into()
}
fn default_http_port() -> u16 {
    9081
}
fn default_max_body_bytes() -> usize {
    4 * 1024 * 1024
}
fn default_static_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../static"))
}
fn default_github_api_url() -> String {
    "https://api.github.com".into()
}
fn default_github_web_url() -> String {
    "https://github.com".into()
}
fn default_gitlab_url() -> String {
    "https://gitlab.com/api/v4".into()
}
fn default_gitlab_web_url() -> String {
    "https://gitlab.com".into()
}
fn default_local_poll_interval_ms() -> u64 {
    500
}
fn default_remote_fetch_interval_seconds() -> u64 {
    600
}
fn default_docker_scope() -> String {
    "test_looper".into()
}
fn default_heartbeat_timeout() -> u64 {
    60
}
fn default_idle_timeout() -> u64 {
    300
}
fn default_aws_idle_timeout() -> u64 {
    600
}
fn default_boot_timeout() -> u64 {
    600
}
fn default_launch_failure_backoff() -> u64 {
    300
}
fn default_reconcile_interval() -> u64 {
    5
}
fn default_bootstrap_prefix() -> String {
    "test-looper/bootstrap/".into()
}
fn default_ami_worker_binary() -> String {
    "/usr/local/bin/test-looper-worker".into()
}
fn default_ami_worker_storage() -> String {
    "/var/lib/test-looper/worker".into()
}
fn default_instance_disk() -> u32 {
    50
}
fn default_true() -> bool {
    true
}
