//! Freshet's Kubernetes custom resources (`Stream`, `DeliveryStream`) and the capacity
//! arithmetic that turns declared throughput into shards and broker pods.
//!
//! Empty until the operator issue fills it: the broker does not depend on it.
