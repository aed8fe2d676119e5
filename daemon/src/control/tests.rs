//! The control server against a fake engine over real TLS: roles, audit (write-ahead and
//! outcome records), body limits and deadlines, and bodies that are not what they should be.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use hyper::Method;
use serde_json::{Value, json};
use topologyd_api::view::{RouteCounts, StatusHealth};
use topologyd_api::{
    Document, Intent, OutcomeDetail, PlanView, RoutesView, SourceBundle, StatusView, Verdict,
};

use super::body::query_parameter;
use super::*;
use crate::engine_api::{EngineError, EngineErrorKind, MutationOutcome, MutationTerms};
use crate::state_store::SourceFile;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use topoctl::control_client::{ClientError, ControlClient};
use topologyd_transport::tls::{self, TlsFiles};

struct Identity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    certificate_pem: String,
    key_pem: String,
}

struct Pki {
    dir: tempfile::TempDir,
    ca: CertificateDer<'static>,
    ca_pem: String,
    server: Identity,
    admin: Identity,
    reader: Identity,
    stranger: Identity,
    untrusted: Identity,
}

fn certificate_authority(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

fn issue(ca: &CertifiedIssuer<'static, KeyPair>, common_name: &str, dns: &[&str]) -> Identity {
    let key = KeyPair::generate().unwrap();
    let names: Vec<String> = dns.iter().map(|name| (*name).to_owned()).collect();
    let mut params = CertificateParams::new(names).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    let certificate = params.signed_by(&key, ca).unwrap();
    Identity {
        chain: vec![certificate.der().clone()],
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        certificate_pem: certificate.pem(),
        key_pem: key.serialize_pem(),
    }
}

fn pki() -> Pki {
    let ca = certificate_authority("topologyd test CA");
    let other_ca = certificate_authority("someone else's CA");
    Pki {
        dir: tempfile::tempdir().unwrap(),
        ca: ca.der().clone(),
        ca_pem: ca.pem(),
        server: issue(&ca, "topologyd", &["localhost"]),
        admin: issue(&ca, "alice", &[]),
        reader: issue(&ca, "robot-reader", &[]),
        stranger: issue(&ca, "mallory", &[]),
        untrusted: issue(&other_ca, "alice", &[]),
    }
}

/// A status view of `generation`, no peers.
fn status_view(generation: u64) -> StatusView {
    let counts = RouteCounts { ipv4: 0, ipv6: 0 };
    StatusView {
        location: "ams01".into(),
        generation,
        hash: "sha256:feed".into(),
        applied_at: 0,
        applied_by: "local".into(),
        ready: true,
        ready_reason: "ready".into(),
        routes: counts,
        routes_topology: counts,
        published_version: 1,
        runtime_guard_refusals: 0,
        health: StatusHealth {
            fail_static: false,
            location_drained: false,
            unhealthy: vec![],
            drained: vec![],
            withdrawn: vec![],
            degraded: vec![],
        },
        peers: vec![],
        lease: None,
        time_unix_ms: 0,
    }
}

fn intent(lines: &[&str]) -> Intent {
    Intent::from_lines(lines).unwrap()
}

/// A fake engine: answers every command and forwards a description of it to the test.
/// Generation 7 runs the example topology; its texts are in the fake engine's state store
/// unless `store_holds_running` is false (a store that lost the running generation's file).
fn fake_engine(
    store_holds_running: bool,
) -> (mpsc::Sender<EngineCommand>, mpsc::UnboundedReceiver<String>) {
    let (commands, mut receiver) = mpsc::channel::<EngineCommand>(8);
    let (seen, seen_receiver) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        // Generation 7 runs the example topology, whose texts only the state store holds.
        let mut topology = topologyd_topology::compile(example_bundle().sources, 7).unwrap();
        drop(topology.take_sources());
        let running = std::sync::Arc::new(topology);
        let state = tempfile::tempdir().unwrap();
        let store =
            std::sync::Arc::new(crate::state_store::StateStore::open(state.path(), 2).unwrap());
        store
            .commit(&crate::state_store::StoredGeneration {
                meta: crate::state_store::GenerationMeta {
                    generation: if store_holds_running { 7 } else { 6 },
                    hash: "sha256:feed".to_owned(),
                    applied_at: 0,
                    who: "test".to_owned(),
                    intent: vec![],
                },
                bundle: example_bundle(),
            })
            .unwrap();
        while let Some(command) = receiver.recv().await {
            match command {
                EngineCommand::Running { reply } => {
                    let _ = reply.send(Ok((
                        7,
                        std::sync::Arc::clone(&running),
                        std::sync::Arc::clone(&store),
                    )));
                }
                EngineCommand::Plan {
                    bundle,
                    unchecked,
                    reply,
                    ..
                } => {
                    // The file count and the first digits of the bundle's digest, and the
                    // places of the texts whose digests the compile is to check.
                    let digest = topologyd_api::delta::bundle_sha256(
                        &topologyd_api::delta::digests(&bundle.sources),
                    );
                    let unchecked = if unchecked.is_empty() {
                        String::new()
                    } else {
                        format!(" unchecked {unchecked:?}")
                    };
                    let _ = seen.send(format!(
                        "plan {} {}{unchecked}",
                        bundle.sources.len(),
                        &digest[..12]
                    ));
                    let _ = reply.send(Ok(PlanView {
                        verdict: Verdict::ChangesAllowed,
                        exit_code: 2,
                        plan: Document(json!({ "changes": 1 })),
                        text: String::new(),
                        location_delta: Document::default(),
                    }));
                }
                EngineCommand::Apply {
                    bundle,
                    digests,
                    terms,
                    ..
                } => {
                    let MutationTerms {
                        checks,
                        who,
                        write_ahead,
                        reply,
                    } = terms;
                    let expected_generation = checks.expected_generation;
                    // The compile trusts the digests that come with a bundle: each must be
                    // its text's SHA-256, in order (a whole push's and a resolved delta's).
                    let texts: Vec<&str> = bundle
                        .sources
                        .iter()
                        .map(|file| file.text.as_str())
                        .collect();
                    let digests = match digests {
                        Some(digests) if digests == topologyd_api::delta::sha256_each(&texts) => {
                            "its texts' digests"
                        }
                        Some(_) => "wrong digests",
                        None => "no digests",
                    };
                    let _ = seen.send(format!("apply by {who} with {digests}"));
                    // As the engine does: the intent record first, or no change.
                    let recorded = match (&write_ahead, expected_generation) {
                        (Some(write_ahead), Some(7)) => write_ahead
                            .record(7, 8, Some("sha256:feed".to_owned()), "changes_allowed")
                            .await
                            .map_err(|error| {
                                EngineError::new(
                                    if error.is_no_space() {
                                        EngineErrorKind::NoSpace
                                    } else {
                                        EngineErrorKind::Internal
                                    },
                                    format!("refused, nothing changed: {error}"),
                                )
                            }),
                        _ => Ok(()),
                    };
                    let answer = if let Err(error) = recorded {
                        Err(error)
                    } else if expected_generation == Some(7) {
                        Ok(MutationOutcome {
                            generation_before: 7,
                            generation_after: 8,
                            plan_hash: "sha256:feed".to_owned(),
                            detail: OutcomeDetail {
                                verdict: Verdict::ChangesAllowed,
                                summary: None,
                                text: String::new(),
                            },
                            audit_warning: None,
                        })
                    } else {
                        let mut error =
                            EngineError::new(EngineErrorKind::Conflict, "running generation is 7");
                        error.generation = Some(7);
                        Err(error)
                    };
                    let _ = reply.send(answer);
                }
                EngineCommand::Rollback { terms, .. } => {
                    let reply = terms.reply;
                    let _ = reply.send(Err(EngineError::new(
                        EngineErrorKind::NotFound,
                        "generation 3 is not kept",
                    )));
                }
                EngineCommand::Status { reply } => {
                    let _ = seen.send("status".to_owned());
                    let _ = reply.send(Ok(status_view(7)));
                }
                EngineCommand::Routes { peer, reply } => {
                    let _ = seen.send(format!("routes {peer:?}"));
                    let _ = reply.send(Ok(RoutesView {
                        generation: 7,
                        peers: Default::default(),
                    }));
                }
                other => {
                    let _ = seen.send(format!("{other:?}"));
                }
            }
        }
    });
    (commands, seen_receiver)
}

