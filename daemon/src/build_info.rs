//! What this binary is: the package version and the git commit it was built from (`build.rs`
//! records it; `unknown` when built outside a git checkout without `TOPOLOGYD_COMMIT`).
//!
//! Owns: these constants only; `--version`, the start-up log line and `topologyd_build_info`
//! read them.

/// The package version (`Cargo.toml`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The git commit the binary was built from, abbreviated, or `unknown`.
pub const COMMIT: &str = env!("TOPOLOGYD_COMMIT");
/// `--version`'s text: `0.1.0 (commit 1234abcd5678)`.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("TOPOLOGYD_COMMIT"),
    ")"
);
