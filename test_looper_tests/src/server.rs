//! An in-process test-looper server on a free loopback port.

use std::path::Path;
use test_looper_server::config::Config;
use test_looper_server::AppContext;

/// A running server; stopped when dropped.
pub struct TestServer {
    pub base_url: String,
    handle: actix_web::dev::ServerHandle,
}

impl TestServer {
    /// Starts a server for `config` (its port is replaced by a free one). Must be called within
    /// an actix system (`#[actix_web::test]`).
    pub fn start(mut config: Config) -> Self {
        config.server.http_port = 0;
        config.server.bind = "127.0.0.1".into();
        let context = AppContext::new(config).expect("context");
        let (server, addrs) =
            test_looper_server::web::start(context, ("127.0.0.1".into(), 0)).expect("bind");
        let handle = server.handle();
        actix_web::rt::spawn(server);
        Self {
            base_url: format!("http://{}", addrs[0]),
            handle,
        }
    }

    /// `base_url` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }
}

/// The handshake of a worker connecting to the worker socket of the server at `base_url`
/// (`http://…`) run by `context`, with the worker token that server requires.
pub fn worker_socket_request(
    base_url: &str,
    context: &AppContext,
) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let url = format!("{}/api/worker/socket", base_url.replacen("http", "ws", 1));
    let mut request = url.into_client_request().expect("worker socket url");
    let bearer = format!("Bearer {}", context.workers.token());
    request
        .headers_mut()
        .insert("Authorization", bearer.parse().expect("token header"));
    request
}

impl Drop for TestServer {
    fn drop(&mut self) {
        // Stopping is asynchronous; the listener closes when the actix system ends.
        drop(self.handle.stop(false));
    }
}

/// A local-source-control configuration for tests, with every directory under `dir`.
pub fn local_config(dir: &Path, redis_url: &str) -> Config {
    let text = format!(
        r#"
server:
  data_dir: {dir}/data
redis:
  url: {redis_url}
source_control:
  local:
    path_to_repos: {dir}/repos
    webhook_secret: test-secret
artifacts:
  local_disk:
    path: {dir}/artifacts
machine_management:
  local_docker:
    local_storage_path: {dir}/workers
    limits: {{max_workers: 2}}
"#,
        dir = dir.display()
    );
    Config::from_text(&text, |_| None).expect("valid test config")
}
