//! `tl`, the test-looper command line tool for developers (the `tl` binary is `main.rs`).
//! Subcommands live in their own modules ([`info`]). Git is read through the server's reader
//! (`test_looper_git`), over the repos [`repos`] finds, so `tl` resolves exactly as the server
//! does.

pub mod info;
pub mod repos;
