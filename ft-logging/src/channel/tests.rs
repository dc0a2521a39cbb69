//! The channel over real TCP on 127.0.0.1: pairs, bad peers, a proxy that
//! tampers or goes silent, and the frames and keys underneath.

mod auth;
mod flood;
mod key;
mod lease;
mod loss;
mod pair;
mod peers;
mod proxy;
mod support;
mod tamper;
mod wire;
