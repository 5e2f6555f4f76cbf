//! Real components for the auth crate's tests: a `redis-server` and an `oidc-provider-mock`
//! on free loopback ports ([`processes`]), and a small stand-in for GitHub's and GitLab's
//! OAuth and user endpoints ([`standin`]), which cannot run here.
#![allow(dead_code)]

pub mod logs;
pub mod processes;
pub mod standin;
