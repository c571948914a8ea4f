//! Freshet's Kubernetes custom resources (`Stream`, `DeliveryStream`) and the capacity
//! arithmetic that turns declared throughput into shards and broker pods. No I/O.
//!
//! The resource types arrive with the operator issue; the arithmetic is here already.

pub mod capacity;
