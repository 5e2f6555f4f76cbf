//! The real-service test harness of test-looper.
//!
//! Every system test starts the real thing: [`RedisServer`] runs `redis-server`,
//! [`MotoServer`] runs the `moto_server` EC2/S3 emulator, [`DockerEngine`] talks to the local
//! Docker engine with the project's base image, and [`GitRepo`] builds real git repos. Each
//! service binds a free loopback port, lives in a temp dir, and is stopped when its handle drops
//! (and by the kernel if the test process dies: children get `PR_SET_PDEATHSIG`).
//!
//! A missing service is a test failure with instructions, never a skip: `test_looper_tests/run.sh`
//! installs everything.

pub mod browser;
pub mod cloud_sim;
pub mod docker_engine;
pub mod git_repo;
pub mod git_server;
pub mod install;
pub mod load;
pub mod moto_server;
pub mod oidc_provider;
pub mod paths;
pub mod ports;
pub mod process;
pub mod redis_server;
pub mod server;
pub mod server_process;

pub use browser::Browser;
pub use docker_engine::DockerEngine;
pub use git_repo::GitRepo;
pub use moto_server::MotoServer;
pub use redis_server::RedisServer;
pub use server::TestServer;
