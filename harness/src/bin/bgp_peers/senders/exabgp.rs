//! ExaBGP as a sender: every route in the neighbor's `static` block (or announced by the API
//! process); withdraw-all is the API process writing withdraw lines.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use topologyd_harness::peers::exabgp_command;

use super::{Sender, SenderSetup};
use crate::Result;
use crate::process::{Process, run_command, write_file};
use crate::routes::{NEXT_HOP_V4, NEXT_HOP_V6, RECEIVER_ASN, SENDER_ASN, ipv4_prefix, ipv6_prefix};

pub(crate) struct Exabgp {
    pub(crate) process: Process,
    pub(crate) go: PathBuf,
}

/// The API process: once the neighbor is up, announce every prefix in `announce attributes ...
/// nlri` lines of 1,000 prefixes (one attribute set each); when the file `withdraw.go` appears,
/// withdraw them the same way.
pub(crate) const EXABGP_SCRIPT: &str = r#"#!/usr/bin/python3
import ipaddress, os, sys, threading, time
ipv4, ipv6, directory = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
up = threading.Event()
def events():
    for line in sys.stdin:
        if '"up"' in line or ' up' in line:
            up.set()
threading.Thread(target=events, daemon=True).start()
def prefixes():
    v4 = [str(ipaddress.IPv4Address((11 << 24) + (i << 8))) + "/24" for i in range(ipv4)]
    v6 = [str(ipaddress.IPv6Address((0x3fff << 112) | (i << 80))) + "/48" for i in range(ipv6)]
    return v4, v6
v4, v6 = prefixes()
pub(crate) static = os.environ.get("BENCH_STATIC") == "1"
def lines(verb):
    out = []
    for family, hop in ((v4, "192.0.2.1"), (v6, "2001:db8::1")):
        for start in range(0, len(family), 1000):
            out.append("%s attributes origin igp next-hop %s nlri %s\n" % (verb, hop, " ".join(family[start:start + 1000])))
    return out
announce, withdraw = lines("announce"), lines("withdraw")
open(os.path.join(directory, "ready"), "w").close()
up.wait()
for line in ([] if static else announce):
    sys.stdout.write(line)
    sys.stdout.flush()
while not os.path.exists(os.path.join(directory, "withdraw.go")):
    time.sleep(0.005)
for line in withdraw:
    sys.stdout.write(line)
    sys.stdout.flush()
while True:
    time.sleep(60)
"#;

impl Exabgp {
    pub(crate) fn start(setup: &SenderSetup) -> Result<Exabgp> {
        let directory = &setup.directory;
        let script = directory.join("api.py");
        write_file(&script, EXABGP_SCRIPT)?;
        let runner = directory.join("api.sh");
        write_file(
            &runner,
            &format!(
                "#!/bin/sh\nBENCH_STATIC={} exec python3 {} {} {} {}\n",
                u8::from(std::env::var_os("BGP_PEERS_EXABGP_API").is_none()),
                script.display(),
                setup.ipv4,
                setup.ipv6,
                directory.display()
            ),
        )?;
        run_command(
            "chmod",
            &["+x", &runner.to_string_lossy()],
            Duration::from_secs(5),
        )?;
        let mut config = format!(
            "process bench {{\n  run {};\n  encoder json;\n}}\n",
            runner.display()
        );
        for receiver in &setup.receivers {
            let _ = writeln!(
                config,
                "neighbor {} {{\n  router-id {};\n  local-address {};\n  local-as {SENDER_ASN};\n  peer-as {RECEIVER_ASN};\n  hold-time 240;\n  connect {};\n  passive false;\n  family {{\n    ipv4 unicast;\n    ipv6 unicast;\n  }}\n  api {{\n    processes [ bench ];\n    neighbor-changes;\n  }}\n}}",
                receiver.ip(),
                setup.address,
                setup.address,
                receiver.port()
            );
        }
        let static_routes = std::env::var_os("BGP_PEERS_EXABGP_API").is_none();
        if static_routes {
            // Every route in the configuration instead: ExaBGP parses them at startup and
            // sends them once the session is up.
            let position = config.rfind("  api {").unwrap_or(config.len());
            let mut routes = String::with_capacity((setup.ipv4 + setup.ipv6) as usize * 48);
            routes.push_str("  static {\n");
            for index in 0..setup.ipv4 {
                let _ = writeln!(
                    routes,
                    "    route {} next-hop {NEXT_HOP_V4} origin igp;",
                    ipv4_prefix(index)
                );
            }
            for index in 0..setup.ipv6 {
                let _ = writeln!(
                    routes,
                    "    route {} next-hop {NEXT_HOP_V6} origin igp;",
                    ipv6_prefix(index)
                );
            }
            routes.push_str("  }\n");
            config.insert_str(position, &routes);
        }
        let conf = directory.join("exabgp.conf");
        write_file(&conf, &config)?;
        let mut command = exabgp_command(&conf);
        command.env("exabgp.log.level", "WARNING").env(
            "exabgp.reactor.speed",
            std::env::var("BGP_PEERS_EXABGP_SPEED").unwrap_or_else(|_| "0.1".into()),
        );
        let process = setup.spawn("ExaBGP", command, "daemon.log")?;
        Ok(Exabgp {
            process,
            go: directory.join("withdraw.go"),
        })
    }
}

impl Sender for Exabgp {
    fn connect(&mut self) -> Result<()> {
        Ok(())
    }

    fn withdraw_all(&mut self) -> Result<()> {
        write_file(&self.go, "")
    }

    fn groups(&self) -> Vec<u32> {
        vec![self.process.pid()]
    }

    fn method(&self) -> String {
        "every route in the neighbor's `static` block (`route P next-hop NH origin igp;`), parsed at startup, sent once the session is up (BGP_PEERS_EXABGP_API=1: announced by the API process instead); withdraw = API process writing `withdraw attributes origin igp next-hop NH nlri P1 … P1000` lines; exabgp.reactor.speed 0.1; RSS = exabgp + API process".into()
    }
}
