//! IRRd launcher: a real IRRd 4 whois server (PyPI `irrd`, installed by `scripts/setup.sh` into
//! its own virtualenv, [`venv`]) with the PostgreSQL and Redis it needs (Debian packages), all
//! three started here on one fresh loopback address from one temporary directory, and stopped
//! (killed) on drop. Nothing touches a system cluster or a system Redis: PostgreSQL gets a new
//! cluster made by `initdb` in the temporary directory, run as the `postgres` user (it refuses
//! root) with TCP on loopback only and no Unix socket; IRRd runs as `nobody` (it refuses root
//! without a `user:` to drop to), Redis keeps nothing on disk.
//!
//! Start-up: `initdb`, PostgreSQL, Redis, `irrd_database_upgrade` (the schema), one
//! `irrd_load_database` per source (the RPSL text a test gives), then `irrd`, ready when it
//! answers `!v`. [`Irrd::startup`] says how long each step took. [`Irrd::load`] replaces a
//! source's objects while IRRd runs; `!r` queries read PostgreSQL, so the next query sees them.
//! IRRd's own RPKI import is disabled (its default would fetch from the Internet).
//!
//! Owns only the launcher; what a whois client makes of the answers is the test's business.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::process::{self, DaemonProcess};
use super::{Daemon, Error, Result, STARTUP_TIMEOUT, alloc};

/// Where `scripts/setup.sh` installs IRRd's virtualenv; `TOPOLOGYD_IRRD_VENV` overrides it.
pub const DEFAULT_VENV: &str = "/opt/topologyd-test-irrd";
/// Schema creation and loads are Python start-ups plus SQL: generous, but bounded.
const TOOL_TIMEOUT: Duration = Duration::from_secs(120);
/// IRRd imports a lot of Python before it listens.
const IRRD_STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// IRRd's virtualenv.
pub fn venv() -> PathBuf {
    std::env::var_os("TOPOLOGYD_IRRD_VENV")
        .map_or_else(|| PathBuf::from(DEFAULT_VENV), PathBuf::from)
}

/// How long each start-up step took.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IrrdStartup {
    /// `initdb` and PostgreSQL until it accepts a query, and the database created.
    pub postgres: Duration,
    /// Redis until it answers PING.
    pub redis: Duration,
    /// `irrd_database_upgrade`.
    pub schema: Duration,
    /// Every `irrd_load_database`.
    pub load: Duration,
    /// `irrd` until it answers `!v`.
    pub irrd: Duration,
}

impl IrrdStartup {
    /// All steps together.
    pub fn total(&self) -> Duration {
        self.postgres + self.redis + self.schema + self.load + self.irrd
    }
}

/// A running IRRd with its PostgreSQL and Redis; dropping it kills all three.
#[derive(Debug)]
pub struct Irrd {
    whois: SocketAddr,
    // Declared in the order they are dropped: IRRd before the servers it uses.
    irrd: DaemonProcess,
    redis: DaemonProcess,
    postgres: DaemonProcess,
    config: PathBuf,
    startup: IrrdStartup,
    directory: tempfile::TempDir,
}

impl Irrd {
    /// Starts everything and loads `sources` (name, RPSL text); every name becomes a source
    /// IRRd serves by default.
    pub fn start(sources: &[(&str, &str)]) -> Result<Irrd> {
        let directory = process::temp_dir(Daemon::Irrd, "topologyd-irrd-")?;
        let root = directory.path().to_path_buf();
        set_mode(&root, 0o755)?;
        let ip = IpAddr::V4(alloc::loopback_v4());
        let mut startup = IrrdStartup::default();

        let began = Instant::now();
        let postgres_port = alloc::free_port(ip);
        let postgres = start_postgres(&root, ip, postgres_port)?;
        startup.postgres = began.elapsed();

        let began = Instant::now();
        let redis_port = alloc::free_port(ip);
        let redis = start_redis(&root, SocketAddr::new(ip, redis_port))?;
        startup.redis = began.elapsed();

        let whois = SocketAddr::new(ip, alloc::free_port(ip));
        let http = SocketAddr::new(ip, alloc::free_port(ip));
        let config = root.join("irrd.yaml");
        let names: Vec<&str> = sources.iter().map(|(name, _)| *name).collect();
        for owned in ["pids", "gnupg"] {
            std::fs::create_dir_all(root.join(owned)).map_err(io("create a directory"))?;
            chown(&root.join(owned), "nobody")?;
        }
        let text = configuration(&root, &names, postgres_port, redis_port, ip, whois, http);
        std::fs::write(&config, text).map_err(io("write irrd.yaml"))?;
        set_mode(&config, 0o644)?;

        let began = Instant::now();
        run_tool("irrd_database_upgrade", &[&"--config", &config.as_path()])?;
        startup.schema = began.elapsed();

        let began = Instant::now();
        for (name, rpsl) in sources {
            load_source(&root, &config, name, rpsl)?;
        }
        startup.load = began.elapsed();

        let began = Instant::now();
        let log = root.join("irrd.log");
        let mut command = Command::new("runuser");
        command
            .args(["-u", "nobody", "--"])
            .arg(venv().join("bin/irrd"))
            .arg("--config")
            .arg(&config)
            .arg("--foreground")
            .current_dir(&root);
        let irrd = DaemonProcess::spawn(Daemon::Irrd, command, &log)?;
        super::poll(
            Daemon::Irrd,
            "IRRd answering !v",
            IRRD_STARTUP_TIMEOUT,
            || process::file_tail(&log),
            || {
                irrd.check_running()?;
                Ok(match whois_query(whois, "!v\n", Duration::from_secs(2)) {
                    Ok(answer) if answer.starts_with('A') => Ok(()),
                    Ok(answer) => Err(format!("answered {answer:?}")),
                    Err(error) => Err(error.to_string()),
                })
            },
        )?;
        startup.irrd = began.elapsed();
        Ok(Irrd {
            whois,
            irrd,
            redis,
            postgres,
            config,
            startup,
            directory,
        })
    }

