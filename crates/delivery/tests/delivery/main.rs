//! The delivery engine against real peers: Node.js for the payload round trip, real
//! HTTP and HTTPS servers (certificates made here) for the outbound client.

mod node_roundtrip;
mod outbound;
mod tidy;
