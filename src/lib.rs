//! cairn: a declarative multi-cloud infrastructure controller.
//!
//! Data flows one way: files ─load→ RawConfig ─compile→ Stack ─build→ Graph;
//! plan(Stack, Live, State) → Plan; apply(Plan, Providers) → State.

pub mod config;
pub mod diag;
pub mod graph;
pub mod model;
pub mod journal;
pub mod provider;
pub mod state;
pub mod plan;
pub mod apply;
pub mod cli;