struct Running {
    address: SocketAddr,
    audit: PathBuf,
    seen: mpsc::UnboundedReceiver<String>,
}

async fn start(pki: &Pki, body_limit: u64) -> Running {
    start_with_audit(pki, body_limit, pki.dir.path()).await
}

async fn start_with_audit(pki: &Pki, body_limit: u64, audit_dir: &Path) -> Running {
    start_with(pki, body_limit, body_limit, audit_dir).await
}

async fn start_with(
    pki: &Pki,
    body_limit: u64,
    reader_body_limit: u64,
    audit_dir: &Path,
) -> Running {
    start_with_store(pki, body_limit, reader_body_limit, audit_dir, true).await
}

async fn start_with_store(
    pki: &Pki,
    body_limit: u64,
    reader_body_limit: u64,
    audit_dir: &Path,
    store_holds_running: bool,
) -> Running {
    // The server loads its material from PEM files, as the daemon does.
    let write = |name: &str, pem: &str| {
        let path = pki.dir.path().join(name);
        std::fs::write(&path, pem).unwrap();
        path
    };
    let files = TlsFiles {
        certificate: write("server.pem", &pki.server.certificate_pem),
        private_key: write("server.key", &pki.server.key_pem),
        ca: write("ca.pem", &pki.ca_pem),
    };
    let audit = audit_dir.join("audit.jsonl");
    let settings = ControlSettings {
        roles: HashMap::from([
            ("alice".to_owned(), Role::Admin),
            ("robot-reader".to_owned(), Role::Reader),
        ]),
        body_limit,
        reader_body_limit,
        audit_log: AuditLog::open(&audit).unwrap(),
    };
    let (engine, seen) = fake_engine(store_holds_running);
    let server = ControlServer::bind(
        "127.0.0.1:0".parse().unwrap(),
        tls::server_config(&files).unwrap(),
        settings,
        engine,
    )
    .await
    .unwrap();
    let address = server.local_addr();
    tokio::spawn(server.run(std::future::pending()));
    Running {
        address,
        audit,
        seen,
    }
}

