//! Replays the `resolve_delta` seed corpus (`fuzz/corpus/resolve_delta/*`) on stable through the
//! entry point the fuzz target uses: no input may panic, and every `valid_*` seed is a delta
//! that resolves. The seeds are the ones `seeds()` writes
//! (`REGENERATE_CORPUS=1 cargo test -p topologyd-api --test delta_fuzz_corpus_replay` rewrites
//! them).

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use topologyd_api::delta::{
    BundleDelta, digests, file_sha256, fuzz_base, fuzz_resolve, sources_view,
};
use topologyd_api::patch::edits_between;
use topologyd_api::{ApplyRequest, FilePatch, Intent, SourceBundle, SourceFile};

fn corpus() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/resolve_delta")
}

fn request(new: &[SourceFile]) -> ApplyRequest {
    let new = SourceBundle {
        sources: new.to_vec(),
    };
    let (bundle, delta) =
        BundleDelta::against(&sources_view(1, &fuzz_base()), &new, &digests(&new.sources)).unwrap();
    ApplyRequest {
        bundle,
        delta: Some(delta),
        intent: Intent::default(),
        expected_generation: Some(1),
        lease: None,
        deadline_unix_ms: None,
    }
}

fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let base = fuzz_base();
    let changed = vec![
        base[1].clone(),
        SourceFile::new("fleet.toml", "[[location]]\nname = \"fra01\"\n"),
        SourceFile::new("prefixes.toml", "[[prefix]]\n"),
    ];
    let unchanged = request(&base);
    let mut tampered = request(&changed);
    tampered.bundle.sources[0].text.to_mut().push('x');
    // The services file sent as edits of the base's.
    let services = "[[service]]\nname = \"web\"\n\n[[service]]\nname = \"dns\"\n";
    let mut patched = request(&[base[0].clone(), SourceFile::new("services.toml", services)]);
    patched.bundle.sources.clear();
    // Made directly: `FilePatch::between` sends files this small whole.
    patched.delta.as_mut().unwrap().patches = vec![FilePatch {
        name: "services.toml".to_owned(),
        base_sha256: file_sha256(&base[1].text),
        edits: edits_between(&base[1].text, services),
    }];
    let mut patch_tampered = patched.clone();
    patch_tampered.delta.as_mut().unwrap().patches[0].edits[0].at += 1;
    vec![
        ("valid_patched", serde_json::to_vec(&patched).unwrap()),
        (
            "garbage_patch_tampered",
            serde_json::to_vec(&patch_tampered).unwrap(),
        ),
        (
            "valid_changed",
            serde_json::to_vec(&request(&changed)).unwrap(),
        ),
        ("valid_unchanged", serde_json::to_vec(&unchanged).unwrap()),
        ("garbage_tampered", serde_json::to_vec(&tampered).unwrap()),
        (
            "garbage_json",
            b"{\"bundle\":{\"sources\":[]},\"delta\":{".to_vec(),
        ),
    ]
}

#[test]
fn the_seed_corpus_replays_without_a_panic() {
    let directory = corpus();
    if std::env::var_os("REGENERATE_CORPUS").is_some() {
        std::fs::create_dir_all(&directory).unwrap();
        for (name, bytes) in seeds() {
            std::fs::write(directory.join(name), bytes).unwrap();
        }
    }
    for (name, bytes) in seeds() {
        let committed = std::fs::read(directory.join(name)).unwrap();
        assert_eq!(committed, bytes, "seed {name} differs from its generator");
    }
    let mut replayed = 0;
    for entry in std::fs::read_dir(&directory).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        fuzz_resolve(&bytes);
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("valid_") {
            let request: ApplyRequest = serde_json::from_slice(&bytes).unwrap();
            let delta = request.delta.unwrap();
            let (_, resolved) = delta.resolve(request.bundle, 1, fuzz_base());
            assert!(resolved.is_ok(), "{name}: {resolved:?}");
        }
        replayed += 1;
    }
    assert!(replayed >= seeds().len(), "only {replayed} seeds replayed");
}
