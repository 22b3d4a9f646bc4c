//! Engine behaviour through its public API: persistence format, memory budget, WAL
//! truncation and replay, on a real data directory.

mod engine;
mod tiers;
