//! BIRD 2 as a sender: `protocol static` routes exported to disabled sessions, enabled once
//! the statics are loaded; withdraw-all disables the statics.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use topologyd_harness::peers::alloc::free_port;

use super::{Sender, SenderSetup};
use crate::Result;
use crate::process::Process;
use crate::receiver::{BirdControl, first_number, launch_bird};
use crate::routes::{NEXT_HOP_V4, NEXT_HOP_V6, RECEIVER_ASN, SENDER_ASN, ipv4_prefix, ipv6_prefix};

pub(crate) struct BirdSender {
    pub(crate) _process: Process,
    pub(crate) control: BirdControl,
    pub(crate) group: u32,
}

impl BirdSender {
    pub(crate) fn start(setup: &SenderSetup) -> Result<BirdSender> {
        let directory = &setup.directory;
        let mut config = String::with_capacity((setup.ipv4 + setup.ipv6) as usize * 40);
        let _ = writeln!(
            config,
            "log \"{}\" all;",
            directory.join("bird.log").display()
        );
        let _ = writeln!(config, "router id {};\nprotocol device {{}}", setup.address);
        config.push_str("protocol static st4 {\n  ipv4;\n");
        for index in 0..setup.ipv4 {
            let _ = writeln!(config, "  route {} blackhole;", ipv4_prefix(index));
        }
        config.push_str("}\nprotocol static st6 {\n  ipv6;\n");
        for index in 0..setup.ipv6 {
            let _ = writeln!(config, "  route {} blackhole;", ipv6_prefix(index));
        }
        config.push_str("}\n");
        for (index, receiver) in setup.receivers.iter().enumerate() {
            let port = free_port(IpAddr::V4(setup.address));
            let _ = writeln!(
                config,
                "protocol bgp s{index} {{\n  disabled yes;\n  local {} port {port} as {SENDER_ASN};\n  neighbor {} port {} as {RECEIVER_ASN};\n  strict bind yes;\n  multihop 1;\n  hold time 240;\n  connect delay time 1;\n  connect retry time 2;\n  graceful restart no;\n{}  ipv4 {{ import none; export all; next hop address {NEXT_HOP_V4}; }};\n  ipv6 {{ import none; export all; next hop address {NEXT_HOP_V6}; }};\n}}",
                setup.address,
                receiver.ip(),
                receiver.port(),
                if std::env::var_os("BGP_PEERS_DEBUG").is_some() {
                    "  debug all;\n"
                } else {
                    ""
                }
            );
        }
        let wait = Duration::from_secs(600);
        let (process, mut control) = launch_bird(
            "sender BIRD",
            directory,
            config,
            setup.pids.as_deref(),
            wait,
            Duration::from_millis(100),
        )?;
        let group = process.pid();
        let deadline = Instant::now() + wait;
        // Wait until both static protocols have put every route into the tables.
        let expected = u64::from(setup.ipv4 + setup.ipv6);
        loop {
            let lines = control.command("show protocols all \"st*\"")?;
            let imported: u64 = lines
                .iter()
                .filter_map(|line| line.trim().strip_prefix("Routes:"))
                .map(first_number)
                .sum();
            if imported >= expected {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "sender BIRD loaded only {imported} of {expected} static routes"
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(BirdSender {
            _process: process,
            control,
            group,
        })
    }
}

impl Sender for BirdSender {
    fn connect(&mut self) -> Result<()> {
        self.control.command("enable \"s*\"").map(|_| ())
    }

    fn withdraw_all(&mut self) -> Result<()> {
        self.control.command("disable \"st*\"").map(|_| ())
    }

    fn groups(&self) -> Vec<u32> {
        vec![self.group]
    }

    fn method(&self) -> String {
        "protocol static (one `route P blackhole;` per route) into master4/6, `export all` with `next hop address`; session enabled once the statics are loaded; withdraw = `disable \"st*\"`".into()
    }
}
