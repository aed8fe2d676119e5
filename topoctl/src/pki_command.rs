//! `topoctl pki`: a small certificate authority for the control API's mutual TLS. `init` makes
//! the CA (`ca.pem`, `ca-key.pem`), `server --san NAME…` the daemon's certificate, `issue
//! --role admin|reader NAME` a client certificate whose subject CN is the identity the daemon's
//! `[control] roles` maps to the role. Every certificate is X.509 v3 with the extensions its
//! use needs (basic constraints, key usage, extended key usage, subject alternative names,
//! subject and authority key identifiers); each issued one is verified against the CA before
//! it is written. Files are written 0600; an existing file is never overwritten without
//! `--force`.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use clap::{Subcommand, ValueEnum};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use topologyd_api::{EXIT_CHANGES_MADE, EXIT_USAGE};
use topologyd_transport::tls::certificate_identity;

use crate::render::civil_from_days;

/// `topoctl pki …`.
#[derive(Subcommand, Debug)]
pub enum PkiCommand {
    /// Make a certificate authority: ca.pem and ca-key.pem in --dir.
    Init {
        #[command(flatten)]
        common: Common,
        /// The CA's name (its subject CN).
        #[arg(long, default_value = "topologyd control CA")]
        name: String,
        /// How long the CA is valid.
        #[arg(long, default_value_t = 3650)]
        days: u32,
    },
    /// Issue the daemon's certificate (server.pem, server-key.pem) for the names clients use.
    Server {
        #[command(flatten)]
        common: Common,
        /// A DNS name or IP address the daemon is reached by. Repeatable.
        #[arg(long = "san", required = true, value_name = "NAME")]
        sans: Vec<String>,
        /// The files' stem (`STEM.pem`, `STEM-key.pem`).
        #[arg(long, default_value = "server")]
        out: String,
        #[arg(long, default_value_t = 825)]
        days: u32,
    },
    /// Issue a client certificate for NAME (NAME.pem, NAME-key.pem): the daemon maps its
    /// subject CN to a role in `[control] roles`.
    Issue {
        #[command(flatten)]
        common: Common,
        /// The role the certificate is meant for (printed as the `roles` line to add).
        #[arg(long, value_enum)]
        role: Role,
        /// The identity: the subject CN the daemon's `roles` names.
        name: String,
        #[arg(long, default_value_t = 365)]
        days: u32,
    },
}

/// What every `pki` subcommand takes.
#[derive(clap::Args, Debug)]
pub struct Common {
    /// The directory holding the CA and the issued files.
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// Overwrite existing files (a new key replaces the old one).
    #[arg(long)]
    force: bool,
}

/// A control API role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Role {
    /// Plans, pushes, rollbacks, drains.
    Admin,
    /// Reads and plans.
    Reader,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Reader => "reader",
        }
    }
}

/// Runs a `pki` subcommand: 2 when files were written, 1 with the reason on stderr otherwise.
pub fn run(command: &PkiCommand) -> i32 {
    let result = match command {
        PkiCommand::Init { common, name, days } => init(common, name, *days),
        PkiCommand::Server {
            common,
            sans,
            out,
            days,
        } => server(common, sans, out, *days),
        PkiCommand::Issue {
            common,
            role,
            name,
            days,
        } => issue(common, *role, name, *days),
    };
    match result {
        Ok(message) => {
            print!("{message}");
            EXIT_CHANGES_MADE
        }
        Err(message) => {
            eprintln!("topoctl pki: {message}");
            EXIT_USAGE
        }
    }
}

fn init(common: &Common, name: &str, days: u32) -> Result<String, String> {
    let (certificate_path, key_path) = paths(&common.dir, "ca");
    refuse_overwrite(&[&certificate_path, &key_path], common.force)?;
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.use_authority_key_identifier_extension = false;
    validity(&mut params, days);
    let key = KeyPair::generate().map_err(|error| format!("generating the CA key: {error}"))?;
    let certificate = params
        .self_signed(&key)
        .map_err(|error| format!("making the CA certificate: {error}"))?;
    std::fs::create_dir_all(&common.dir)
        .map_err(|error| format!("{}: {error}", common.dir.display()))?;
    write_private(&key_path, &key.serialize_pem(), common.force)?;
    write_private(&certificate_path, &certificate.pem(), common.force)?;
    Ok(format!(
        "CA `{name}`: {} (the daemon's `client_ca`, topoctl's --ca) and {} (keep it offline)\n",
        certificate_path.display(),
        key_path.display()
    ))
}

