//! Machine learning for scaling and monitoring: time series, forecasting, the scaling
//! simulator, anomaly detection, the NAB harness and recommendations.

pub mod changepoint;
pub mod detector;
pub mod iforest;
pub mod nab;
pub mod series;
