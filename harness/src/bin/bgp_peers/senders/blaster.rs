//! The blaster sender (`bgp_blaster`, UPDATEs pre-encoded before connecting): the receiver's
//! ingest limit, the baseline of every ratio.

use std::io::{BufRead, BufReader, Write};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use super::{Sender, SenderSetup};
use crate::Result;
use crate::process::Process;
use crate::routes::SENDER_ASN;

pub(crate) struct Blaster {
    pub(crate) processes: Vec<(Process, ChildStdin)>,
    pub(crate) lines: mpsc::Receiver<String>,
}

impl Blaster {
    pub(crate) fn start(setup: &SenderSetup) -> Result<Blaster> {
        let (tx, lines) = mpsc::channel();
        let mut processes = Vec::new();
        for (index, receiver) in setup.receivers.iter().enumerate() {
            let mut command = Command::new(setup.bin.join("bgp_blaster"));
            command
                .args(["--local", &setup.sources[index].to_string()])
                .args(["--remote", &receiver.to_string()])
                .args(["--asn", &SENDER_ASN.to_string()])
                .args([
                    "--ipv4",
                    &setup.ipv4.to_string(),
                    "--ipv6",
                    &setup.ipv6.to_string(),
                ])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped());
            let mut process = Process::spawn_with(
                "blaster",
                &mut command,
                &setup.directory.join(format!("blaster{index}.log")),
                setup.pids.as_deref(),
                true,
            )?;
            let stdin = process.child.stdin.take().ok_or("blaster stdin")?;
            let stdout = process.child.stdout.take().ok_or("blaster stdout")?;
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout)
                    .lines()
                    .map_while(std::result::Result::ok)
                {
                    let _ = tx.send(line);
                }
            });
            processes.push((process, stdin));
        }
        let mut blaster = Blaster { processes, lines };
        blaster.expect("encoded", Duration::from_secs(300))?;
        Ok(blaster)
    }

    pub(crate) fn expect(&mut self, word: &str, timeout: Duration) -> Result<()> {
        for _ in 0..self.processes.len() {
            loop {
                let line = self
                    .lines
                    .recv_timeout(timeout)
                    .map_err(|_| format!("blaster never said {word}"))?;
                if line.starts_with(word) {
                    break;
                }
            }
        }
        Ok(())
    }
}

impl Sender for Blaster {
    fn connect(&mut self) -> Result<()> {
        Ok(())
    }

    fn withdraw_all(&mut self) -> Result<()> {
        for (_, stdin) in &mut self.processes {
            writeln!(stdin, "withdraw").map_err(|e| format!("blaster: {e}"))?;
        }
        Ok(())
    }

    fn groups(&self) -> Vec<u32> {
        self.processes
            .iter()
            .map(|(process, _)| process.pid())
            .collect()
    }

    fn method(&self) -> String {
        "UPDATEs pre-encoded by topologyd_bgp::AdjRibOut before connecting; write_all after the handshake".into()
    }
}