fn server(common: &Common, sans: &[String], out: &str, days: u32) -> Result<String, String> {
    let names: Vec<SanType> = sans
        .iter()
        .map(|san| match san.parse::<IpAddr>() {
            Ok(address) => Ok(SanType::IpAddress(address)),
            Err(_) => rcgen::string::Ia5String::try_from(san.as_str())
                .map(SanType::DnsName)
                .map_err(|_| format!("--san {san}: not a DNS name or an IP address")),
        })
        .collect::<Result<_, _>>()?;
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, sans[0].as_str());
    params.subject_alt_names = names;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    refuse_ca_stem(out)?;
    // The certificate must verify for every name it was made for, before anything is written.
    let written = sign(common, params, out, days, |ca, certificate| {
        sans.iter()
            .try_for_each(|san| verify_server(ca, certificate, san))
    })?;
    Ok(format!(
        "server certificate for {}: {} and {}\n[control] certificate = \"{}\", private_key = \"{}\", client_ca = \"{}\"\n",
        sans.join(", "),
        written.certificate.display(),
        written.key.display(),
        written.certificate.display(),
        written.key.display(),
        written.ca.display()
    ))
}

fn issue(common: &Common, role: Role, name: &str, days: u32) -> Result<String, String> {
    if name.is_empty() || name.contains(['/', '\0']) {
        return Err(format!(
            "`{name}`: a client name must be non-empty, without `/`"
        ));
    }
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    refuse_ca_stem(name)?;
    let written = sign(common, params, name, days, verify_client)?;
    let certificate = load_der(&written.certificate)?;
    let identity = certificate_identity(&certificate).map_err(|error| error.to_string())?;
    Ok(format!(
        "client certificate for `{identity}`: {} and {}\nadd to the daemon's [control]: roles = {{ \"{identity}\" = \"{}\" }}\n",
        written.certificate.display(),
        written.key.display(),
        role.as_str()
    ))
}

/// The files one issuance wrote.
struct Written {
    ca: PathBuf,
    certificate: PathBuf,
    key: PathBuf,
}

/// A name for the files an issuance writes: a plain file name (no directory), and never one
/// whose files would be the CA's own (`ca.pem`, `ca-key.pem`), even with --force.
fn refuse_ca_stem(stem: &str) -> Result<(), String> {
    if stem.is_empty() || stem.contains(['/', '\\', '\0']) || stem == "." || stem == ".." {
        return Err(format!(
            "`{stem}`: a name for the files must be a plain file name, without `/`"
        ));
    }
    let (certificate, key) = paths(Path::new(""), stem);
    let ca_files = [Path::new("ca.pem"), Path::new("ca-key.pem")];
    if ca_files.contains(&certificate.as_path()) || ca_files.contains(&key.as_path()) {
        return Err(format!(
            "`{stem}` would write over the CA's own files (ca.pem, ca-key.pem); choose another name"
        ));
    }
    Ok(())
}

/// Signs `params` with the CA in `common.dir`, checks the certificate with `verify` (CA,
/// certificate) and only then writes `STEM.pem` and `STEM-key.pem`.
fn sign(
    common: &Common,
    mut params: CertificateParams,
    stem: &str,
    days: u32,
    verify: impl FnOnce(&CertificateDer<'static>, &CertificateDer<'static>) -> Result<(), String>,
) -> Result<Written, String> {
    let (ca_path, ca_key_path) = paths(&common.dir, "ca");
    let (certificate_path, key_path) = paths(&common.dir, stem);
    refuse_overwrite(&[&certificate_path, &key_path], common.force)?;
    let ca_key_pem = std::fs::read_to_string(&ca_key_path).map_err(|error| {
        format!(
            "CA key {}: {error} (make a CA with `topoctl pki init --dir {}`)",
            ca_key_path.display(),
            common.dir.display()
        )
    })?;
    let ca_key = KeyPair::from_pem(&ca_key_pem)
        .map_err(|error| format!("CA key {}: {error}", ca_key_path.display()))?;
    let ca_der = load_der(&ca_path)?;
    // The issuer is the CA `init` made: its subject is its CN alone, its key identifier the
    // hash of its key. The issued certificate is verified against ca.pem below, so a CA made
    // otherwise is reported rather than trusted.
    let ca_name = certificate_identity(&ca_der)
        .map_err(|error| format!("CA certificate {}: {error}", ca_path.display()))?;
    let mut ca_params = CertificateParams::default();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, ca_name);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let issuer = Issuer::new(ca_params, ca_key);
    params.use_authority_key_identifier_extension = true;
    validity(&mut params, days);
    let key = KeyPair::generate().map_err(|error| format!("generating a key: {error}"))?;
    let certificate = params
        .signed_by(&key, &issuer)
        .map_err(|error| format!("signing {stem}: {error}"))?;
    verify(&ca_der, &CertificateDer::from(certificate.der().to_vec()))?;
    write_private(&key_path, &key.serialize_pem(), common.force)?;
    write_private(&certificate_path, &certificate.pem(), common.force)?;
    Ok(Written {
        ca: ca_path,
        certificate: certificate_path,
        key: key_path,
    })
}