    /// IRRd's whois listener.
    pub fn whois(&self) -> SocketAddr {
        self.whois
    }

    /// How long the start-up steps took.
    pub fn startup(&self) -> IrrdStartup {
        self.startup
    }

    /// Replaces every object of `source` (configured at start) with those in `rpsl`.
    pub fn load(&self, source: &str, rpsl: &str) -> Result<()> {
        load_source(self.directory.path(), &self.config, source, rpsl)
    }

    /// The end of IRRd's log (and PostgreSQL's and Redis's), for failure messages.
    pub fn log_tail(&self) -> String {
        format!(
            "--- irrd ---\n{}\n--- redis ---\n{}\n--- postgres ---\n{}",
            self.irrd.log_tail(),
            self.redis.log_tail(),
            self.postgres.log_tail()
        )
    }
}

/// One query over a fresh connection; the text up to the server's close.
pub fn whois_query(address: SocketAddr, query: &str, timeout: Duration) -> std::io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&address, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(query.as_bytes())?;
    let mut answer = Vec::new();
    stream.take(1 << 20).read_to_end(&mut answer)?;
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

/// A new cluster in `root/pg/data`, run as `postgres` on `ip:port` (TCP only), with the `irrd`
/// database created.
fn start_postgres(root: &Path, ip: IpAddr, port: u16) -> Result<DaemonProcess> {
    const DAEMON: Daemon = Daemon::Postgres;
    let bin = postgres_bin()?;
    let pg = root.join("pg");
    std::fs::create_dir_all(&pg).map_err(io("create pg/"))?;
    chown(&pg, "postgres")?;
    set_mode(&pg, 0o700)?;
    let data = pg.join("data");
    process::run(
        DAEMON,
        Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ]),
        TOOL_TIMEOUT,
    )?;
    let mut command = Command::new("runuser");
    command
        .args(["-u", "postgres", "--"])
        .arg(bin.join("postgres"))
        .arg("-D")
        .arg(&data)
        .arg("-h")
        .arg(ip.to_string())
        .arg("-p")
        .arg(port.to_string())
        .args(["-k", ""])
        .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
        .args(["-c", "full_page_writes=off", "-c", "max_connections=100"]);
    let postgres = DaemonProcess::spawn(DAEMON, command, &root.join("postgres.log"))?;
    let psql = |database: &str, sql: &str| {
        let mut command = Command::new("psql");
        command
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(ip.to_string())
            .arg("-p")
            .arg(port.to_string())
            .args(["-U", "postgres", "-d", database, "-c", sql]);
        process::run(DAEMON, &mut command, Duration::from_secs(10))
    };
    super::poll(
        DAEMON,
        "PostgreSQL accepting queries",
        STARTUP_TIMEOUT,
        || process::file_tail(&root.join("postgres.log")),
        || {
            postgres.check_running()?;
            Ok(psql("postgres", "SELECT 1")
                .map(drop)
                .map_err(|error| error.to_string()))
        },
    )?;
    psql("postgres", "CREATE DATABASE irrd")?;
    Ok(postgres)
}

