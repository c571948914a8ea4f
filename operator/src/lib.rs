//! The Freshet operator: reconciles `Stream` resources into replicated broker StatefulSets
//! and drives the brokers' admin API (create, describe, delete streams).
//!
//! `desired` decides (pure), `controller` applies and reports, `broker` talks to brokers.

pub mod broker;
pub mod controller;
pub mod desired;
pub mod metrics;
pub mod quantity;
pub mod reshard;
pub mod roll;
pub mod run;
pub mod status;
