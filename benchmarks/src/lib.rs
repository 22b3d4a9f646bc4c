//! `strata-benchmarks` will hold the TSBS-style data generator, the query set, the
//! side-by-side runners and the report (its own issue). Micro-benchmarks live in each
//! crate's `benches/`; timing never belongs in tests.
