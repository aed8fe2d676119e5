//! `topoctl prefix key|onboard|status|verify|loa|revoke`: the BYOIP onboarding workflow, human
//! output by default and `--json` for machines.
//!
//! Exit codes: 0 done (for `verify`: every prefix valid), 1 usage or settings error, 3 a
//! verification that did not make every prefix valid, 4 bad input (an unknown prefix, a
//! token already used, a prefix not valid for `loa`).
//!
//! Owns: the arguments and what each subcommand prints. Must not touch: the store's
//! transactions (`store`), the checks (`checks/`, `verify`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Args, Subcommand};
use ipnet::IpNet;
use rand::Rng as _;
use serde_json::json;
use topologyd_api::{EXIT_CHANGES_ALLOWED, EXIT_INVALID, EXIT_NO_CHANGE, EXIT_REFUSED, EXIT_USAGE};
use topologyd_ownership::evidence::{check_name, key_fingerprint, key_id, key_text};
use topologyd_ownership::token::TOKEN_RANDOM_BYTES;
use topologyd_ownership::{Onboarding, OnboardingState, ValidationToken};

use super::loa;
use super::settings::{
    OnboardingSettings, default_settings_path, generate_signing_key, load_signing_key,
};
use super::store::OnboardingStore;
use super::verify::{Outcomes, VrpInput, now_unix, verify_many};
use crate::render::{Table, inert, rfc3339};
use crate::vrp_source::VrpArguments;

/// `topoctl prefix`.
#[derive(Args, Debug)]
pub struct PrefixArguments {
    /// The onboarding settings file (default: $TOPOCTL_ONBOARDING, else
    /// ~/.config/topoctl/onboarding.toml).
    #[arg(long, global = true, value_name = "FILE")]
    pub settings: Option<PathBuf>,
    #[command(subcommand)]
    pub command: PrefixCommand,
}

