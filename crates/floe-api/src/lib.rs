//! The wire types of floe's `/v1` HTTP API: JSON bodies, the binary framing and the
//! `?encoding=` parameter. The server and every client depend on this crate, so the two
//! sides cannot drift apart; `crates/floe-server/openapi.json` documents the same shapes.
//!
//! No I/O here: nothing in this crate opens a socket or a file.

mod acls;
pub mod binary;
mod encoding;
mod export;
mod groups;
mod json;

pub use acls::*;
pub use encoding::Encoding;
pub use export::*;
pub use groups::*;
pub use json::*;
