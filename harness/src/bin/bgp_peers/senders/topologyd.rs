//! topologyd as a sender: a bootstrap topology with one `[[prefix]]` + `[[binding]]` per route;
//! withdraw-all is SIGTERM with `withdraw_on_stop`.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::process::{Command, Stdio};

use topologyd_harness::peers::alloc::free_port;

use super::{Sender, SenderSetup};
use crate::Result;
use crate::process::{Process, write_file};
use crate::routes::{NEXT_HOP_V4, NEXT_HOP_V6, RECEIVER_ASN, SENDER_ASN, ipv4_prefix, ipv6_prefix};

pub(crate) struct Topologyd {
    pub(crate) process: Process,
}

impl Topologyd {
    pub(crate) fn start(setup: &SenderSetup) -> Result<Topologyd> {
        let directory = &setup.directory;
        let topology = directory.join("topology");
        std::fs::create_dir_all(&topology).map_err(|e| e.to_string())?;
        write_file(
            &topology.join("fleet.toml"),
            "[[location]]\nname = \"bench01\"\nregion = \"bench\"\nmetro = \"BEN\"\ncountry = \"NL\"\nstate = \"live\"\n",
        )?;
        write_file(
            &topology.join("services.toml"),
            "[[service]]\nname = \"anycast\"\ntopology = \"all\"\n",
        )?;
        let mut prefixes = String::with_capacity((setup.ipv4 + setup.ipv6) as usize * 140);
        let cidrs = (0..setup.ipv4)
            .map(ipv4_prefix)
            .chain((0..setup.ipv6).map(ipv6_prefix));
        for cidr in cidrs {
            let _ = write!(
                prefixes,
                "[[prefix]]\ncidr = \"{cidr}\"\norigin_asn = {SENDER_ASN}\nowner = \"bench\"\nadvertise = true\n\n[[binding]]\ncidr = \"{cidr}\"\nservice = \"anycast\"\n\n"
            );
        }
        write_file(&topology.join("prefixes.toml"), &prefixes)?;
        drop(prefixes);
        let admin = SocketAddr::new(
            IpAddr::V4(setup.address),
            free_port(IpAddr::V4(setup.address)),
        );
        let listen = SocketAddr::new(
            IpAddr::V4(setup.address),
            free_port(IpAddr::V4(setup.address)),
        );
        let mut config = String::new();
        let _ = writeln!(
            config,
            "location = \"bench01\"\nlocal_asn = {SENDER_ASN}\nrouter_id = \"{}\"",
            setup.address
        );
        let _ = writeln!(
            config,
            "state_dir = \"{}\"",
            directory.join("state").display()
        );
        let _ = writeln!(
            config,
            "bootstrap_topology = [\"{}\", \"{}\", \"{}\"]",
            topology.join("fleet.toml").display(),
            topology.join("services.toml").display(),
            topology.join("prefixes.toml").display()
        );
        let _ = writeln!(config, "[bgp]\nlisten = [\"{listen}\"]");
        config.push_str("[graceful_restart]\nrestart_time_seconds = 120\n");
        config.push_str("[shutdown]\nwithdraw_on_stop = true\ngrace_seconds = 600\n");
        let _ = writeln!(config, "[admin]\nlisten = \"{admin}\"");
        for (index, receiver) in setup.receivers.iter().enumerate() {
            let _ = writeln!(
                config,
                "[[peer]]\nname = \"r{index}\"\naddress = \"{}\"\nport = {}\nasn = {RECEIVER_ASN}\nlocal_address = \"{}\"\nfamilies = [\"ipv4\", \"ipv6\"]\nnext_hop_ipv4 = \"{NEXT_HOP_V4}\"\nnext_hop_ipv6 = \"{NEXT_HOP_V6}\"\nhold_time_seconds = 240\nconnect_retry_seconds = 1\npassive = false",
                receiver.ip(),
                receiver.port(),
                setup.sources[index]
            );
        }
        let path = directory.join("topologyd.toml");
        write_file(&path, &config)?;
        let mut command = Command::new(setup.bin.join("topologyd"));
        command
            .arg("--config")
            .arg(&path)
            .env("TOPOLOGYD_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null());
        let process = setup.spawn("topologyd", command, "topologyd.log")?;
        Ok(Topologyd { process })
    }
}

impl Sender for Topologyd {
    fn connect(&mut self) -> Result<()> {
        Ok(())
    }

    fn withdraw_all(&mut self) -> Result<()> {
        self.process.signal("TERM");
        Ok(())
    }

    fn groups(&self) -> Vec<u32> {
        vec![self.process.pid()]
    }

    fn method(&self) -> String {
        "bootstrap_topology (1 location, 1 `all` service, one [[prefix]]+[[binding]] per route); connects after compiling; withdraw = SIGTERM with withdraw_on_stop".into()
    }
}
