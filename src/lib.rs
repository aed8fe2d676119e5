//! Shared harness for the end-to-end tests and benchmarks: peer-daemon launchers and a synthetic topology generator.
pub mod peers;
pub mod synth;
pub mod topologyd;
