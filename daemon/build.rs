//! Build script: records the git commit the daemon is built from as `TOPOLOGYD_COMMIT`, for
//! `--version`, the start-up log line and `topologyd_build_info`.
//!
//! Order: the `TOPOLOGYD_COMMIT` environment variable when set (packagers building from a
//! tarball pass the commit they packaged), else `git rev-parse` when the sources are a git
//! checkout and git is installed, else `unknown`. A build never fails for want of git.

use std::path::Path;
use std::process::Command;

fn git(arguments: &[&str]) -> Option<String> {
    let output = Command::new("git").args(arguments).output().ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8(output.stdout).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

fn main() {
    println!("cargo:rerun-if-env-changed=TOPOLOGYD_COMMIT");
    let commit = match std::env::var("TOPOLOGYD_COMMIT") {
        Ok(commit) if !commit.trim().is_empty() => commit.trim().to_owned(),
        _ => {
            let commit = git(&["rev-parse", "--short=12", "HEAD"]);
            // Rebuild when HEAD moves: HEAD itself (a checkout) and the branch it points to
            // (a commit); `--git-path` resolves both for worktrees too.
            for path in ["HEAD", "packed-refs"] {
                if let Some(file) = git(&["rev-parse", "--git-path", path]) {
                    watch(&file);
                }
            }
            if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"])
                && let Some(file) = git(&["rev-parse", "--git-path", &branch])
            {
                watch(&file);
            }
            commit.unwrap_or_else(|| "unknown".to_owned())
        }
    };
    println!("cargo:rustc-env=TOPOLOGYD_COMMIT={commit}");
}

fn watch(file: &str) {
    if Path::new(file).exists() {
        println!("cargo:rerun-if-changed={file}");
    }
}
