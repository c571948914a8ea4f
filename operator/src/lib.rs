//! The Freshet operator: reconciles `Stream` resources into replicated broker StatefulSets
//! and drives the brokers' admin API (create, describe, delete streams).

pub mod desired;
