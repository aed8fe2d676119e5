//! `topoctl`: check, compile, plan and explain service topologies.
fn main() {}
