//! Man pages and shell completions of the binaries, generated from their clap definitions for
//! the Debian package (`packaging/build-deb.sh`).
//!
//! Owns: the generation only. A binary calls [`generate_if_asked`] first thing in `main`: when
//! [`GENERATE_VARIABLE`] names a directory, it writes `man/NAME.1` (and `NAME-SUBCOMMAND.1` for
//! each subcommand) and `completions/` for bash, zsh and fish there, and exits; otherwise it
//! does nothing. Must not touch: anything else the binary does.

use std::path::Path;
use std::process::ExitCode;

use clap_complete::Shell;

/// The environment variable naming the directory to write into.
pub const GENERATE_VARIABLE: &str = "TOPOLOGYD_GENERATE_PACKAGING_FILES";

/// A failure to write the files.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct PackagingError {
    /// The file or directory.
    pub path: String,
    /// Why.
    pub source: std::io::Error,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PackagingError + '_ {
    move |source| PackagingError {
        path: path.display().to_string(),
        source,
    }
}

/// Writes the man pages and completions of `command` into `directory`.
pub fn generate(command: clap::Command, directory: &Path) -> Result<(), PackagingError> {
    let man = directory.join("man");
    let completions = directory.join("completions");
    for path in [&man, &completions] {
        std::fs::create_dir_all(path).map_err(io(path))?;
    }
    let mut command = command;
    command.build();
    write_man_pages(&command, &man)?;
    let name = command.get_name().to_owned();
    for (shell, file) in [
        (Shell::Bash, name.clone()),
        (Shell::Zsh, format!("_{name}")),
        (Shell::Fish, format!("{name}.fish")),
    ] {
        let path = completions.join(file);
        let mut buffer = Vec::new();
        clap_complete::generate(shell, &mut command, &name, &mut buffer);
        std::fs::write(&path, buffer).map_err(io(&path))?;
    }
    Ok(())
}

/// `NAME.1` and one page per subcommand (`NAME-SUB.1`, recursively), as `man git-commit` does.
fn write_man_pages(command: &clap::Command, directory: &Path) -> Result<(), PackagingError> {
    let path = directory.join(format!("{}.1", command.get_name()));
    let mut buffer = Vec::new();
    clap_mangen::Man::new(command.clone())
        .render(&mut buffer)
        .map_err(io(&path))?;
    std::fs::write(&path, buffer).map_err(io(&path))?;
    for subcommand in command.get_subcommands() {
        if subcommand.is_hide_set() || subcommand.get_name() == "help" {
            continue;
        }
        // A page's name outlives the command here; the process writes its pages and exits.
        let name: &'static str =
            Box::leak(format!("{}-{}", command.get_name(), subcommand.get_name()).into_boxed_str());
        let renamed = subcommand.clone().name(name);
        write_man_pages(&renamed, directory)?;
    }
    Ok(())
}

/// When [`GENERATE_VARIABLE`] is set: writes the files for `command` and returns the exit code
/// to end `main` with. `None` when it is not set.
pub fn generate_if_asked(command: impl FnOnce() -> clap::Command) -> Option<ExitCode> {
    let directory = std::env::var_os(GENERATE_VARIABLE)?;
    Some(match generate(command(), Path::new(&directory)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("cannot write the man pages and completions: {error}");
            ExitCode::FAILURE
        }
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn example() -> clap::Command {
        clap::Command::new("example")
            .version("1.0")
            .about("An example.")
            .arg(clap::Arg::new("config").long("config").help("The file."))
            .subcommand(
                clap::Command::new("status")
                    .about("Shows the status.")
                    .subcommand(clap::Command::new("peers").about("Peers.")),
            )
    }

    #[test]
    fn writes_a_page_per_subcommand_and_three_completions() {
        let directory = tempfile::tempdir().unwrap();
        generate(example(), directory.path()).unwrap();
        let man = directory.path().join("man");
        for page in ["example.1", "example-status.1", "example-status-peers.1"] {
            let text = std::fs::read_to_string(man.join(page)).unwrap();
            assert!(text.starts_with(".ie"), "{page}: {text}");
            assert!(text.contains(".TH"), "{page}");
        }
        assert!(
            std::fs::read_to_string(man.join("example.1"))
                .unwrap()
                .contains("\\-\\-config")
        );
        let completions = directory.path().join("completions");
        for (file, marker) in [
            ("example", "complete -F"),
            ("_example", "#compdef example"),
            ("example.fish", "complete -c example"),
        ] {
            let text = std::fs::read_to_string(completions.join(file)).unwrap();
            assert!(text.contains(marker), "{file}: {text}");
            assert!(text.contains("status"), "{file}");
        }
    }
}