/// The newest `/usr/lib/postgresql/<version>/bin` (Debian's layout).
fn postgres_bin() -> Result<PathBuf> {
    let versions = std::fs::read_dir("/usr/lib/postgresql").map_err(|source| Error::Spawn {
        daemon: Daemon::Postgres,
        command: "/usr/lib/postgresql/*/bin/postgres (is postgresql installed? scripts/setup.sh)"
            .to_string(),
        source,
    })?;
    versions
        .flatten()
        .filter_map(|entry| {
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("postgres").exists().then_some((version, bin))
        })
        .max()
        .map(|(_, bin)| bin)
        .ok_or_else(|| Error::Spawn {
            daemon: Daemon::Postgres,
            command: "/usr/lib/postgresql/*/bin/postgres".to_string(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        })
}

/// Redis on `address`, nothing saved to disk.
fn start_redis(root: &Path, address: SocketAddr) -> Result<DaemonProcess> {
    const DAEMON: Daemon = Daemon::Redis;
    let mut command = Command::new("redis-server");
    command
        .arg("--bind")
        .arg(address.ip().to_string())
        .arg("--port")
        .arg(address.port().to_string())
        .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
        .arg("--dir")
        .arg(root);
    let log = root.join("redis.log");
    let redis = DaemonProcess::spawn(DAEMON, command, &log)?;
    super::poll(
        DAEMON,
        "Redis answering PING",
        STARTUP_TIMEOUT,
        || process::file_tail(&log),
        || {
            redis.check_running()?;
            Ok(
                match whois_query(address, "PING\r\nQUIT\r\n", Duration::from_secs(1)) {
                    Ok(answer) if answer.starts_with("+PONG") => Ok(()),
                    Ok(answer) => Err(format!("answered {answer:?}")),
                    Err(error) => Err(error.to_string()),
                },
            )
        },
    )?;
    Ok(redis)
}

/// Writes `rpsl` to a file and loads it as the whole of `source`.
fn load_source(root: &Path, config: &Path, source: &str, rpsl: &str) -> Result<()> {
    let file = root.join(format!("{source}.db"));
    std::fs::write(&file, rpsl).map_err(io("write an RPSL file"))?;
    run_tool(
        "irrd_load_database",
        &[&"--config", &config, &"--source", &source, &file.as_path()],
    )
}

/// Runs one of IRRd's tools from its virtualenv.
fn run_tool(tool: &str, args: &[&dyn AsRef<std::ffi::OsStr>]) -> Result<()> {
    let mut command = Command::new(venv().join("bin").join(tool));
    for arg in args {
        command.arg(arg);
    }
    process::run(Daemon::Irrd, &mut command, TOOL_TIMEOUT).map(drop)
}

/// IRRd's configuration: every source non-authoritative and served by default, no RPKI import,
/// no mail sent (the SMTP host is never used: nothing submits updates).
fn configuration(
    root: &Path,
    sources: &[&str],
    postgres_port: u16,
    redis_port: u16,
    ip: IpAddr,
    whois: SocketAddr,
    http: SocketAddr,
) -> String {
    let root = root.display();
    let mut text = format!(
        "irrd:\n  database_url: 'postgresql://postgres@{ip}:{postgres_port}/irrd'\n  redis_url: 'redis://{ip}:{redis_port}/0'\n  piddir: {root}/pids\n\
         \x20 email:\n    from: irrd@example.invalid\n    smtp: {ip}\n\
         \x20 auth:\n    gnupg_keyring: {root}/gnupg\n\
         \x20 rpki:\n    roa_source: null\n\
         \x20 log:\n    level: INFO\n\
         \x20 server:\n    http:\n      interface: '{ip}'\n      port: {}\n      url: 'http://{http}/'\n      workers: 1\n\
         \x20   whois:\n      interface: '{ip}'\n      port: {}\n      max_connections: 10\n\
         \x20 sources_default: [{}]\n  sources:\n",
        http.port(),
        whois.port(),
        sources.join(", ")
    );
    for source in sources {
        text.push_str(&format!(
            "    {source}:\n      authoritative: false\n      keep_journal: false\n"
        ));
    }
    text
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(io("set permissions"))
}

fn chown(path: &Path, user: &str) -> Result<()> {
    process::run(
        Daemon::Irrd,
        Command::new("chown").arg(format!("{user}:")).arg(path),
        Duration::from_secs(10),
    )
    .map(drop)
}

fn io(context: &'static str) -> impl Fn(std::io::Error) -> Error {
    move |source| Error::Io {
        daemon: Daemon::Irrd,
        context: context.to_string(),
        source,
    }
}
