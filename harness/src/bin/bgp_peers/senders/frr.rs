//! FRR bgpd (without zebra) as a sender: one `network` per route, neighbors shut down until
//! the BGP table holds them all; withdraw-all is a deny entry in the outbound route-maps.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use super::{Sender, SenderSetup};
use crate::Result;
use crate::process::{Process, run_command, write_file};
use crate::receiver::first_number;
use crate::routes::{NEXT_HOP_V4, NEXT_HOP_V6, RECEIVER_ASN, SENDER_ASN, ipv4_prefix, ipv6_prefix};

pub(crate) struct Frr {
    pub(crate) process: Process,
    pub(crate) directory: PathBuf,
    pub(crate) neighbors: Vec<SocketAddr>,
}

impl Frr {
    pub(crate) fn vtysh(&self, lines: &[&str]) -> Result<String> {
        let socket = self.directory.to_string_lossy().into_owned();
        let mut arguments = vec!["--vty_socket", &socket, "-d", "bgpd"];
        for line in lines {
            arguments.push("-c");
            arguments.push(line);
        }
        run_command("vtysh", &arguments, Duration::from_secs(600))
    }

    pub(crate) fn start(setup: &SenderSetup) -> Result<Frr> {
        let directory = setup.directory.clone();
        let mut config = String::with_capacity((setup.ipv4 + setup.ipv6) as usize * 32);
        config.push_str("bgp route-map delay-timer 0\n!\n");
        let _ = writeln!(
            config,
            "route-map OUT4 permit 10\n set ip next-hop {NEXT_HOP_V4}\nexit"
        );
        let _ = writeln!(
            config,
            "route-map OUT6 permit 10\n set ipv6 next-hop global {NEXT_HOP_V6}\nexit"
        );
        let _ = writeln!(
            config,
            "router bgp {SENDER_ASN}\n bgp router-id {}",
            setup.address
        );
        config.push_str(" no bgp ebgp-requires-policy\n no bgp network import-check\n no bgp default ipv4-unicast\n bgp allow-martian-nexthop\n bgp graceful-restart-disable\n");
        for receiver in &setup.receivers {
            let neighbor = receiver.ip();
            let _ = writeln!(config, " neighbor {neighbor} remote-as {RECEIVER_ASN}");
            let _ = writeln!(config, " neighbor {neighbor} port {}", receiver.port());
            let _ = writeln!(
                config,
                " neighbor {neighbor} update-source {}",
                setup.address
            );
            let _ = writeln!(config, " neighbor {neighbor} disable-connected-check");
            let _ = writeln!(config, " neighbor {neighbor} timers 80 240");
            let _ = writeln!(config, " neighbor {neighbor} timers connect 1");
            let _ = writeln!(config, " neighbor {neighbor} advertisement-interval 0");
            let _ = writeln!(config, " neighbor {neighbor} shutdown");
        }
        for (afi, count, route_map) in [("ipv4", setup.ipv4, "OUT4"), ("ipv6", setup.ipv6, "OUT6")]
        {
            let _ = writeln!(config, " address-family {afi} unicast");
            for receiver in &setup.receivers {
                let _ = writeln!(config, "  neighbor {} activate", receiver.ip());
                let _ = writeln!(
                    config,
                    "  neighbor {} route-map {route_map} out",
                    receiver.ip()
                );
            }
            for index in 0..count {
                let prefix = if afi == "ipv4" {
                    ipv4_prefix(index)
                } else {
                    ipv6_prefix(index)
                };
                let _ = writeln!(config, "  network {prefix}");
            }
            config.push_str(" exit-address-family\n");
        }
        config.push_str("exit\n!\n");
        let conf = directory.join("bgpd.conf");
        write_file(&conf, &config)?;
        drop(config);
        let mut command = Command::new("/usr/lib/frr/bgpd");
        command
            .arg("-f")
            .arg(&conf)
            .arg("-i")
            .arg(directory.join("bgpd.pid"))
            .arg("--vty_socket")
            .arg(&directory)
            .args(["-Z", "-S", "-u", "root", "-g", "root", "-P", "0", "-l"])
            .arg(setup.address.to_string())
            .args(["-p", "0"]);
        let process = setup.spawn("FRR bgpd", command, "daemon.log")?;
        let frr = Frr {
            process,
            directory,
            neighbors: setup.receivers.clone(),
        };
        let expected = u64::from(setup.ipv4 + setup.ipv6);
        let deadline = Instant::now() + Duration::from_secs(1800);
        loop {
            std::thread::sleep(Duration::from_millis(500));
            let count = ["ipv4", "ipv6"]
                .iter()
                .map(|afi| {
                    frr.vtysh(&[&format!("show bgp {afi} unicast statistics")])
                        .ok()
                        .and_then(|text| {
                            text.lines().find_map(|line| {
                                line.trim()
                                    .strip_prefix("Total Prefixes")
                                    .map(first_number_after_colon)
                            })
                        })
                        .unwrap_or(0)
                })
                .sum::<u64>();
            if count >= expected {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("FRR loaded only {count} of {expected} networks"));
            }
        }
        Ok(frr)
    }
}

pub(crate) fn first_number_after_colon(text: &str) -> u64 {
    text.rsplit(':').next().map_or(0, first_number)
}

impl Sender for Frr {
    fn connect(&mut self) -> Result<()> {
        let mut lines = vec![
            "configure terminal".to_string(),
            format!("router bgp {SENDER_ASN}"),
        ];
        for neighbor in &self.neighbors {
            lines.push(format!("no neighbor {} shutdown", neighbor.ip()));
        }
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        self.vtysh(&lines).map(|_| ())
    }

    fn withdraw_all(&mut self) -> Result<()> {
        self.vtysh(&[
            "configure terminal",
            "route-map OUT4 deny 5",
            "exit",
            "route-map OUT6 deny 5",
            "end",
            "clear bgp ipv4 unicast * soft out",
            "clear bgp ipv6 unicast * soft out",
        ])
        .map(|_| ())
    }

    fn groups(&self) -> Vec<u32> {
        vec![self.process.pid()]
    }

    fn method(&self) -> String {
        "bgpd -Z (no zebra), one `network P` per route (no import-check), outbound route-map setting the next hops; neighbor `shutdown` until every network is in the BGP table; withdraw = a `deny 5` entry in both outbound route-maps (route-map delay-timer 0)".into()
    }
}
