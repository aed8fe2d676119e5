//! GoBGP as a sender: an MRT TABLE_DUMP_V2 file injected into the global RIB while the
//! neighbors are admin-down; withdraw-all deletes the global RIB.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use topologyd_harness::peers::alloc::free_port;

use super::{Sender, SenderSetup};
use crate::Result;
use crate::process::{Process, run_command, write_file};
use crate::routes::{NEXT_HOP_V4, NEXT_HOP_V6, RECEIVER_ASN, SENDER_ASN, ipv6_octets};

pub(crate) struct Gobgp {
    pub(crate) process: Process,
    pub(crate) api: String,
    pub(crate) neighbors: Vec<SocketAddr>,
}

/// An MRT TABLE_DUMP_V2 file (RFC 6396) holding every route once, from one peer, with
/// ORIGIN IGP, an empty AS_PATH and the benchmark's next hops; `gobgp mrt inject global` reads
/// it into the global RIB.
pub(crate) fn mrt_file(path: &Path, ipv4: u32, ipv6: u32) -> Result<()> {
    fn record(out: &mut Vec<u8>, subtype: u16, body: &[u8]) {
        out.extend_from_slice(&0u32.to_be_bytes());
        out.extend_from_slice(&13u16.to_be_bytes());
        out.extend_from_slice(&subtype.to_be_bytes());
        out.extend_from_slice(&u32::try_from(body.len()).unwrap_or(0).to_be_bytes());
        out.extend_from_slice(body);
    }
    let mut out = Vec::with_capacity((ipv4 + ipv6) as usize * 40);
    // PEER_INDEX_TABLE: collector id, empty view name, one peer (IPv4 address, 4-octet AS).
    let mut body = vec![10, 255, 0, 4, 0, 0, 0, 1, 0x02, 10, 255, 0, 4, 127, 0, 0, 1];
    body.extend_from_slice(&SENDER_ASN.to_be_bytes());
    record(&mut out, 1, &body);
    let origin = [0x40, 1, 1, 0];
    let as_path = [0x40, 2, 0];
    let mut attributes_v4 = Vec::new();
    attributes_v4.extend_from_slice(&origin);
    attributes_v4.extend_from_slice(&as_path);
    attributes_v4.extend_from_slice(&[0x40, 3, 4]);
    attributes_v4.extend_from_slice(&NEXT_HOP_V4.octets());
    let mut attributes_v6 = Vec::new();
    attributes_v6.extend_from_slice(&origin);
    attributes_v6.extend_from_slice(&as_path);
    // GoBGP's MRT reader takes MP_REACH_NLRI in its full UPDATE form (AFI, SAFI, next hop,
    // reserved octet, no NLRI), not RFC 6396 §4.3.4's abbreviated one.
    attributes_v6.extend_from_slice(&[0x80, 14, 21, 0, 2, 1, 16]);
    attributes_v6.extend_from_slice(&NEXT_HOP_V6.octets());
    attributes_v6.push(0);
    let entry = |body: &mut Vec<u8>, attributes: &[u8]| {
        body.extend_from_slice(&1u16.to_be_bytes());
        body.extend_from_slice(&0u16.to_be_bytes());
        body.extend_from_slice(&0u32.to_be_bytes());
        body.extend_from_slice(&u16::try_from(attributes.len()).unwrap_or(0).to_be_bytes());
        body.extend_from_slice(attributes);
    };
    for index in 0..ipv4 {
        let mut body = Vec::with_capacity(32);
        body.extend_from_slice(&index.to_be_bytes());
        body.push(24);
        body.extend_from_slice(&((11u32 << 24).wrapping_add(index << 8)).to_be_bytes()[..3]);
        entry(&mut body, &attributes_v4);
        record(&mut out, 2, &body);
    }
    for index in 0..ipv6 {
        let mut body = Vec::with_capacity(48);
        body.extend_from_slice(&(ipv4 + index).to_be_bytes());
        body.push(48);
        body.extend_from_slice(&ipv6_octets(index));
        entry(&mut body, &attributes_v6);
        record(&mut out, 4, &body);
    }
    std::fs::write(path, out).map_err(|error| format!("{}: {error}", path.display()))
}

