//! Shared harness for the end-to-end tests and benchmarks: peer-daemon launchers, the fleet harness for rollouts and a synthetic topology generator.
pub mod fleet;
pub mod netns;
pub mod peers;
pub mod services;
pub mod synth;
pub mod tmpfs;
pub mod topologyd;
