//! The delivery engine against real peers: Node.js for the payload round trip, real
//! HTTP and HTTPS servers (certificates made here) for the outbound client.

#![allow(clippy::disallowed_types, clippy::disallowed_methods)] // tests are clients and peers of the server

mod node_roundtrip;
mod outbound;