#[derive(Subcommand, Debug)]
pub enum PrefixCommand {
    /// The onboarding key's public half, for [settings.onboarding] evidence_keys.
    Key {
        /// Create the key first (never over an existing file).
        #[arg(long)]
        generate: bool,
        #[arg(long)]
        json: bool,
    },
    /// Issue a single-use validation token for a customer prefix and print what to publish.
    Onboard {
        cidr: IpNet,
        /// The customer: the prefix's `owner` in the topology.
        #[arg(long)]
        owner: String,
        /// The origin ASN the customer authorises (default: the operator's ASN).
        #[arg(long)]
        origin_asn: Option<u32>,
        /// The split length the topology will announce (the ROA must reach it).
        #[arg(long)]
        split: Option<u8>,
        /// The IRR source to register the route object in (shown in the object).
        #[arg(long, default_value = "<IRR source>")]
        irr_source: String,
        #[arg(long)]
        json: bool,
    },
    /// The onboardings and their states (one prefix with its evidence when given).
    Status {
        cidr: Option<IpNet>,
        #[arg(long)]
        json: bool,
    },
    /// Run the checks (reverse DNS, IRR, ROA) and record the evidence; print the signed
    /// [prefix.evidence] for each prefix that becomes valid.
    Verify {
        /// The prefixes (default: every onboarding not yet valid, expired or revoked).
        cidrs: Vec<IpNet>,
        #[command(flatten)]
        vrps: VrpArguments,
        #[arg(long)]
        json: bool,
    },
    /// The document replacing a Letter of Agency, as PDF (to --out) or JSON.
    Loa {
        cidr: IpNet,
        /// Where to write the PDF (default: LOA-<prefix>.pdf).
        #[arg(long, short)]
        out: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Revoke an onboarding: the next plan or push that still advertises the prefix is refused.
    Revoke {
        cidr: IpNet,
        #[arg(long)]
        json: bool,
    },
}

/// Runs `topoctl prefix …`; answers the exit code.
pub fn run(arguments: PrefixArguments) -> i32 {
    let path = match arguments.settings.or_else(default_settings_path) {
        Some(path) => path,
        None => return usage("no onboarding settings: give --settings FILE"),
    };
    let settings = match OnboardingSettings::load(&path) {
        Ok(settings) => settings,
        Err(message) => return usage(&message),
    };
    if let PrefixCommand::Key { generate, json } = arguments.command {
        return key(&settings, generate, json);
    }
    let store = match OnboardingStore::open(&settings.store) {
        Ok(store) => store,
        Err(error) => return usage(&error.to_string()),
    };
    match arguments.command {
        PrefixCommand::Key { .. } => EXIT_USAGE,
        PrefixCommand::Onboard {
            cidr,
            owner,
            origin_asn,
            split,
            irr_source,
            json,
        } => {
            let request = OnboardRequest {
                cidr,
                owner,
                origin_asn: origin_asn.unwrap_or(settings.operator_asn),
                split,
                irr_source,
            };
            onboard(&settings, &store, &request, json)
        }
        PrefixCommand::Status { cidr, json } => status(&store, cidr, json),
        PrefixCommand::Verify { cidrs, vrps, json } => verify(settings, store, cidrs, &vrps, json),
        PrefixCommand::Loa { cidr, out, json } => {
            loa_command(&settings, &store, cidr, out.as_deref(), json)
        }
        PrefixCommand::Revoke { cidr, json } => revoke(&store, cidr, json),
    }
}

fn usage(message: &str) -> i32 {
    eprintln!("topoctl: {}", inert(message));
    EXIT_USAGE
}

fn invalid(message: &str) -> i32 {
    eprintln!("topoctl: {}", inert(message));
    EXIT_INVALID
}

fn key(settings: &OnboardingSettings, generate: bool, json: bool) -> i32 {
    let loaded = if generate {
        generate_signing_key(&settings.signing_key)
    } else {
        load_signing_key(&settings.signing_key)
    };
    let signing = match loaded {
        Ok(signing) => signing,
        Err(message) => return usage(&message),
    };
    let public = signing.verifying_key();
    if json {
        println!(
            "{}",
            json!({"public_key": key_text(&public), "key_id": key_id(&public), "fingerprint": key_fingerprint(&public)})
        );
    } else {
        println!("public key:  {}", key_text(&public));
        println!("key id:      {}", key_id(&public));
        println!("fingerprint: {}", key_fingerprint(&public));
        println!(
            "\nadd to the topology's [settings.onboarding]:\n  evidence_keys = [\"{}\"]",
            key_text(&public)
        );
    }
    EXIT_NO_CHANGE
}

/// What `onboard` was asked.
#[derive(Debug, Clone)]
pub struct OnboardRequest {
    pub cidr: IpNet,
    pub owner: String,
    pub origin_asn: u32,
    pub split: Option<u8>,
    pub irr_source: String,
}

/// Issues a token for `request` into `store` at `now` (the library path of `onboard`).
pub fn issue(
    settings: &OnboardingSettings,
    store: &OnboardingStore,
    request: &OnboardRequest,
    now: u64,
) -> Result<Onboarding, String> {
    if request.cidr != request.cidr.trunc() {
        return Err(format!(
            "{} has host bits set: write {}",
            request.cidr,
            request.cidr.trunc()
        ));
    }
    if request.owner == settings.operator_owner {
        return Err(format!(
            "\"{}\" is the operator itself: its prefixes need no onboarding",
            request.owner
        ));
    }
    if request.owner.is_empty()
        || request
            .owner
            .chars()
            .any(|c| c.is_control() || c == '"' || c == '\\')
    {
        return Err(
            "--owner must be a plain name (no quotes, backslashes or control characters)".into(),
        );
    }
    let mut random = [0u8; TOKEN_RANDOM_BYTES];
    rand::rng().fill(&mut random);
    let token = ValidationToken::issue(
        random,
        request.cidr,
        &request.owner,
        request.origin_asn,
        now,
        settings.token_lifetime_seconds,
    );
    let longest = request.split.unwrap_or(request.cidr.prefix_len());
    let onboarding = Onboarding::new(token, longest);
    store
        .insert_new(&onboarding)
        .map_err(|error| error.to_string())?;
    Ok(onboarding)
}

fn onboard(
    settings: &OnboardingSettings,
    store: &OnboardingStore,
    request: &OnboardRequest,
    json: bool,
) -> i32 {
    let onboarding = match issue(settings, store, request, now_unix()) {
        Ok(onboarding) => onboarding,
        Err(message) => return invalid(&message),
    };
    let token = &onboarding.token;
    let publication = token.publication(&request.irr_source);
    if json {
        println!(
            "{}",
            json!({"onboarding": onboarding, "publish": publication})
        );
        return EXIT_NO_CHANGE;
    }
    println!(
        "onboarding {} for {} (origin AS{})",
        token.prefix,
        inert(&token.owner),
        token.origin_asn
    );
    println!("token:   {}", token.token);
    println!("expires: {}", rfc3339(token.expires_at_unix));
    println!(
        "the ROA must authorise AS{} with max-length >= {}",
        token.origin_asn, onboarding.longest_announced
    );
    println!("\npublish EITHER this IRR route object (token in remarks:):\n");
    for line in publication.irr_object.lines() {
        println!("  {}", inert(line));
    }
    println!(
        "\nOR these reverse-DNS TXT records ({} covering zone(s), all needed):\n",
        publication.rdns_records.len()
    );
    for record in &publication.rdns_records {
        println!("  {}", record.zone_line);
    }
    println!("\nthen run: topoctl prefix verify {}", token.prefix);
    EXIT_NO_CHANGE
}

fn status(store: &OnboardingStore, cidr: Option<IpNet>, json: bool) -> i32 {
    let onboardings = match cidr {
        Some(cidr) => match store.get(cidr) {
            Ok(Some(onboarding)) => vec![onboarding],
            Ok(None) => return invalid(&format!("{cidr} has no onboarding")),
            Err(error) => return usage(&error.to_string()),
        },
        None => match store.list() {
            Ok(list) => list,
            Err(error) => return usage(&error.to_string()),
        },
    };
    if json {
        println!("{}", json!({"onboardings": onboardings}));
        return EXIT_NO_CHANGE;
    }
    let mut table = Table::new(&["PREFIX", "OWNER", "ORIGIN", "STATE", "UPDATED", "EXPIRES"]);
    for onboarding in &onboardings {
        table.row(vec![
            onboarding.token.prefix.to_string(),
            inert(&onboarding.token.owner),
            format!("AS{}", onboarding.token.origin_asn),
            onboarding.state.as_str().to_string(),
            rfc3339(onboarding.updated_at_unix),
            rfc3339(onboarding.token.expires_at_unix),
        ]);
    }
    print!("{table}");
    if cidr.is_some() {
        for onboarding in &onboardings {
            print!("{}", render_checks(onboarding));
            if let Some(evidence) = &onboarding.evidence {
                println!("\n{}", evidence.topology_entry(true));
            }
        }
    }
    EXIT_NO_CHANGE
}

/// The checks of an onboarding, one paragraph each.
pub fn render_checks(onboarding: &Onboarding) -> String {
    let mut text = String::new();
    for check in &onboarding.checks {
        text.push_str(&format!(
            "  {} {} at {} ({}): {}\n",
            check_name(check.kind),
            loa::status_name(check.status),
            rfc3339(check.checked_at_unix),
            inert(&check.server),
            inert(&check.detail)
        ));
        for found in &check.found {
            text.push_str(&format!("      found: {}\n", inert(found)));
        }
    }
    text
}

fn verify(
    settings: OnboardingSettings,
    store: OnboardingStore,
    cidrs: Vec<IpNet>,
    vrps: &VrpArguments,
    json: bool,
) -> i32 {
    let key = match load_signing_key(&settings.signing_key) {
        Ok(key) => key,
        Err(message) => return usage(&message),
    };
    let vrp_input = match vrps.load() {
        Ok(set) => VrpInput {
            vrps: set,
            source: vrps
                .vrps
                .as_ref()
                .map(|path| path.display().to_string())
                .unwrap_or_else(|| vrps.rtr.join(",")),
        },
        Err(message) => return usage(&message),
    };
    let prefixes = if cidrs.is_empty() {
        match store.list() {
            Ok(list) => list
                .into_iter()
                .filter(|onboarding| {
                    !matches!(
                        onboarding.state,
                        OnboardingState::Valid
                            | OnboardingState::Revoked
                            | OnboardingState::Expired
                    )
                })
                .map(|onboarding| onboarding.token.prefix)
                .collect(),
            Err(error) => return usage(&error.to_string()),
        }
    } else {
        cidrs
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return usage(&format!("starting the runtime: {error}")),
    };
    let outcomes = runtime.block_on(verify_many(
        Arc::new(settings),
        Arc::new(store),
        Arc::new(key),
        Arc::new(vrp_input),
        prefixes,
    ));
    report_verification(&outcomes, json)
}

fn report_verification(outcomes: &Outcomes, json: bool) -> i32 {
    let all_valid = outcomes
        .iter()
        .all(|(_, outcome)| matches!(outcome, Ok(onboarding) if onboarding.state == OnboardingState::Valid));
    let any_error = outcomes.iter().any(|(_, outcome)| outcome.is_err());
    if json {
        let items: Vec<serde_json::Value> = outcomes
            .iter()
            .map(|(prefix, outcome)| match outcome {
                Ok(onboarding) => json!({"prefix": prefix, "onboarding": onboarding, "topology_entry": onboarding.evidence.as_ref().map(|evidence| evidence.topology_entry(true))}),
                Err(message) => json!({"prefix": prefix, "error": message}),
            })
            .collect();
        println!("{}", json!({"verified": items}));
    } else {
        for (prefix, outcome) in outcomes {
            match outcome {
                Ok(onboarding) => {
                    println!("{prefix}: {}", onboarding.state.as_str());
                    print!("{}", render_checks(onboarding));
                    if let Some(evidence) = &onboarding.evidence {
                        println!(
                            "\n# paste into the topology (stage with advertise = false first):\n{}",
                            evidence.topology_entry(false)
                        );
                    }
                }
                Err(message) => println!("{prefix}: error: {}", inert(message)),
            }
        }
    }
    if any_error {
        EXIT_INVALID
    } else if all_valid {
        EXIT_NO_CHANGE
    } else {
        EXIT_REFUSED
    }
}

fn loa_command(
    settings: &OnboardingSettings,
    store: &OnboardingStore,
    cidr: IpNet,
    out: Option<&Path>,
    json: bool,
) -> i32 {
    let key = match load_signing_key(&settings.signing_key) {
        Ok(key) => key,
        Err(message) => return usage(&message),
    };
    let onboarding = match store.get(cidr) {
        Ok(Some(onboarding)) => onboarding,
        Ok(None) => return invalid(&format!("{cidr} has no onboarding")),
        Err(error) => return usage(&error.to_string()),
    };
    let Some(content) = loa::content(
        &onboarding,
        &key,
        &settings.operator_owner,
        settings.operator_asn,
        now_unix(),
    ) else {
        return invalid(&format!(
            "{cidr} is {}, not valid: there is nothing to attest (run `topoctl prefix verify {cidr}`)",
            onboarding.state.as_str()
        ));
    };
    if json {
        println!("{}", json!(content));
        return EXIT_NO_CHANGE;
    }
    let path = out.map_or_else(
        || PathBuf::from(format!("LOA-{}.pdf", cidr.to_string().replace('/', "_"))),
        Path::to_path_buf,
    );
    if let Err(error) = std::fs::write(&path, loa::render_pdf(&content)) {
        return usage(&format!("writing {}: {error}", path.display()));
    }
    println!("{}", path.display());
    EXIT_NO_CHANGE
}

fn revoke(store: &OnboardingStore, cidr: IpNet, json: bool) -> i32 {
    match store.revoke(cidr, now_unix()) {
        Ok(onboarding) => {
            if json {
                println!("{}", json!({"onboarding": onboarding}));
            } else {
                println!(
                    "{} revoked: a plan or push that still advertises it is refused; withdraw it with advertise = false",
                    onboarding.token.prefix
                );
                println!(
                    "so that every topology compile (G6) refuses its evidence, add its token digest to [settings.onboarding]:\n  revoked = [\"{}\"]   # {} (owner {})",
                    onboarding.token.digest(),
                    onboarding.token.prefix,
                    onboarding.token.owner
                );
            }
            EXIT_CHANGES_ALLOWED
        }
        Err(error) => invalid(&error.to_string()),
    }
}