fn client(pki: &Pki, running: &Running, identity: Option<&Identity>) -> ControlClient {
    let identity = identity.map(|identity| (identity.chain.clone(), identity.key.clone_key()));
    let config =
        tls::client_config_from(identity, vec![pki.ca.clone()], Path::new("test CA")).unwrap();
    ControlClient::new(running.address, "localhost", config).unwrap()
}

/// The bundled example topology: what the fake engine runs as generation 7.
fn example_bundle() -> SourceBundle {
    SourceBundle {
        sources: vec![
            SourceFile::new(
                "fleet.toml",
                include_str!("../../../examples/topology/fleet.toml"),
            ),
            SourceFile::new(
                "services.toml",
                include_str!("../../../examples/topology/services.toml"),
            ),
            SourceFile::new(
                "prefixes.toml",
                include_str!("../../../examples/topology/prefixes.toml"),
            ),
        ],
    }
}

fn bundle() -> SourceBundle {
    SourceBundle {
        sources: vec![SourceFile {
            name: "services.toml".to_owned(),
            text: "[service.web]\n".to_owned().into(),
        }],
    }
}

fn status_of(error: &ClientError) -> Option<u16> {
    match error {
        ClientError::Status { status, .. } => Some(*status),
        _ => None,
    }
}

#[tokio::test]
async fn client_without_certificate_is_refused_in_the_handshake() {
    let pki = pki();
    let mut running = start(&pki, DEFAULT_BODY_LIMIT).await;
    // TLS 1.3: the client learns of the refusal from the server's alert on its first read.
    let error = client(&pki, &running, None).status().await.unwrap_err();
    assert_eq!(status_of(&error), None, "{error}");
    assert!(
        format!("{error:?}").contains("CertificateRequired"),
        "{error:?}"
    );
    let untrusted = client(&pki, &running, Some(&pki.untrusted));
    let error = untrusted.status().await.unwrap_err();
    assert_eq!(status_of(&error), None, "{error}");
    assert!(format!("{error:?}").contains("UnknownCA"), "{error:?}");
    assert!(running.seen.try_recv().is_err(), "a handler ran");
    // No certificate names no one; the untrusted one names "alice" (as claimed): audited.
    let records = wait_for_records(&running.audit, 1).await;
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].who, "alice");
    assert_eq!(records[0].endpoint, "TLS handshake");
    assert_eq!(records[0].verdict, "handshake_refused");
    assert_eq!(records[0].role, None);
    let message = records[0].message.as_deref().unwrap_or("");
    assert!(message.contains("not verified"), "{message}");
}

