//! `topoctl topology get [--generation N] [--out DIR]`: the running generation's sources (or a
//! kept one's), as the daemon holds them: printed one after another under a `# file: NAME`
//! line, or written into a directory (files 0644, an existing file left alone unless
//! `--force`) ready to edit and push again. `--json` prints [`TopologyView`].

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::control_client::ControlClient;
use topologyd_api::{EXIT_NO_CHANGE, EXIT_USAGE, TopologyView};

use crate::connection::{print_json, report_error};
use crate::render::inert;

/// Runs `topoctl topology get`.
pub async fn run(
    client: ControlClient,
    generation: Option<u64>,
    out: Option<PathBuf>,
    force: bool,
    json: bool,
) -> i32 {
    let view = match client.topology_at(generation).await {
        Ok(view) => view,
        Err(error) => return report_error(&error, json),
    };
    match out {
        Some(directory) => match write_sources(&view, &directory, force) {
            Ok(written) => {
                for path in written {
                    println!("{}", inert(&path.display().to_string()));
                }
                EXIT_NO_CHANGE
            }
            Err(message) => {
                eprintln!("topoctl: {message}");
                EXIT_USAGE
            }
        },
        None if json => {
            print_json(&view);
            EXIT_NO_CHANGE
        }
        None => {
            print!("{}", inert(&render(&view)));
            EXIT_NO_CHANGE
        }
    }
}

/// The sources one after another, each under a `# file: NAME` comment line.
pub fn render(view: &TopologyView) -> String {
    let mut text = format!("# generation {} hash {}\n", view.generation, view.hash);
    for source in &view.bundle.sources {
        let _ = writeln!(text, "\n# file: {}", inert(&source.name));
        text.push_str(&inert(&source.text));
        if !source.text.ends_with('\n') {
            text.push('\n');
        }
    }
    text
}

/// Writes each source under its file name into `directory`; answers the paths written.
fn write_sources(
    view: &TopologyView,
    directory: &Path,
    force: bool,
) -> Result<Vec<PathBuf>, String> {
    std::fs::create_dir_all(directory).map_err(|error| {
        format!(
            "{}: cannot create the directory: {error}",
            directory.display()
        )
    })?;
    // Every path is decided and checked before the first file is written: two sources with
    // the same file name, or an existing file without --force, write nothing at all.
    let mut planned: Vec<(PathBuf, &str)> = Vec::new();
    for source in &view.bundle.sources {
        let name = Path::new(&source.name)
            .file_name()
            .filter(|name| !name.is_empty())
            .ok_or_else(|| {
                format!(
                    "the daemon's source `{}` has no file name",
                    inert(&source.name)
                )
            })?;
        let path = directory.join(name);
        if planned.iter().any(|(other, _)| *other == path) {
            return Err(format!(
                "two of the daemon's sources are named `{}`; nothing written",
                inert(&name.to_string_lossy())
            ));
        }
        if path.exists() && !force {
            return Err(format!(
                "{}: exists; not overwritten (add --force); nothing written",
                path.display()
            ));
        }
        planned.push((path, &source.text));
    }
    let mut written = Vec::new();
    for (path, text) in planned {
        std::fs::write(&path, text)
            .map_err(|error| format!("{}: cannot write: {error}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use topologyd_api::{SourceBundle, SourceFile};

    use super::*;

    fn view(names: &[&str]) -> TopologyView {
        TopologyView {
            generation: 3,
            hash: "sha256:00".into(),
            bundle: SourceBundle {
                sources: names
                    .iter()
                    .map(|name| SourceFile {
                        name: (*name).into(),
                        text: format!("# {name}\n").into(),
                    })
                    .collect(),
            },
        }
    }

    #[test]
    fn sources_are_written_whole_or_not_at_all() {
        let Ok(directory) = tempfile::tempdir() else {
            panic!("a temporary directory")
        };
        let dir = directory.path();
        // Two sources that both end in x.toml: nothing written, even with --force.
        for force in [false, true] {
            let result = write_sources(&view(&["a.toml", "a/x.toml", "b/x.toml"]), dir, force);
            assert!(result.is_err_and(|error| error.contains("nothing written")));
            assert!(!dir.join("a.toml").exists());
        }
        // An existing file without --force: nothing written; with it, every file.
        std::fs::write(dir.join("x.toml"), "mine\n").unwrap_or_else(|error| panic!("{error}"));
        let refused = write_sources(&view(&["a.toml", "x.toml"]), dir, false);
        assert!(refused.is_err_and(|error| error.contains("--force")));
        assert!(!dir.join("a.toml").exists());
        let written = write_sources(&view(&["../a.toml", "x.toml"]), dir, true);
        assert_eq!(written.map(|paths| paths.len()), Ok(2));
        assert_eq!(
            std::fs::read_to_string(dir.join("x.toml")).ok().as_deref(),
            Some("# x.toml\n")
        );
        assert!(dir.join("a.toml").exists());
    }
}
