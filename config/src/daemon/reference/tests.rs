//! The reference against the schema and the checked-in document.

use std::collections::BTreeSet;
use std::path::PathBuf;

use super::super::file::DaemonFile;
use super::*;

/// The keys serde accepts in `table`, from its unknown-key error (which lists them all).
fn schema_keys(table: &str) -> BTreeSet<String> {
    let text = match table {
        "" => "zz_not_a_key = 1\n".to_owned(),
        "peer" => "[[peer]]\nzz_not_a_key = 1\n".to_owned(),
        other => format!("[{other}]\nzz_not_a_key = 1\n"),
    };
    let error = match toml::from_str::<DaemonFile>(&text) {
        Ok(_) => panic!("[{table}] accepted an unknown key"),
        Err(error) => error.to_string(),
    };
    let expected = error
        .split_once("expected")
        .map(|(_, list)| list)
        .unwrap_or_else(|| panic!("no key list in: {error}"));
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_table_lists_exactly_the_keys_the_schema_accepts() {
    let keys = keys();
    for (table, _) in TABLES {
        if table.ends_with(".roles") || table.ends_with(".vars") {
            continue;
        }
        let mut documented: BTreeSet<String> = keys
            .iter()
            .filter(|entry| entry.table == table)
            .map(|entry| entry.key.to_owned())
            .collect();
        if table.is_empty() {
            // The top level's tables are keys of the top level too.
            documented.extend(
                TABLES
                    .iter()
                    .filter(|(name, _)| !name.is_empty() && !name.contains('.'))
                    .map(|(name, _)| (*name).to_owned()),
            );
        }
        assert_eq!(
            documented,
            schema_keys(table),
            "[{table}]: the reference and the schema (config/src/daemon/file.rs) differ"
        );
    }
    // Every documented table is a table of the schema or a map inside one.
    let top = schema_keys("");
    for (table, _) in TABLES.iter().filter(|(table, _)| !table.is_empty()) {
        let root = table.split('.').next().unwrap_or(table);
        assert!(top.contains(root), "[{table}] is not in the schema");
    }
}

#[test]
fn the_checked_in_document_is_the_rendered_reference() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/daemon-config.md");
    let rendered = render_markdown();
    if std::env::var_os("TOPOLOGYD_REGENERATE_DOCS").is_some() {
        std::fs::write(&path, &rendered).unwrap_or_else(|error| panic!("writing: {error}"));
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == rendered,
        "docs/daemon-config.md differs from the reference; regenerate it with \
         TOPOLOGYD_REGENERATE_DOCS=1 cargo test -p topologyd-config --lib reference"
    );
}

#[test]
fn defaults_come_from_the_model_constants() {
    let keys = keys();
    let default = |table: &str, name: &str| {
        keys.iter()
            .find(|entry| entry.table == table && entry.key == name)
            .map(|entry| entry.default.clone())
            .unwrap_or_default()
    };
    assert_eq!(
        default("peer", "hold_time_seconds"),
        DEFAULT_HOLD_TIME_SECONDS.to_string()
    );
    assert_eq!(default("peer", "port"), "179");
    assert_eq!(default("", "location"), REQUIRED);
}
