//! The `tl` command line tool: subcommands live in their own modules ([`info`]); the git
//! access they share is [`git_source`].

pub mod git_source;
pub mod info;
