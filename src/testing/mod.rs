//! Test utilities shipped with the library, so the test suite and the benchmark harness use
//! the same parts.

pub mod azure_compute;
pub mod azure_dns;
pub mod backend;
pub mod contract;
pub mod fake_http;
pub mod faultproxy;
pub mod google;
pub mod postgres;
pub mod tcpproxy;
