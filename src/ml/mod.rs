//! Machine learning for scaling and monitoring: time series, forecasting, the scaling
//! simulator, anomaly detection, the NAB harness and recommendations.

pub mod anomaly;
pub mod bound;
pub mod changepoint;
pub mod chart;
pub mod detector;
pub mod forecast;
pub mod iforest;
pub mod level_oracle;
pub mod nab;
pub mod recommend;
pub mod scaler;
pub mod series;
pub mod simulate;
pub mod source;
