//! The development and CI scripts (`scripts/*.sh`, `.ci/run`) never stop, restart or kill a
//! service or process they did not start: on a host whose router is BIRD or FRR, running the
//! set-up must not take it down. They may only install packages, and kill the processes they
//! started themselves, by the pid they recorded.
//!
//! Also checked: the set-up keeps the packages' own instances from starting at install time
//! with a `policy-rc.d` it removes again only when it created it.

use std::path::{Path, PathBuf};

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from(".."), Path::to_path_buf)
}

fn scripts() -> Vec<PathBuf> {
    let root = repository();
    let mut scripts: Vec<PathBuf> = std::fs::read_dir(root.join("scripts"))
        .expect("scripts/ is readable")
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|extension| extension == "sh"))
        .collect();
    scripts.push(root.join(".ci/run"));
    scripts.sort();
    scripts
}

/// The command part of a shell line (comments dropped), lower-cased and with single spaces.
fn command_words(line: &str) -> String {
    let code = line.split(" #").next().unwrap_or("");
    if code.trim_start().starts_with('#') {
        return String::new();
    }
    code.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_ascii_lowercase()
}

/// Why `line` would stop or kill something not started by the script, if it would.
fn forbidden(line: &str) -> Option<&'static str> {
    let words = command_words(line);
    let has = |needle: &str| words.contains(needle);
    let service_verbs = ["stop", "restart", "kill", "disable", "mask", "try-restart"];
    if has("pkill") || has("killall") {
        return Some("kills processes by name");
    }
    if has("pidof") || has("pgrep") {
        return Some("finds processes by name (to signal them)");
    }
    if let Some(after) = words.split("systemctl ").nth(1)
        && service_verbs
            .iter()
            .any(|verb| after.split_whitespace().any(|word| word == *verb))
    {
        return Some("stops or disables a systemd unit");
    }
    for front in ["service ", "invoke-rc.d ", "/etc/init.d/"] {
        if let Some(after) = words.split(front).nth(1)
            && after
                .split_whitespace()
                .take(3)
                .any(|word| service_verbs.contains(&word))
        {
            return Some("stops a service through its init script");
        }
    }
    None
}

#[test]
fn the_scripts_never_stop_or_kill_what_they_did_not_start() {
    let mut complaints = Vec::new();
    for script in scripts() {
        let text = std::fs::read_to_string(&script)
            .unwrap_or_else(|error| panic!("{}: {error}", script.display()));
        for (number, line) in text.lines().enumerate() {
            if let Some(why) = forbidden(line) {
                complaints.push(format!(
                    "{}:{}: {why}: {}",
                    script.display(),
                    number + 1,
                    line.trim()
                ));
            }
        }
    }
    assert!(complaints.is_empty(), "{}", complaints.join("\n"));
}

#[test]
fn the_checker_catches_every_way_of_stopping_a_service() {
    for line in [
        "systemctl stop bird",
        "$SUDO systemctl stop bird frr prometheus || true",
        "sudo systemctl disable --now frr",
        "pkill -x bird",
        "killall prometheus",
        "kill $(pidof bird)",
        "service frr stop",
        "invoke-rc.d prometheus stop",
        "/etc/init.d/bird stop",
    ] {
        assert!(forbidden(line).is_some(), "{line} was not caught");
    }
    for line in [
        "# never: systemctl stop bird",
        "[ -n \"$bird_pid\" ] && kill \"$bird_pid\" 2>/dev/null || true",
        "systemctl --version",
        "apt-get install -y bird2",
    ] {
        assert!(forbidden(line).is_none(), "{line} was refused");
    }
}

#[test]
fn the_setup_prevents_instances_at_install_time_and_only_removes_its_own_policy() {
    let setup = std::fs::read_to_string(repository().join("scripts/setup.sh"))
        .expect("scripts/setup.sh is readable");
    let policy = setup
        .find("policy-rc.d")
        .expect("setup.sh writes a policy-rc.d");
    let install = setup
        .find("apt-get install")
        .expect("setup.sh installs packages");
    assert!(
        policy < install,
        "the policy must be in place before installing"
    );
    assert!(
        setup.contains("exit 101"),
        "the policy refuses every start (exit 101)"
    );
    assert!(
        setup.contains("if [ ! -e \"$policy\" ]"),
        "an existing policy-rc.d is left alone"
    );
    assert!(
        setup.contains("if [ -n \"$ours\" ]; then $SUDO rm -f \"$policy\""),
        "only the policy this script created is removed"
    );
}