/// The audit log's records once it holds at least `count` (the server appends after it
/// answers, or after a handshake fails).
async fn wait_for_records(audit: &Path, count: usize) -> Vec<AuditRecord> {
    for _ in 0..100 {
        let text = std::fs::read_to_string(audit).unwrap();
        let records: Vec<AuditRecord> = text
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        if records.len() >= count {
            return records;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the audit log never held {count} records");
}

#[tokio::test]
async fn reader_may_read_and_plan_but_not_apply() {
    let pki = pki();
    let mut running = start(&pki, DEFAULT_BODY_LIMIT).await;
    let reader = client(&pki, &running, Some(&pki.reader));
    assert_eq!(reader.status().await.unwrap(), status_view(7));
    assert_eq!(running.seen.recv().await.unwrap(), "status");
    reader.routes(Some("192.0.2.1 x")).await.unwrap();
    assert_eq!(
        running.seen.recv().await.unwrap(),
        "routes Some(\"192.0.2.1 x\")"
    );
    reader.plan(&bundle(), &Intent::default()).await.unwrap();
    assert_eq!(running.seen.recv().await.unwrap(), planned(&bundle()));
    let error = reader
        .apply(&bundle(), &intent(&["service:x"]), Some(7), None)
        .await
        .unwrap_err();
    assert_eq!(status_of(&error), Some(403), "{error}");
    assert!(running.seen.try_recv().is_err(), "apply reached the engine");
    let audit = std::fs::read_to_string(&running.audit).unwrap();
    let record: AuditRecord = serde_json::from_str(audit.trim()).unwrap();
    assert_eq!(record.who, "robot-reader");
    assert_eq!(record.verdict, "forbidden");
    // The fleet lock is the admin's too: a reader may not take, give back or break it.
    let lease = topologyd_api::LeaseRequest {
        holder: "robot-reader".to_owned(),
        token: 1,
        ttl_seconds: 60,
        action: topologyd_api::LeaseAction::Break,
    };
    let error = reader.lease(&lease).await.unwrap_err();
    assert_eq!(status_of(&error), Some(403), "{error}");
    assert!(
        running.seen.try_recv().is_err(),
        "the lease reached the engine"
    );
    let audit = std::fs::read_to_string(&running.audit).unwrap();
    let last: AuditRecord = serde_json::from_str(audit.trim().lines().last().unwrap()).unwrap();
    assert_eq!(
        (last.endpoint.as_str(), last.verdict.as_str()),
        ("POST /v1/lease", "forbidden")
    );

    let stranger = client(&pki, &running, Some(&pki.stranger));
    let error = stranger.status().await.unwrap_err();
    assert_eq!(status_of(&error), Some(403), "{error}");
}

#[tokio::test]
async fn admin_apply_reaches_the_engine_and_is_audited() {
    let pki = pki();
    let mut running = start(&pki, DEFAULT_BODY_LIMIT).await;
    // topoctl loads its material from PEM files.
    let write = |name: &str, pem: &str| {
        let path = pki.dir.path().join(name);
        std::fs::write(&path, pem).unwrap();
        path
    };
    let files = TlsFiles {
        certificate: write("alice.pem", &pki.admin.certificate_pem),
        private_key: write("alice.key", &pki.admin.key_pem),
        ca: write("ca.pem", &pki.ca_pem),
    };
    let admin = ControlClient::new(
        running.address,
        "localhost",
        tls::client_config(&files).unwrap(),
    )
    .unwrap();
    let outcome = admin
        .apply(&bundle(), &intent(&["service:web"]), Some(7), None)
        .await
        .unwrap();
    assert_eq!(outcome.generation_after, 8);
    assert_eq!(
        running.seen.recv().await.unwrap(),
        "apply by alice with its texts' digests"
    );
    let error = admin
        .apply(&bundle(), &Intent::default(), Some(6), None)
        .await
        .unwrap_err();
    assert_eq!(status_of(&error), Some(409), "{error}");
    let error = admin.rollback(3, None, None).await.unwrap_err();
    assert_eq!(status_of(&error), Some(404), "{error}");

    let audit = std::fs::read_to_string(&running.audit).unwrap();
    let records: Vec<AuditRecord> = audit
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(records.len(), 4, "{audit}");
    // Write-ahead: the intent (identity, request, plan hash, intended verdict), then the
    // outcome under the same id.
    assert_eq!(records[0].phase.as_deref(), Some(PHASE_INTENT));
    assert_eq!(records[0].who, "alice");
    assert_eq!(records[0].endpoint, "POST /v1/apply");
    assert_eq!(records[0].plan_hash.as_deref(), Some("sha256:feed"));
    assert_eq!(
        records[0].intended_verdict.as_deref(),
        Some("changes_allowed")
    );
    let request = records[0].request.clone().unwrap();
    assert_eq!(request["intent"], json!(["service:web"]));
    assert_eq!(request["sources"], json!(["services.toml"]));
    assert_eq!(request["expected_generation"], 7);
    assert!(request["sources_sha256"].as_str().unwrap().len() == 64);
    assert_eq!(records[1].phase.as_deref(), Some(PHASE_OUTCOME));
    assert_eq!(records[1].id, records[0].id);
    assert_eq!(records[1].verdict, "applied");
    assert_eq!(records[1].generation_before, Some(7));
    assert_eq!(records[1].generation_after, Some(8));
    assert_eq!(records[1].plan_hash.as_deref(), Some("sha256:feed"));
    assert_eq!(records[2].verdict, "conflict");
    assert_eq!(records[2].status, 409);
    assert_ne!(records[2].id, records[1].id);
    assert_eq!(records[3].endpoint, "POST /v1/rollback");
    assert_eq!(records[3].verdict, "not_found");
    assert_eq!(records[3].request.clone().unwrap()["generation"], 3);
}

#[tokio::test]
async fn a_full_audit_file_system_refuses_the_mutation() {
    let pki = pki();
    let tmpfs = crate::test_support::SmallTmpfs::mount(64 * 1024);
    let running = start_with_audit(&pki, DEFAULT_BODY_LIMIT, tmpfs.path()).await;
    let admin = client(&pki, &running, Some(&pki.admin));
    let filler = tmpfs.fill();
    let error = admin
        .apply(&bundle(), &Intent::default(), Some(7), None)
        .await
        .unwrap_err();
    assert_eq!(status_of(&error), Some(507), "{error}");
    let ClientError::Status { body, .. } = &error else {
        unreachable!()
    };
    assert_eq!(body.error.kind, "no_space", "{body:?}");
    let message = &body.error.message;
    assert!(message.contains("nothing changed"), "{message}");
    assert!(body.audit_warning.is_some(), "{body:?}");
    std::fs::remove_file(filler).unwrap();
    admin
        .apply(&bundle(), &Intent::default(), Some(7), None)
        .await
        .unwrap();
    let records = wait_for_records(&running.audit, 2).await;
    assert_eq!(records[0].phase.as_deref(), Some(PHASE_INTENT));
    assert_eq!(records[1].verdict, "applied");
    drop(running);
}

#[tokio::test]
async fn oversize_and_malformed_bodies_are_refused_before_the_engine() {
    let pki = pki();
    let mut running = start(&pki, 1024).await;
    let admin = client(&pki, &running, Some(&pki.admin));
    let mut large = bundle();
    large.sources[0].text = "#".repeat(4096).into();
    let error = admin
        .apply(&large, &Intent::default(), Some(7), None)
        .await
        .unwrap_err();
    assert_eq!(status_of(&error), Some(413), "{error}");

    let (status, body) = admin
        .raw(Method::POST, "/v1/apply", Some(b"{\"bundle\": [".to_vec()))
        .await
        .unwrap();
    assert_eq!(status, 400);
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("malformed JSON"), "{message}");
    assert!(message.contains("column"), "{message}");

    let (status, _) = admin
        .raw(Method::POST, "/v1/apply", Some(b"{\"bundle\":{\"sources\":[]},\"intent\":[],\"expected_generation\":7,\"extra\":1}".to_vec()))
        .await
        .unwrap();
    assert_eq!(status, 400);
    // An intent line that does not parse is an invalid request, answered here.
    let (status, body) = admin
        .raw(
            Method::POST,
            "/v1/apply",
            Some(
                b"{\"bundle\":{\"sources\":[]},\"intent\":[\"add web\"],\"expected_generation\":7}"
                    .to_vec(),
            ),
        )
        .await
        .unwrap();
    assert_eq!(status, 400);
    assert_eq!(body["error"]["kind"], "invalid", "{body}");
    assert_eq!(
        body["error"]["message"],
        "invalid override `add web`: expected global-withdrawal:CIDR or blast-radius"
    );
    let (status, _) = admin.raw(Method::GET, "/v1/apply", None).await.unwrap();
    assert_eq!(status, 405);
    let (status, _) = admin.raw(Method::GET, "/v1/nothing", None).await.unwrap();
    assert_eq!(status, 404);
    assert!(
        running.seen.try_recv().is_err(),
        "a bad request reached the engine"
    );
    // Every one of them is audited, 405 and 404 included.
    let records = wait_for_records(&running.audit, 6).await;
    let seen: Vec<(u16, &str)> = records
        .iter()
        .map(|record| (record.status, record.endpoint.as_str()))
        .collect();
    assert_eq!(
        seen,
        vec![
            (413, "POST /v1/apply"),
            (400, "POST /v1/apply"),
            (400, "POST /v1/apply"),
            (400, "POST /v1/apply"),
            (405, "GET /v1/apply"),
            (404, "GET /v1/nothing"),
        ]
    );
    assert!(records.iter().all(|record| record.who == "alice"));
}

#[tokio::test]
async fn readers_have_a_smaller_body_limit_than_admins() {
    let pki = pki();
    let mut running = start_with(&pki, 64 * 1024, 4 * 1024, pki.dir.path()).await;
    let mut medium = bundle();
    medium.sources[0].text = "#".repeat(16 * 1024).into();
    let reader = client(&pki, &running, Some(&pki.reader));
    let error = reader.plan(&medium, &Intent::default()).await.unwrap_err();
    assert_eq!(status_of(&error), Some(413), "{error}");
    assert!(
        running.seen.try_recv().is_err(),
        "the reader's plan reached the engine"
    );
    let admin = client(&pki, &running, Some(&pki.admin));
    admin.plan(&medium, &Intent::default()).await.unwrap();
    assert_eq!(running.seen.recv().await.unwrap(), planned(&medium));
    // The reader's 413 is audited (a 413 on any path is).
    let records = wait_for_records(&running.audit, 1).await;
    assert_eq!(records[0].who, "robot-reader");
    assert_eq!(records[0].status, 413);
}

#[tokio::test]
async fn a_body_trickling_below_the_minimum_rate_is_cut_off_with_408() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let pki = pki();
    let mut running = start(&pki, DEFAULT_BODY_LIMIT).await;
    let config = tls::client_config_from(
        Some((pki.admin.chain.clone(), pki.admin.key.clone_key())),
        vec![pki.ca.clone()],
        Path::new("test CA"),
    )
    .unwrap();
    let stream = tokio::net::TcpStream::connect(running.address)
        .await
        .unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut stream = tokio_rustls::TlsConnector::from(config)
        .connect(name, stream)
        .await
        .unwrap();
    let started = std::time::Instant::now();
    stream
        .write_all(b"POST /v1/apply HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100000\r\n\r\n{")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let reader = async {
        let mut buffer = [0_u8; 4096];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(read) => {
                    answer.extend_from_slice(&buffer[..read]);
                    if answer.windows(4).any(|window| window == b"\r\n\r\n") {
                        break;
                    }
                }
            }
            // One byte per half second keeps the client "sending".
            let _ = stream.write_all(b" ").await;
        }
    };
    tokio::time::timeout(BODY_RATE_GRACE + Duration::from_secs(10), reader)
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(
        started.elapsed() >= BODY_RATE_GRACE,
        "cut off before the grace period"
    );
    assert!(
        running.seen.try_recv().is_err(),
        "the apply reached the engine"
    );
}

