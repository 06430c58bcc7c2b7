//! cairn: a declarative multi-cloud infrastructure controller.
//!
//! Data flows one way: files ─load→ RawConfig ─compile→ Stack ─build→ Graph;
//! plan(Stack, Live, State) → Plan; apply(Plan, Providers) → State.

// Diagnostics are the error type of loading and compiling; they are built only on the error
// path, so their size does not matter and boxing them would only add noise.
#![allow(clippy::result_large_err)]

pub mod apply;
pub mod audit;
pub mod cli;
pub mod config;
pub mod diag;
pub mod enforce;
pub mod engine;
pub mod graph;
pub mod journal;
pub mod ml;
pub mod model;
pub mod plan;
pub mod policy;
pub mod provider;
pub mod review;
pub mod state;
pub mod testing;
