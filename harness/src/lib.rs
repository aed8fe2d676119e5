//! Shared harness for the end-to-end tests and benchmarks: peer-daemon launchers, the fleet harness for rollouts, the daemon tests' fixture, a loopback etcd cluster and the interoperability scenarios, and a synthetic topology generator.
pub mod daemon_fixture;
pub mod etcd;
pub mod fleet;
pub mod interop;
pub mod netns;
pub mod peers;
pub mod services;
pub mod synth;
pub mod tmpfs;
pub mod topologyd;