#[tokio::test]
async fn a_pushed_file_that_is_not_utf8_is_invalid_at_its_line_and_column() {
    let pki = pki();
    let mut running = start(&pki, 1 << 20).await;
    let reader = client(&pki, &running, Some(&pki.reader));
    let mut body =
        br#"{"bundle":{"sources":[{"name":"fleet.toml","text":"[[location]]\nname = \"z"#.to_vec();
    body.push(0xFC);
    body.extend_from_slice(br#"rich\"\n"}]},"intent":[]}"#);
    let (status, answer) = reader
        .raw(Method::POST, "/v1/plan", Some(body))
        .await
        .unwrap();
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"]["kind"], "invalid", "{answer}");
    let text = answer["error"]["detail"]["text"].as_str().unwrap();
    assert!(
        text.starts_with("fleet.toml:2:10: error: the file is not UTF-8: byte 0xFC"),
        "{text}"
    );
    assert_eq!(
        answer["error"]["detail"]["diagnostics"]["items"][0]["location"]["line"],
        2
    );
    assert!(
        running.seen.try_recv().is_err(),
        "an undecodable bundle reached the engine"
    );
}

#[test]
fn refused_handshakes_are_audited_up_to_a_rate_per_source_then_counted() {
    let mut limiter = RefusedHandshakeAudit::default();
    let start = std::time::Instant::now();
    let flood: std::net::IpAddr = "127.9.9.9"
        .parse()
        .unwrap_or(std::net::IpAddr::from([127, 0, 0, 1]));
    let other: std::net::IpAddr = "127.9.9.10"
        .parse()
        .unwrap_or(std::net::IpAddr::from([127, 0, 0, 1]));
    let admitted = (0..1000).filter(|_| limiter.admit(flood, start).0).count();
    assert_eq!(admitted, REFUSED_HANDSHAKE_AUDITS_PER_MINUTE as usize);
    // Another source is not held back by the flood.
    assert_eq!(limiter.admit(other, start), (true, 0));
    // A minute later: audited again, with the count of those that were not.
    let later = start + std::time::Duration::from_secs(61);
    assert_eq!(limiter.admit(flood, later), (true, 990));
    assert_eq!(limiter.admit(flood, later), (true, 0));
}

#[test]
fn query_parameters_are_percent_decoded() {
    assert_eq!(
        query_parameter(Some("a=1&peer=2001%3adb8%3A%3A1"), "peer").unwrap(),
        Some("2001:db8::1".to_owned())
    );
    assert_eq!(query_parameter(None, "peer").unwrap(), None);
    assert!(query_parameter(Some("peer=%zz"), "peer").is_err());
}

/// What the fake engine reports for a plan of `bundle`.
fn planned(bundle: &SourceBundle) -> String {
    let digest =
        topologyd_api::delta::bundle_sha256(&topologyd_api::delta::digests(&bundle.sources));
    format!("plan {} {}", bundle.sources.len(), &digest[..12])
}

#[tokio::test]
async fn a_delta_push_carries_only_the_changed_file_and_the_engine_gets_the_whole_bundle() {
    use topologyd_api::delta::{bundle_sha256, digests, sources_view};
    let pki = pki();
    let mut running = start(&pki, DEFAULT_BODY_LIMIT).await;
    let admin = client(&pki, &running, Some(&pki.admin));
    let base = admin.sources().await.unwrap();
    assert_eq!(base, sources_view(7, &example_bundle().sources));
    // One file changed, two moved, one added.
    let mut changed = example_bundle();
    changed.sources[2].text.to_mut().push_str("# reviewed\n");
    changed.sources.swap(0, 1);
    changed
        .sources
        .push(SourceFile::new("extra.toml", "# empty\n"));
    // A dry run: the engine plans exactly the four files, in order, though two travelled.
    admin.plan(&changed, &Intent::default()).await.unwrap();
    assert_eq!(running.seen.recv().await.unwrap(), planned(&changed));
    admin
        .apply(&changed, &intent(&["service:x"]), Some(7), None)
        .await
        .unwrap();
    assert_eq!(
        running.seen.recv().await.unwrap(),
        "apply by alice with its texts' digests"
    );
    let records = wait_for_records(&running.audit, 2).await;
    let request = records.last().unwrap().request.clone().unwrap();
    // The audit names the whole bundle (its digest is the one /v1/sources reports once it
    // runs) and what travelled.
    assert_eq!(
        request["sources_sha256"],
        json!(bundle_sha256(&digests(&changed.sources)))
    );
    assert_eq!(
        request["bundle_bytes"],
        json!(
            changed
                .sources
                .iter()
                .map(|file| file.text.len())
                .sum::<usize>()
        )
    );
    assert_eq!(request["delta"]["base_generation"], json!(7));
    assert_eq!(
        request["delta"]["sent_bytes"],
        json!(changed.sources[2].text.len() + changed.sources[3].text.len())
    );
    assert_eq!(
        request["delta"]["sent_sources"],
        json!(["prefixes.toml", "extra.toml"])
    );
    assert_eq!(
        request["sources"],
        json!(["services.toml", "fleet.toml", "prefixes.toml", "extra.toml"])
    );
    // The whole bundle when asked for: the same plan.
    admin
        .clone()
        .with_full_bundles(true)
        .plan(&changed, &Intent::default())
        .await
        .unwrap();
    assert_eq!(running.seen.recv().await.unwrap(), planned(&changed));
    // Two files of one name: no delta can name them, the whole bundle goes.
    let mut twins = changed.clone();
    twins
        .sources
        .push(SourceFile::new("extra.toml", "# other\n"));
    admin.plan(&twins, &Intent::default()).await.unwrap();
    assert_eq!(running.seen.recv().await.unwrap(), planned(&twins));
}

#[tokio::test]
async fn a_daemon_that_cannot_read_its_running_sources_gets_the_whole_bundle() {
    let pki = pki();
    let mut running = start_with_store(
        &pki,
        DEFAULT_BODY_LIMIT,
        DEFAULT_BODY_LIMIT,
        pki.dir.path(),
        false,
    )
    .await;
    let admin = client(&pki, &running, Some(&pki.admin));
    // The digests come from the compiled topology (no read of the state directory)...
    let view = admin.sources().await.unwrap();
    let expected = topologyd_api::delta::sources_view(7, &example_bundle().sources);
    assert_eq!(view, expected);
    let mut changed = example_bundle();
    changed.sources[0].text.to_mut().push_str("# moved\n");
    // ...but a delta needs the texts: refused as base_unavailable, naming the way out.
    let (carried, delta) = topologyd_api::delta::BundleDelta::against(
        &view,
        &changed,
        &topologyd_api::delta::digests(&changed.sources),
    )
    .unwrap();
    let body = json!({ "bundle": carried, "delta": delta, "intent": [] });
    let (status, answer) = admin
        .raw(
            Method::POST,
            "/v1/plan",
            Some(serde_json::to_vec(&body).unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(status, 409, "{answer}");
    assert_eq!(answer["error"]["kind"], "base_unavailable", "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.contains("--full-bundle"), "{message}");
    // The client sends the whole bundle then, by itself.
    admin.plan(&changed, &Intent::default()).await.unwrap();
    assert_eq!(running.seen.recv().await.unwrap(), planned(&changed));
}

#[tokio::test]
async fn a_delta_against_another_base_or_with_a_wrong_digest_never_reaches_the_engine() {
    use topologyd_api::delta::{BundleDelta, bundle_sha256, digests};
    let pki = pki();
    // Readers get a body limit below the example topology's size.
    let mut running = start_with(&pki, DEFAULT_BODY_LIMIT, 2_000, pki.dir.path()).await;
    let admin = client(&pki, &running, Some(&pki.admin));
    let base = admin.sources().await.unwrap();
    let mut changed = example_bundle();
    changed.sources[0].text.to_mut().push_str("# moved\n");
    let (carried, delta) =
        BundleDelta::against(&base, &changed, &digests(&changed.sources)).unwrap();
    let post = |client: &ControlClient, carried: SourceBundle, delta: BundleDelta| {
        let client = client.clone();
        async move {
            let body = json!({ "bundle": carried, "delta": delta, "intent": [] });
            client
                .raw(
                    Method::POST,
                    "/v1/plan",
                    Some(serde_json::to_vec(&body).unwrap()),
                )
                .await
                .unwrap()
        }
    };
    let stale = BundleDelta {
        base_generation: 6,
        ..delta.clone()
    };
    let (status, answer) = post(&admin, carried.clone(), stale).await;
    assert_eq!(status, 409, "{answer}");
    assert_eq!(answer["error"]["kind"], "base_changed", "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("generation 6") && message.contains("generation 7"),
        "{message}"
    );
    let mut tampered = carried.clone();
    tampered.sources[0].text.to_mut().push('x');
    let (status, answer) = post(&admin, tampered, delta.clone()).await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("fleet.toml"),
        "{answer}"
    );
    // Edits that name another base: 409 `base_patch`, which `topoctl` answers by sending the
    // file whole. Edits that make another text than listed reach the engine with the file's
    // place as unchecked: the compile checks it (tests/daemon_control.rs in the harness).
    let edited = changed.sources[0].clone();
    let running_text = example_bundle().sources[0].text.to_string();
    let good = topologyd_api::FilePatch {
        name: edited.name.clone(),
        base_sha256: topologyd_api::delta::file_sha256(&running_text),
        edits: topologyd_api::patch::edits_between(&running_text, &edited.text),
    };
    let mut other_text = good.clone();
    other_text.edits[0].insert.push('#');
    let other_base = topologyd_api::FilePatch {
        base_sha256: topologyd_api::delta::file_sha256("another"),
        ..good.clone()
    };
    let without_edited = SourceBundle {
        sources: carried
            .sources
            .iter()
            .filter(|file| file.name != edited.name)
            .cloned()
            .collect(),
    };
    let patched = BundleDelta {
        patches: vec![other_text],
        ..delta.clone()
    };
    let (status, answer) = post(&admin, without_edited.clone(), patched).await;
    assert_eq!(status, 200, "{answer}");
    let place = delta
        .files
        .iter()
        .position(|file| file.name == edited.name)
        .unwrap();
    let seen = running.seen.recv().await.unwrap();
    assert!(seen.ends_with(&format!(" unchecked [{place}]")), "{seen}");
    let patched = BundleDelta {
        patches: vec![other_base],
        ..delta.clone()
    };
    let (status, answer) = post(&admin, without_edited.clone(), patched).await;
    assert_eq!(status, 409, "{answer}");
    assert_eq!(answer["error"]["kind"], "base_patch", "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&edited.name),
        "{answer}"
    );
    // A reader's small delta does not stand for more than a reader may send.
    let reader = client(&pki, &running, Some(&pki.reader));
    let (status, answer) = post(&reader, carried.clone(), delta.clone()).await;
    assert_eq!(status, 413, "{answer}");
    // An apply refused this way is audited with what was asked.
    let body = json!({
        "bundle": SourceBundle::default(), "delta": delta, "intent": [], "expected_generation": 7,
    });
    let (status, answer) = admin
        .raw(
            Method::POST,
            "/v1/apply",
            Some(serde_json::to_vec(&body).unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(status, 400, "{answer}");
    let records = wait_for_records(&running.audit, 1).await;
    let request = records.last().unwrap().request.clone().unwrap();
    assert_eq!(request["sources_sha256"], Value::Null);
    assert_eq!(
        request["delta"]["listed_sources_sha256"],
        json!(bundle_sha256(&delta.files))
    );
    assert_eq!(request["bundle_bytes"], Value::Null);
    assert_eq!(request["delta"]["base_generation"], json!(7));
    assert_eq!(request["delta"]["sent_bytes"], json!(0));
    assert!(
        running.seen.try_recv().is_err(),
        "a refused delta reached the engine"
    );
}
