//! Interactive deployments, server side: the [`TerminalHub`] that carries each deployment's
//! terminal between the worker that runs it and the browser terminals attached to it, and
//! the browser terminal's client→server [`framing`]. The worker socket
//! (`crate::workers`) feeds worker output in and takes input out; the HTTP side
//! (`crate::web::terminal`) attaches browsers.

pub mod framing;
mod hub;
pub mod reaper;
pub mod scrollback;

pub use hub::{
    banner, InputRoute, InputSent, OutputChunk, TerminalHub, TerminalSubscription, INPUT_QUEUE,
    SCROLLBACK_BYTES,
};