/// `DIR/STEM.pem` and `DIR/STEM-key.pem`.
fn paths(directory: &Path, stem: &str) -> (PathBuf, PathBuf) {
    (
        directory.join(format!("{stem}.pem")),
        directory.join(format!("{stem}-key.pem")),
    )
}

fn refuse_overwrite(paths: &[&Path], force: bool) -> Result<(), String> {
    match paths.iter().find(|path| path.exists()) {
        Some(path) if !force => Err(format!(
            "{} exists; not overwritten (a key is never replaced without --force)",
            path.display()
        )),
        _ => Ok(()),
    }
}

/// Valid from an hour ago (clock skew) for `days` days.
fn validity(params: &mut CertificateParams, days: u32) {
    let now_days = crate::render::now_unix() / 86_400;
    let (year, month, day) = civil_from_days(now_days.saturating_sub(1));
    params.not_before = rcgen::date_time_ymd(year_i32(year), month_u8(month), month_u8(day));
    let (year, month, day) = civil_from_days(now_days + u64::from(days));
    params.not_after = rcgen::date_time_ymd(year_i32(year), month_u8(month), month_u8(day));
}

fn year_i32(year: u64) -> i32 {
    i32::try_from(year).unwrap_or(i32::MAX)
}

fn month_u8(value: u64) -> u8 {
    u8::try_from(value).unwrap_or(1)
}

/// Writes `text` to a new file created 0600 (replaced only with `force`), fsync'd.
fn write_private(path: &Path, text: &str, force: bool) -> Result<(), String> {
    let mut options = OpenOptions::new();
    options.write(true).mode(0o600);
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let mut file = options
        .open(path)
        .map_err(|error| format!("{}: {error}", path.display()))?;
    // A file that existed keeps its mode on open: make it 0600 whatever it was.
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .map_err(|error| format!("{}: {error}", path.display()))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|error| format!("{}: {error}", path.display()))
}

fn load_der(path: &Path) -> Result<CertificateDer<'static>, String> {
    CertificateDer::from_pem_file(path)
        .map_err(|error| format!("certificate {}: {error}", path.display()))
}

fn provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(ca: &CertificateDer<'static>) -> Result<std::sync::Arc<rustls::RootCertStore>, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(ca.clone())
        .map_err(|error| format!("the CA certificate is not usable: {error}"))?;
    Ok(std::sync::Arc::new(roots))
}

/// The certificate verifies as a server certificate for `name` under the CA.
fn verify_server(
    ca: &CertificateDer<'static>,
    certificate: &CertificateDer<'static>,
    name: &str,
) -> Result<(), String> {
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(roots(ca)?, provider())
            .build()
            .map_err(|error| error.to_string())?;
    let server_name = ServerName::try_from(name.to_owned()).map_err(|error| error.to_string())?;
    rustls::client::danger::ServerCertVerifier::verify_server_cert(
        verifier.as_ref(),
        certificate,
        &[],
        &server_name,
        &[],
        UnixTime::now(),
    )
    .map(|_| ())
    .map_err(|error| {
        format!("the issued certificate does not verify for `{name}` against the CA: {error}")
    })
}