impl Gobgp {
    pub(crate) fn gobgp(&self, arguments: &[&str]) -> Result<String> {
        let mut all = vec!["--target", &self.api];
        all.extend_from_slice(arguments);
        run_command("gobgp", &all, Duration::from_secs(1800))
    }

    pub(crate) fn start(setup: &SenderSetup) -> Result<Gobgp> {
        let directory = &setup.directory;
        let mut config = String::new();
        let _ = writeln!(
            config,
            "[global.config]\n  as = {SENDER_ASN}\n  router-id = \"{}\"\n  port = -1",
            setup.address
        );
        for receiver in &setup.receivers {
            let _ = writeln!(
                config,
                "[[neighbors]]\n  [neighbors.config]\n    neighbor-address = \"{}\"\n    peer-as = {RECEIVER_ASN}\n    admin-down = true\n  [neighbors.transport.config]\n    local-address = \"{}\"\n    remote-port = {}\n  [neighbors.timers.config]\n    hold-time = 240\n    keepalive-interval = 80\n    connect-retry = 1\n  [[neighbors.afi-safis]]\n    [neighbors.afi-safis.config]\n      afi-safi-name = \"ipv4-unicast\"\n  [[neighbors.afi-safis]]\n    [neighbors.afi-safis.config]\n      afi-safi-name = \"ipv6-unicast\"",
                receiver.ip(),
                setup.address,
                receiver.port()
            );
        }
        let conf = directory.join("gobgpd.toml");
        write_file(&conf, &config)?;
        let mrt = directory.join("routes.mrt");
        mrt_file(&mrt, setup.ipv4, setup.ipv6)?;
        let api = format!("{}:{}", setup.address, free_port(IpAddr::V4(setup.address)));
        let mut command = Command::new("gobgpd");
        command
            .arg("-f")
            .arg(&conf)
            .args(["-t", "toml", "-p", "--pprof-disable"])
            .arg(format!("--api-hosts={api}"));
        let process = setup.spawn("gobgpd", command, "daemon.log")?;
        let gobgp = Gobgp {
            process,
            api,
            neighbors: setup.receivers.clone(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while gobgp.gobgp(&["global"]).is_err() {
            if Instant::now() > deadline {
                return Err("gobgpd's API never answered".into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let mrt_path = mrt.to_string_lossy().into_owned();
        gobgp.gobgp(&["mrt", "inject", "global", &mrt_path])?;
        let expected = u64::from(setup.ipv4 + setup.ipv6);
        // The server applies injected paths asynchronously: wait until the RIB holds them all.
        let deadline = Instant::now() + Duration::from_secs(1800);
        loop {
            let count: u64 = ["ipv4", "ipv6"]
                .iter()
                .map(|afi| {
                    gobgp
                        .gobgp(&["global", "rib", "summary", "-a", afi])
                        .map(|text| {
                            text.split(|c: char| !c.is_ascii_digit())
                                .filter_map(|word| word.parse::<u64>().ok())
                                .max()
                                .unwrap_or(0)
                        })
                        .unwrap_or(0)
                })
                .sum();
            if count >= expected {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("GoBGP holds {count} of {expected} injected routes"));
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        Ok(gobgp)
    }
}

impl Sender for Gobgp {
    fn connect(&mut self) -> Result<()> {
        for neighbor in self.neighbors.clone() {
            self.gobgp(&["neighbor", &neighbor.ip().to_string(), "enable"])?;
        }
        Ok(())
    }

    fn withdraw_all(&mut self) -> Result<()> {
        self.gobgp(&["global", "rib", "-a", "ipv4", "del", "all"])?;
        self.gobgp(&["global", "rib", "-a", "ipv6", "del", "all"])?;
        Ok(())
    }

    fn groups(&self) -> Vec<u32> {
        vec![self.process.pid()]
    }

    fn method(&self) -> String {
        "`gobgp mrt inject global` of a TABLE_DUMP_V2 file into the global RIB while the neighbor is admin-down, then `gobgp neighbor ADDR enable`; withdraw = `gobgp global rib -a ipv4|ipv6 del all`".into()
    }
}
