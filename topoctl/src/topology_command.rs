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
                    println!("{}", path.display());
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
            print!("{}", render(&view));
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
    let mut written = Vec::new();
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
        if path.exists() && !force {
            return Err(format!(
                "{}: exists; not overwritten (add --force)",
                path.display()
            ));
        }
        std::fs::write(&path, &source.text)
            .map_err(|error| format!("{}: cannot write: {error}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}