/// The certificate verifies as a client certificate under the CA.
fn verify_client(
    ca: &CertificateDer<'static>,
    certificate: &CertificateDer<'static>,
) -> Result<(), String> {
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(roots(ca)?, provider())
            .build()
            .map_err(|error| error.to_string())?;
    verifier
        .verify_client_cert(certificate, &[], UnixTime::now())
        .map(|_| ())
        .map_err(|error| format!("the issued certificate does not verify against the CA: {error}"))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn common(directory: &Path, force: bool) -> Common {
        Common {
            dir: directory.to_path_buf(),
            force,
        }
    }

    #[test]
    fn a_ca_issues_verifiable_v3_certificates_in_private_files_and_never_overwrites_keys() {
        let Ok(directory) = tempfile::tempdir() else {
            panic!("a temporary directory")
        };
        let dir = directory.path();
        assert!(init(&common(dir, false), "test CA", 30).is_ok());
        let server = server(
            &common(dir, false),
            &["localhost".into(), "127.0.0.1".into()],
            "server",
            30,
        );
        assert!(
            server.as_ref().is_ok_and(|text| text.contains("client_ca")),
            "{server:?}"
        );
        let client = issue(&common(dir, false), Role::Admin, "alice", 30);
        assert!(
            client
                .as_ref()
                .is_ok_and(|text| text.contains("roles = { \"alice\" = \"admin\" }")),
            "{client:?}"
        );
        for file in [
            "ca.pem",
            "ca-key.pem",
            "server.pem",
            "server-key.pem",
            "alice.pem",
            "alice-key.pem",
        ] {
            let mode =
                std::fs::metadata(dir.join(file)).map(|meta| meta.permissions().mode() & 0o777);
            assert_eq!(mode.ok(), Some(0o600), "{file}");
        }
        // X.509 v3: the version field [0] EXPLICIT INTEGER 2 right after the TBS header.
        let der = load_der(&dir.join("alice.pem")).unwrap_or_else(|error| panic!("{error}"));
        assert!(
            der.windows(5)
                .any(|window| window == [0xa0, 0x03, 0x02, 0x01, 0x02])
        );
        let before = std::fs::read(dir.join("alice-key.pem")).ok();
        let again = issue(&common(dir, false), Role::Reader, "alice", 30);
        assert!(again.is_err_and(|error| error.contains("--force")));
        assert_eq!(
            std::fs::read(dir.join("alice-key.pem")).ok(),
            before,
            "key overwritten"
        );
        assert!(init(&common(dir, false), "test CA", 30).is_err());
        assert!(issue(&common(dir, true), Role::Reader, "alice", 30).is_ok());
        assert_ne!(std::fs::read(dir.join("alice-key.pem")).ok(), before);
        // A certificate from another CA is refused by this one.
        let Ok(other) = tempfile::tempdir() else {
            panic!("a temporary directory")
        };
        assert!(init(&common(other.path(), false), "other CA", 30).is_ok());
        assert!(issue(&common(other.path(), false), Role::Admin, "mallory", 30).is_ok());
        let ca = load_der(&dir.join("ca.pem")).unwrap_or_else(|error| panic!("{error}"));
        let foreign =
            load_der(&other.path().join("mallory.pem")).unwrap_or_else(|error| panic!("{error}"));
        assert!(verify_client(&ca, &foreign).is_err());
        assert!(
            verify_server(
                &ca,
                &load_der(&dir.join("server.pem")).unwrap_or_else(|e| panic!("{e}")),
                "example.net"
            )
            .is_err()
        );
    }

    #[test]
    fn nothing_is_written_for_a_certificate_that_does_not_verify_nor_over_the_ca() {
        let Ok(directory) = tempfile::tempdir() else {
            panic!("a temporary directory")
        };
        let dir = directory.path();
        assert!(init(&common(dir, false), "test CA", 30).is_ok());
        let ca_key = std::fs::read(dir.join("ca-key.pem")).ok();
        // A wildcard is a valid IA5 string but no name a TLS client verifies against.
        let wildcard = server(&common(dir, false), &["*.example.net".into()], "web", 30);
        assert!(wildcard.is_err(), "{wildcard:?}");
        assert!(!dir.join("web.pem").exists() && !dir.join("web-key.pem").exists());
        for force in [false, true] {
            for name in ["ca", "ca-key"] {
                assert!(issue(&common(dir, force), Role::Admin, name, 30).is_err());
                assert!(server(&common(dir, force), &["localhost".into()], name, 30).is_err());
            }
            for out in ["./ca", "x/../ca", "sub/web"] {
                assert!(server(&common(dir, force), &["localhost".into()], out, 30).is_err());
            }
        }
        assert_eq!(std::fs::read(dir.join("ca-key.pem")).ok(), ca_key);
    }
}
